#pragma once
// A procedurally drawn dataset (data.dataset = "synthetic") for tests, benchmarks and smoke runs
// without files: every image is drawn on the fly from (split, index), so it costs no memory and is
// the same on every machine, rank and thread.
//
// Class c decides the shape (circle, square, triangle, stripes, cross, ring, cycling with c) and,
// for RGB, the hue (classes spread over the colour wheel by the golden ratio); position, scale,
// rotation, background and pixel noise are random. Classes are learnable from shape and from
// colour, so colour augmentations matter.

#include <cstdint>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/data/dataset.h"

namespace selfsup {

/// The synthetic dataset's images of one split.
class SyntheticDataset : public Dataset {
 public:
  /// Number of distinct shapes; class c draws shape c % kShapes.
  static constexpr int kShapes = 6;

  /// `limit` > 0 keeps only the first `limit` samples.
  SyntheticDataset(const SyntheticConfig& config, Split split, std::string name, int64_t limit = 0);

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override;
  std::string source(int64_t index) const override;
  int64_t num_classes() const override { return config_.classes; }
  int channels() const override { return config_.channels; }
  int height() const override { return config_.image_size; }
  int width() const override { return config_.image_size; }
  std::string describe() const override;

  /// The label of sample `index`: index % classes, so every class is equally frequent.
  int64_t label_of(int64_t index) const { return index % config_.classes; }

 private:
  SyntheticConfig config_;
  Split split_;
  std::string name_;
  int64_t count_ = 0;
};

}  // namespace selfsup
