#pragma once
// Counter-keyed random streams.
//
// Every random decision of the data pipeline is drawn from a stream keyed by (seed, epoch, sample
// index, view), never by thread or rank, so augmentations do not depend on scheduling or world size
// (DESIGN.md, invariant 3). The key is mixed with SplitMix64 into the seed of a std::mt19937_64.

#include <cstdint>
#include <random>

namespace selfsup {

/// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Mixes several 64-bit words into one key; order matters.
constexpr uint64_t mix_key(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

/// A random stream whose whole sequence is fixed by its key.
class KeyedRng {
 public:
  KeyedRng(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream)
      : engine_(mix_key(mix_key(mix_key(splitmix64(seed), epoch), index), stream)) {}

  /// Uniform in [lo, hi).
  double uniform(double lo = 0.0, double hi = 1.0) {
    return std::uniform_real_distribution<double>(lo, hi)(engine_);
  }
  /// True with probability p.
  bool bernoulli(double p) { return uniform() < p; }
  /// Uniform integer in [lo, hi].
  int64_t integer(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(engine_);
  }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace selfsup
