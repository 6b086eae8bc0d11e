#pragma once
// The SimCLR augmentations as batched tensor ops on the training device (augment.backend =
// "device"): the loader only decodes and resizes, the trainer turns a [B, C, H, W] uint8 batch into
// its views where the model runs.
//
// Same recipe and distribution as the CPU path (SimClrAugment), not the same pixels: random resized
// crop (torchvision's box draw, bilinear resampling through grid_sample) with the horizontal flip
// folded into the sampling grid, colour jitter (brightness, contrast, saturation, hue, applied in a
// random order per view), random grayscale, Gaussian blur (per-view sigma), solarization,
// normalisation. Grayscale images (C = 1) skip saturation, hue and grayscale.
//
// Randomness: every view's parameters are drawn on the host from KeyedRng(seed, epoch, index,
// stream) with stream = v for global view v and V + l for local view l, then moved to the device
// as a few small tensors. So a view depends on its key only, not on the batch it is in, the rank
// or the device.

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

#include "selfsup/core/config.h"

namespace selfsup {

class KeyedRng;

/// The random decisions of one view, as drawn on the host.
struct DeviceViewParams {
  int left = 0, top = 0, width = 0, height = 0;         // crop box in input pixels
  bool flip = false;                                    // horizontal flip
  bool jitter = false;                                  // colour jitter applied
  double brightness = 1, contrast = 1, saturation = 1;  // jitter factors (1 = unchanged)
  double hue = 0;                                       // hue shift, turns
  std::array<int, 4> order{0, 1, 2, 3};  // jitter steps in application order (0 brightness,
                                         // 1 contrast, 2 saturation, 3 hue)
  bool grayscale = false;                // random grayscale applied
  bool blur = false;                     // Gaussian blur applied
  double sigma = 0;                      // blur sigma, output pixels
  bool solarize = false;                 // solarization applied
};

/// Draws one view's parameters for an input of `height` x `width` pixels, with the crop area range
/// `crop_scale` (the global or the local one). Always consumes the same draws in the same order:
/// crop (1 to 10 attempts of 2 uniforms, then 2 integer offsets on success), flip, jitter, the 4
/// jitter factors, the jitter order (3 integers, Fisher-Yates), grayscale, blur, sigma, solarize.
DeviceViewParams draw_device_view_params(const AugmentConfig& config,
                                         const std::vector<double>& crop_scale, int height,
                                         int width, KeyedRng& rng);

/// Global and local views of a batch.
struct DeviceViews {
  torch::Tensor global;  // [V, B, C, S, S] float32, normalised, on the images' device
  torch::Tensor local;   // [L, B, C, s, s] likewise; undefined when augment.local_views = 0
};

/// Batched SimCLR augmentation of uint8 images on whatever device they are on.
class DeviceAugment {
 public:
  /// `config`: the recipe (views, sizes, probabilities, ranges, mean/std); `channels`: 1 or 3.
  DeviceAugment(AugmentConfig config, int channels);

  /// Views of `images` ([B, C, H, W] uint8, any device): global views [V, B, C, S, S] with S =
  /// augment.size (H x W when 0), local views [L, B, C, s, s] with s = augment.local_size (S * 3/7
  /// rounded when 0). `indices` ([B] int64, any device) are the samples' dataset indices, which
  /// key the randomness together with `seed` and `epoch`.
  DeviceViews forward(const torch::Tensor& images, uint64_t seed, int64_t epoch,
                      const torch::Tensor& indices) const;

  /// The un-augmented images resized (bilinear) to the global view size and normalised:
  /// [B, C, S, S] float32 (feature extraction).
  torch::Tensor plain(const torch::Tensor& images) const;

  const AugmentConfig& config() const { return config_; }
  int channels() const { return channels_; }

 private:
  AugmentConfig config_;
  int channels_;
};

}  // namespace selfsup
