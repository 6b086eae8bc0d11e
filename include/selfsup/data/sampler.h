#pragma once
// The distributed sampler: one global permutation per epoch (seeded by (seed, epoch)); global
// batches are consecutive slices of it, and each rank takes its contiguous share of every global
// batch. Incomplete last batches are dropped, so every rank runs the same number of steps with the
// same shapes.

#include <cstdint>
#include <vector>

namespace selfsup {

/// What the trainer needs of a sampler: the same number of steps on every rank, and this rank's
/// indices for each step of an epoch.
class Sampler {
 public:
  virtual ~Sampler() = default;
  /// Steps per epoch, the same on every rank.
  virtual int64_t steps_per_epoch() const = 0;
  /// This rank's sample indices for every step of `epoch`: [steps_per_epoch][local_batch()].
  virtual std::vector<std::vector<int64_t>> local_batches(int64_t epoch) const = 0;
  /// Images per rank and step.
  virtual int64_t local_batch() const = 0;
};

class DistributedSampler : public Sampler {
 public:
  /// `global_batch` must be divisible by `world`; throws Error otherwise.
  DistributedSampler(int64_t dataset_size, int64_t global_batch, int rank, int world,
                     uint64_t seed);

  /// Steps (global batches) per epoch.
  int64_t steps_per_epoch() const override { return dataset_size_ / global_batch_; }
  /// This rank's sample indices for every step of `epoch`: [steps_per_epoch][global_batch / world].
  std::vector<std::vector<int64_t>> local_batches(int64_t epoch) const override;
  /// Every index of every global batch of `epoch`: [steps_per_epoch][global_batch].
  std::vector<std::vector<int64_t>> global_batches(int64_t epoch) const;
  int64_t local_batch() const override { return global_batch_ / world_; }

 private:
  /// The epoch's global permutation of [0, dataset_size).
  std::vector<int64_t> permutation(int64_t epoch) const;

  int64_t dataset_size_;
  int64_t global_batch_;
  int rank_;
  int world_;
  uint64_t seed_;
};

/// The shard sampler (data.sampler = "shards", for tar shards): rank r always reads the shards s
/// with s % world == r (so a node's page cache keeps its own files), in an order shuffled every
/// epoch; the samples of each group of kShardsMixed consecutive shards in that order are shuffled
/// together, so a batch mixes several shards while reads stay within a few files. Every rank runs
/// the same number of steps: the smallest rank's samples / local batch. Unlike
/// DistributedSampler, which images form a global batch depends on the world size.
class ShardSampler : public Sampler {
 public:
  /// Shards mixed together in one shuffle.
  static constexpr int64_t kShardsMixed = 4;

  /// `shard_offsets`: shard s holds samples [shard_offsets[s], shard_offsets[s + 1]) (size =
  /// shards + 1, starting at 0). Throws Error when there are fewer shards than ranks, or when a
  /// rank's shards hold less than one local batch.
  ShardSampler(std::vector<int64_t> shard_offsets, int64_t global_batch, int rank, int world,
               uint64_t seed);

  int64_t steps_per_epoch() const override { return steps_per_epoch_; }
  std::vector<std::vector<int64_t>> local_batches(int64_t epoch) const override;
  int64_t local_batch() const override { return global_batch_ / world_; }

 private:
  std::vector<int64_t> offsets_;
  std::vector<int64_t> my_shards_;  // the shards this rank reads
  int64_t global_batch_;
  int rank_;
  int world_;
  uint64_t seed_;
  int64_t steps_per_epoch_ = 0;
};

}  // namespace selfsup
