// DistributedSampler: permutations, global batches and their split across ranks; ShardSampler:
// whole shards per rank.

#include "selfsup/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

TEST(SamplerTest, GlobalBatchesAreDistinctIndices) {
  const DistributedSampler sampler(/*dataset_size=*/103, /*global_batch=*/10, /*rank=*/0,
                                   /*world=*/1, /*seed=*/42);
  EXPECT_EQ(sampler.steps_per_epoch(), 10);
  const auto batches = sampler.global_batches(0);
  ASSERT_EQ(batches.size(), 10u);
  std::set<int64_t> seen;
  for (const auto& batch : batches) {
    ASSERT_EQ(batch.size(), 10u);
    for (const int64_t index : batch) {
      EXPECT_GE(index, 0);
      EXPECT_LT(index, 103);
      EXPECT_TRUE(seen.insert(index).second) << "index " << index << " appears twice";
    }
  }
  // The incomplete last batch (3 samples) is dropped.
  EXPECT_EQ(seen.size(), 100u);
}

TEST(SamplerTest, FullPermutationWhenDivisible) {
  const DistributedSampler sampler(64, 16, 0, 1, 7);
  std::set<int64_t> seen;
  for (const auto& batch : sampler.global_batches(3)) seen.insert(batch.begin(), batch.end());
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 63);
}

TEST(SamplerTest, RanksSplitEachGlobalBatchInOrder) {
  const int world = 4;
  const int64_t global_batch = 12;
  for (const int64_t epoch : {0, 1, 5}) {
    const auto global = DistributedSampler(50, global_batch, 0, world, 9).global_batches(epoch);
    std::vector<std::vector<std::vector<int64_t>>> local;
    for (int rank = 0; rank < world; ++rank) {
      const DistributedSampler sampler(50, global_batch, rank, world, 9);
      EXPECT_EQ(sampler.local_batch(), 3);
      EXPECT_EQ(sampler.global_batches(epoch), global);  // the same plan on every rank
      local.push_back(sampler.local_batches(epoch));
      ASSERT_EQ(local.back().size(), global.size());
    }
    for (size_t step = 0; step < global.size(); ++step) {
      std::vector<int64_t> joined;
      for (int rank = 0; rank < world; ++rank) {
        ASSERT_EQ(local[rank][step].size(), 3u);
        joined.insert(joined.end(), local[rank][step].begin(), local[rank][step].end());
      }
      EXPECT_EQ(joined, global[step]) << "epoch " << epoch << " step " << step;
    }
  }
}

TEST(SamplerTest, EpochsDifferSeedsRepeat) {
  const DistributedSampler sampler(1000, 100, 0, 1, 1);
  EXPECT_NE(sampler.global_batches(0), sampler.global_batches(1));
  EXPECT_EQ(sampler.global_batches(2), DistributedSampler(1000, 100, 0, 1, 1).global_batches(2));
  EXPECT_NE(sampler.global_batches(0), DistributedSampler(1000, 100, 0, 1, 2).global_batches(0));
  // Not the identity either.
  std::vector<int64_t> first = sampler.global_batches(0)[0];
  std::vector<int64_t> identity(100);
  for (int64_t i = 0; i < 100; ++i) identity[i] = i;
  EXPECT_NE(first, identity);
}

TEST(SamplerTest, RejectsIndivisibleBatch) {
  try {
    DistributedSampler(100, 10, 0, 3, 0);
    FAIL() << "expected Error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("train.batch_size = 10 is not divisible by the world size 3"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("multiple of 3"), std::string::npos) << message;
  }
}

TEST(SamplerTest, RejectsTooSmallDataset) {
  try {
    DistributedSampler(5, 8, 0, 2, 0);
    FAIL() << "expected Error";
  } catch (const Error& error) {
    EXPECT_NE(
        std::string(error.what()).find("dataset has 5 samples, fewer than one global batch of 8"),
        std::string::npos)
        << error.what();
  }
  EXPECT_THROW(DistributedSampler(100, 8, 2, 2, 0), Error);  // rank outside [0, world)
}

// Shards of unequal sizes: 0..9 -> [0,10), [10,25), [25,30), [30,42), [42,50), [50,70), [70,71).
const std::vector<int64_t> kShardOffsets{0, 10, 25, 30, 42, 50, 70, 71};

int64_t shard_of(int64_t index) {
  return int64_t(std::upper_bound(kShardOffsets.begin(), kShardOffsets.end(), index) -
                 kShardOffsets.begin()) -
         1;
}

TEST(ShardSamplerTest, EachRankReadsOnlyItsShardsAndAllRanksRunTheSameSteps) {
  const int world = 3;
  const int64_t global_batch = 6;
  // Rank totals: shards {0,3,6} = 10+12+1 = 23, {1,4} = 15+8 = 23, {2,5} = 5+20 = 25: 23 / 2.
  for (int rank = 0; rank < world; ++rank) {
    ShardSampler sampler(kShardOffsets, global_batch, rank, world, /*seed=*/7);
    EXPECT_EQ(sampler.steps_per_epoch(), 11);
    EXPECT_EQ(sampler.local_batch(), 2);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const auto batches = sampler.local_batches(epoch);
      ASSERT_EQ(batches.size(), 11u);
      std::set<int64_t> seen;
      for (const auto& batch : batches) {
        ASSERT_EQ(batch.size(), 2u);
        for (const int64_t index : batch) {
          EXPECT_EQ(shard_of(index) % world, rank) << "sample " << index << " on rank " << rank;
          EXPECT_TRUE(seen.insert(index).second) << "sample " << index << " twice in an epoch";
        }
      }
    }
  }
}

TEST(ShardSamplerTest, OrderChangesWithTheEpochAndRepeatsWithTheSeed) {
  ShardSampler a(kShardOffsets, 4, 0, 2, /*seed=*/1), b(kShardOffsets, 4, 0, 2, /*seed=*/1);
  EXPECT_EQ(a.local_batches(5), b.local_batches(5));
  EXPECT_NE(a.local_batches(5), a.local_batches(6));
  // Mixed shards: within one epoch, a batch of rank 0 draws from several shards at least once.
  bool mixed = false;
  for (const auto& batch : a.local_batches(0))
    mixed = mixed || shard_of(batch[0]) != shard_of(batch[1]);
  EXPECT_TRUE(mixed);
}

TEST(ShardSamplerTest, RejectsFewerShardsThanRanksAndTooSmallShards) {
  EXPECT_THROW(ShardSampler({0, 10, 20}, 6, 0, 3, 0), Error);
  EXPECT_THROW(ShardSampler({0, 1, 2}, 8, 0, 2, 0), Error);
  EXPECT_THROW(ShardSampler({0, 5, 3}, 2, 0, 2, 0), Error);
}

}  // namespace
}  // namespace selfsup
