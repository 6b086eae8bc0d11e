#pragma once
// The distributed sampler: one global permutation per epoch (seeded by (seed, epoch)); global
// batches are consecutive slices of it, and each rank takes its contiguous share of every global
// batch. Incomplete last batches are dropped, so every rank runs the same number of steps with the
// same shapes.

#include <cstdint>
#include <vector>

namespace selfsup {

class DistributedSampler {
 public:
  /// `global_batch` must be divisible by `world`; throws Error otherwise.
  DistributedSampler(int64_t dataset_size, int64_t global_batch, int rank, int world,
                     uint64_t seed);

  /// Steps (global batches) per epoch.
  int64_t steps_per_epoch() const { return dataset_size_ / global_batch_; }
  /// This rank's sample indices for every step of `epoch`: [steps_per_epoch][global_batch / world].
  std::vector<std::vector<int64_t>> local_batches(int64_t epoch) const;
  /// Every index of every global batch of `epoch`: [steps_per_epoch][global_batch].
  std::vector<std::vector<int64_t>> global_batches(int64_t epoch) const;
  int64_t local_batch() const { return global_batch_ / world_; }

 private:
  /// The epoch's global permutation of [0, dataset_size).
  std::vector<int64_t> permutation(int64_t epoch) const;

  int64_t dataset_size_;
  int64_t global_batch_;
  int rank_;
  int world_;
  uint64_t seed_;
};

}  // namespace selfsup
