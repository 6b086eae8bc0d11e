#pragma once
// SimCLR augmentations with OpenCV, for grayscale (CV_8UC1) and RGB (CV_8UC3) images of any size:
// random resized crop, horizontal flip, colour jitter (brightness, contrast, saturation, hue in a
// random order), random grayscale, Gaussian blur, solarization, per-channel normalisation; plus
// the small crops of multi-crop (local views).
//
// A view is drawn from a KeyedRng keyed by (seed, epoch, sample index, view), so the same key gives
// the same view whatever thread or rank computes it (DESIGN.md, invariant 3).

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <vector>

#include "selfsup/core/config.h"

namespace selfsup {

class Dataset;
class KeyedRng;

/// Which of the multi-crop views to draw.
enum class ViewKind {
  kGlobal,  // augment.size x augment.size, crops covering augment.crop_scale of the image
  kLocal,   // augment.local_size x augment.local_size, crops covering augment.local_crop_scale
};

/// Produces augmented, normalised views of one image. The config is checked once, here; the
/// object is immutable afterwards, so one instance serves every loader thread.
class SimClrAugment {
 public:
  /// `channels`: the images' channels (1 or 3). `image_side`: the side of the dataset's square
  /// images when they all have one size, else 0; then augment.size must be > 0. Throws
  /// ConfigError naming the key when the config cannot produce views for such images.
  SimClrAugment(AugmentConfig config, int channels, int image_side);

  /// The augmentation for `dataset`'s images: its channels, and its side when its images are
  /// square and all of one size.
  static SimClrAugment for_dataset(AugmentConfig config, const Dataset& dataset);

  /// One augmented view of `image` (CV_8UC<channels>, any size >= 1x1) written as float32 [C, S, S]
  /// (S = side(kind)), normalised with the config's mean/std, into `out` (C*S*S floats).
  void view(const cv::Mat& image, KeyedRng& rng, ViewKind kind, float* out) const;

  /// The un-augmented image: shorter side resized to global_size(), centre-cropped to a square,
  /// normalised like the views; float32 [C, S, S] into `out`. Used for feature extraction.
  void plain(const cv::Mat& image, float* out) const;

  int channels() const { return channels_; }
  /// Side S of the global views and of plain().
  int global_size() const { return global_size_; }
  /// Side s of the local views (augment.local_size, or size * 3/7 rounded when 0; at least 1).
  int local_size() const { return local_size_; }
  /// Side of the views of `kind`.
  int side(ViewKind kind) const { return kind == ViewKind::kGlobal ? global_size_ : local_size_; }
  /// Floats one view of `kind` takes: C*S*S.
  int64_t view_floats(ViewKind kind) const { return int64_t{channels_} * side(kind) * side(kind); }
  const AugmentConfig& config() const { return config_; }

 private:
  AugmentConfig config_;
  int channels_;
  int global_size_;
  int local_size_;
  std::vector<float> mean_;  // [C], per channel
  std::vector<float> std_;   // [C], per channel
};

/// For augment.backend "device": `image` (CV_8UC1 or CV_8UC3) with its shorter side resized to
/// `side` and centre-cropped to a square, written as uint8 [C, side, side] into `out`. The same
/// geometry as SimClrAugment::plain, without conversion or normalisation.
void resize_to_uint8(const cv::Mat& image, int side, uint8_t* out);

}  // namespace selfsup
