#pragma once
// SimCLR augmentations for small grayscale images, with OpenCV.
//
// A view is drawn from a KeyedRng keyed by (seed, epoch, sample index, view), so the same key gives
// the same view whatever thread computes it.

#include <cstdint>
#include <opencv2/core/mat.hpp>

#include "selfsup/core/config.h"

namespace selfsup {

class KeyedRng;

/// Produces augmented, normalised views of one image.
class SimClrAugment {
 public:
  explicit SimClrAugment(AugmentConfig config) : config_(std::move(config)) {}

  /// One augmented view of `image` (CV_8UC1, HxW) written as float32, normalised with the config's
  /// mean/std, into `out` (H*W floats, row-major). Output size equals input size.
  void view(const cv::Mat& image, KeyedRng& rng, float* out) const;

  /// The un-augmented image, normalised the same way (used for feature extraction).
  void plain(const cv::Mat& image, float* out) const;

  const AugmentConfig& config() const { return config_; }

 private:
  AugmentConfig config_;
};

}  // namespace selfsup
