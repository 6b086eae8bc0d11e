// The distributed sampler: one permutation per epoch, shared by all ranks, sliced per rank.

#include "selfsup/data/sampler.h"

#include <random>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// Separates the sampler's stream from the augmentation streams, which share the run seed.
constexpr uint64_t kSamplerStream = 0x5A3D1E;

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
  // Fisher-Yates, written out so the permutation does not depend on the standard library's shuffle.
  for (int64_t i = dataset_size_ - 1; i > 0; --i) {
    const int64_t j = std::uniform_int_distribution<int64_t>(0, i)(engine);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
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

}  // namespace selfsup
