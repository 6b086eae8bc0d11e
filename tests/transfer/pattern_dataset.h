#pragma once
// A small in-memory labelled dataset for the transfer tests: 12x12 grayscale images whose class
// is a bright horizontal band (at row 3 * label) over seeded noise, so that a tiny ConvNet learns
// it in a few steps. Labels follow a fixed, slightly uneven pattern of the index.

#include <cstdint>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/dataset.h"

namespace selfsup {

class PatternDataset : public Dataset {
 public:
  static constexpr int kSide = 12;
  explicit PatternDataset(int64_t count, int64_t classes = 4, uint64_t seed = 0)
      : count_(count), classes_(classes), seed_(seed) {}

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override {
    Sample sample;
    sample.label = (index * 7 + index / 3) % classes_;
    sample.image.create(kSide, kSide, CV_8UC1);
    KeyedRng rng(seed_, 0, static_cast<uint64_t>(index), 0);
    const int64_t band = (3 * sample.label) % kSide;
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        const bool bright = y >= band && y < band + 2;
        sample.image.at<uint8_t>(y, x) =
            static_cast<uint8_t>((bright ? 180 : 0) + rng.integer(0, 60));
      }
    }
    return sample;
  }
  int64_t num_classes() const override { return classes_; }
  int channels() const override { return 1; }
  int height() const override { return kSide; }
  int width() const override { return kSide; }
  std::string source(int64_t index) const override { return "pattern#" + std::to_string(index); }
  std::string describe() const override {
    return "pattern (" + std::to_string(count_) + " images)";
  }

 private:
  int64_t count_;
  int64_t classes_;
  uint64_t seed_;
};

/// A config for the tests: a tiny ConvNet (width 4, 16 features) and a short fine-tuning run.
inline Config tiny_transfer_config() {
  Config config;
  config.model.encoder = "convnet";
  config.model.width = 4;
  config.model.pool = 1;
  config.model.channels_last = false;
  config.data.workers = 1;
  config.transfer.batch_size = 16;  // several extraction batches per shard
  config.transfer.knn.k = 5;
  auto& fc = config.transfer.finetune;
  fc.fractions = {0.1, 1.0};
  fc.epochs = 2;
  fc.max_steps = 3;
  fc.batch_size = 12;  // divisible by 1, 2, 3 and 4 ranks
  fc.optimizer = "sgd";
  fc.lr = 0.05;
  config.monitor.train_samples = 40;
  config.monitor.test_samples = 17;
  return config;
}

}  // namespace selfsup
