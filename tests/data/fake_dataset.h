#pragma once
// An in-memory dataset for the loader tests: grayscale or RGB images of a fixed [12, 10] size or of
// sizes that vary with the index, with chosen samples that are bad (BadSampleError), too small to
// use, or that fail outright (a plain Error), and an optional delay in get().

#include <atomic>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/data/dataset.h"

namespace selfsup {

struct FakeDatasetOptions {
  int channels = 1;            // 1 or 3
  bool varying_sizes = false;  // image sizes depend on the index; height() and width() are 0
  int64_t failing_index = -1;  // get() throws a plain Error (stops the run)
  std::set<int64_t> bad;       // get() throws BadSampleError
  std::set<int64_t> tiny;      // get() returns a 4x4 image (a bad sample for the loader)
  std::chrono::microseconds delay{0};  // get() sleeps this long first
};

class FakeDataset : public Dataset {
 public:
  static constexpr int kHeight = 12;
  static constexpr int kWidth = 10;
  static constexpr int64_t kClasses = 7;

  explicit FakeDataset(int64_t count, FakeDatasetOptions options = {})
      : count_(count), options_(std::move(options)) {}

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override {
    ++gets_;
    if (options_.delay.count() > 0) std::this_thread::sleep_for(options_.delay);
    if (index == options_.failing_index) throw Error("broken sample " + std::to_string(index));
    if (options_.bad.count(index) > 0) throw BadSampleError(source(index), "truncated file");
    const bool tiny = options_.tiny.count(index) > 0;
    const int height = tiny ? 4 : options_.varying_sizes ? kHeight + int(index % 5) * 3 : kHeight;
    const int width = tiny ? 4 : options_.varying_sizes ? kWidth + int(index % 7) * 4 : kWidth;
    Sample sample;
    sample.image.create(height, width, CV_8UC(options_.channels));
    for (int y = 0; y < height; ++y) {
      auto* row = sample.image.ptr<uint8_t>(y);
      for (int x = 0; x < width; ++x) {
        for (int c = 0; c < options_.channels; ++c) {
          row[x * options_.channels + c] =
              static_cast<uint8_t>((index * 13 + y * 29 + x * x + c * 71) % 256);
        }
      }
    }
    sample.label = index % kClasses;
    return sample;
  }
  std::string source(int64_t index) const override { return "fake#" + std::to_string(index); }
  int64_t num_classes() const override { return kClasses; }
  int channels() const override { return options_.channels; }
  int height() const override { return options_.varying_sizes ? 0 : kHeight; }
  int width() const override { return options_.varying_sizes ? 0 : kWidth; }
  std::string describe() const override { return "fake (" + std::to_string(count_) + ")"; }

  int64_t gets() const { return gets_.load(); }

 private:
  int64_t count_;
  FakeDatasetOptions options_;
  mutable std::atomic<int64_t> gets_{0};
};

}  // namespace selfsup
