// The samplers: DistributedSampler (one permutation per epoch, shared by all ranks, sliced per
// rank) and ShardSampler (whole shards per rank, shuffled within groups of shards).

#include "selfsup/data/sampler.h"

#include <algorithm>
#include <random>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// Separates the sampler's stream from the augmentation streams, which share the run seed.
constexpr uint64_t kSamplerStream = 0x5A3D1E;
// The shard sampler's stream (it also draws the rank, so ranks shuffle independently).
constexpr uint64_t kShardStream = 0x5A3D1F;

// Fisher-Yates, written out so the order does not depend on the standard library's shuffle.
void shuffle(std::vector<int64_t>& items, std::mt19937_64& engine) {
  for (int64_t i = int64_t(items.size()) - 1; i > 0; --i) {
    const int64_t j = std::uniform_int_distribution<int64_t>(0, i)(engine);
    std::swap(items[size_t(i)], items[size_t(j)]);
  }
}

}  // namespace

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t global_batch, int rank,
                                       int world, uint64_t seed)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      seed_(seed) {
  SELFSUP_CHECK(world >= 1, "world size ", world, " must be >= 1");
  SELFSUP_CHECK(rank >= 0 && rank < world, "rank ", rank, " is outside [0, ", world,
                ") for world size ", world);
  SELFSUP_CHECK(global_batch >= 1, "train.batch_size = ", global_batch, " must be >= 1");
  SELFSUP_CHECK(global_batch % world == 0, "train.batch_size = ", global_batch,
                " is not divisible by the world size ", world, "; choose a multiple of ", world);
  SELFSUP_CHECK(dataset_size >= global_batch, "dataset has ", dataset_size,
                " samples, fewer than one global batch of ", global_batch,
                "; lower train.batch_size or raise data.limit_train");
}

std::vector<int64_t> DistributedSampler::permutation(int64_t epoch) const {
  // Keyed by (seed, epoch) only, so every rank computes the same permutation without talking.
  std::mt19937_64 engine(
      mix_key(mix_key(splitmix64(seed_), static_cast<uint64_t>(epoch)), kSamplerStream));
  std::vector<int64_t> order(static_cast<size_t>(dataset_size_));
  for (int64_t i = 0; i < dataset_size_; ++i) order[static_cast<size_t>(i)] = i;
  shuffle(order, engine);
  return order;
}

std::vector<std::vector<int64_t>> DistributedSampler::global_batches(int64_t epoch) const {
  const std::vector<int64_t> order = permutation(epoch);
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps_per_epoch()));
  for (int64_t step = 0; step < steps_per_epoch(); ++step) {
    const auto begin = order.begin() + step * global_batch_;
    batches[static_cast<size_t>(step)].assign(begin, begin + global_batch_);
  }
  return batches;
}

std::vector<std::vector<int64_t>> DistributedSampler::local_batches(int64_t epoch) const {
  const std::vector<int64_t> order = permutation(epoch);
  // Rank r takes [r*B/W, (r+1)*B/W) of each global batch: [steps][B/W].
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps_per_epoch()));
  for (int64_t step = 0; step < steps_per_epoch(); ++step) {
    const auto begin = order.begin() + step * global_batch_ + rank_ * local_batch();
    batches[static_cast<size_t>(step)].assign(begin, begin + local_batch());
  }
  return batches;
}

ShardSampler::ShardSampler(std::vector<int64_t> shard_offsets, int64_t global_batch, int rank,
                           int world, uint64_t seed)
    : offsets_(std::move(shard_offsets)),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      seed_(seed) {
  SELFSUP_CHECK(world >= 1 && rank >= 0 && rank < world, "rank ", rank, " is outside [0, ", world,
                ")");
  SELFSUP_CHECK(global_batch >= 1 && global_batch % world == 0, "train.batch_size = ", global_batch,
                " is not divisible by the world size ", world, "; choose a multiple of ", world);
  SELFSUP_CHECK(offsets_.size() >= 2 && offsets_.front() == 0 &&
                    std::is_sorted(offsets_.begin(), offsets_.end()),
                "shard sampler: shard offsets must start at 0 and never decrease");
  const int64_t shards = int64_t(offsets_.size()) - 1;
  SELFSUP_CHECK(shards >= world,
                "data.sampler = \"shards\" needs at least one shard per rank: ", shards,
                " shard(s) for ", world,
                " ranks; split the data into more shards, or use data.sampler = \"global\"");
  // Every rank computes every rank's total, so all agree on the step count without talking.
  int64_t fewest = INT64_MAX;
  for (int r = 0; r < world; ++r) {
    int64_t samples = 0;
    for (int64_t s = r; s < shards; s += world)
      samples += offsets_[size_t(s + 1)] - offsets_[size_t(s)];
    fewest = std::min(fewest, samples);
    if (r == rank) {
      for (int64_t s = r; s < shards; s += world) my_shards_.push_back(s);
    }
  }
  steps_per_epoch_ = fewest / local_batch();
  SELFSUP_CHECK(steps_per_epoch_ >= 1, "data.sampler = \"shards\": a rank's shards hold only ",
                fewest, " samples, fewer than one local batch of ", local_batch(),
                "; lower train.batch_size, use fewer ranks, or data.sampler = \"global\"");
}

std::vector<std::vector<int64_t>> ShardSampler::local_batches(int64_t epoch) const {
  std::mt19937_64 engine(
      mix_key(mix_key(mix_key(splitmix64(seed_), uint64_t(epoch)), kShardStream), uint64_t(rank_)));
  std::vector<int64_t> shard_order = my_shards_;  // [shards of this rank]
  shuffle(shard_order, engine);
  std::vector<int64_t> order;  // this rank's samples for the epoch
  for (size_t group = 0; group < shard_order.size(); group += kShardsMixed) {
    const size_t group_end = std::min(shard_order.size(), group + size_t(kShardsMixed));
    const size_t first = order.size();
    for (size_t k = group; k < group_end; ++k) {
      const int64_t shard = shard_order[k];
      for (int64_t i = offsets_[size_t(shard)]; i < offsets_[size_t(shard + 1)]; ++i)
        order.push_back(i);
    }
    std::vector<int64_t> mixed(order.begin() + int64_t(first), order.end());
    shuffle(mixed, engine);
    std::copy(mixed.begin(), mixed.end(), order.begin() + int64_t(first));
  }
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps_per_epoch_));
  for (int64_t step = 0; step < steps_per_epoch_; ++step) {
    const auto begin = order.begin() + step * local_batch();
    batches[size_t(step)].assign(begin, begin + local_batch());
  }
  return batches;
}

}  // namespace selfsup
