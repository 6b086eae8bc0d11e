// SimCLR augmentations for grayscale images: random resized crop, horizontal flip, brightness and
// contrast jitter, Gaussian blur, normalisation.
//
// Every view draws the same random numbers in the same order, whichever steps the config disables:
//   crop (1 to 10 attempts of 2 draws, then 2 offsets on success), flip, jitter, brightness factor,
//   contrast factor, jitter order, blur, blur sigma.
// So a view depends only on the rng key and the config, never on the thread computing it.

#include "selfsup/data/augment.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// RandomResizedCrop gives up after this many rejected boxes and falls back to a central crop.
constexpr int kCropAttempts = 10;
// The blur kernel spans about this fraction of the image side (SimCLR's recipe).
constexpr double kBlurKernelFraction = 0.1;

void check_config(const AugmentConfig& config) {
  SELFSUP_CHECK(config.crop_scale.size() == 2 && config.crop_scale[0] <= config.crop_scale[1],
                "augment.crop_scale must be a pair [min, max] with min <= max");
  SELFSUP_CHECK(config.crop_ratio.size() == 2 && config.crop_ratio[0] > 0 &&
                    config.crop_ratio[0] <= config.crop_ratio[1],
                "augment.crop_ratio must be a pair [min, max] with 0 < min <= max");
  SELFSUP_CHECK(config.blur_sigma.size() == 2 && config.blur_sigma[0] >= 0 &&
                    config.blur_sigma[0] <= config.blur_sigma[1],
                "augment.blur_sigma must be a pair [min, max] with 0 <= min <= max");
  SELFSUP_CHECK(!config.std.empty() && config.std[0] > 0, "augment.std must be > 0");
}

void check_image(const cv::Mat& image) {
  SELFSUP_CHECK(!image.empty() && image.type() == CV_8UC1, "SimClrAugment expects a non-empty ",
                "grayscale uint8 image (CV_8UC1), got type ", image.type(), " of size ", image.rows,
                "x", image.cols);
}

// uint8 [H, W] -> float32 [H, W] in [0, 1]; the same conversion for views and plain images.
cv::Mat to_unit_float(const cv::Mat& image) {
  cv::Mat pixels;
  image.convertTo(pixels, CV_32F, 1.0 / 255.0);
  return pixels;
}

// float32 [H, W] -> (x - mean) / std written row-major into `out` (H*W floats).
void normalise(const cv::Mat& pixels, const AugmentConfig& config, float* out) {
  SELFSUP_ASSERT(pixels.type() == CV_32F && pixels.isContinuous());
  const float mean = static_cast<float>(config.mean[0]);
  const float std = static_cast<float>(config.std[0]);
  const float* in = pixels.ptr<float>();
  const size_t count = pixels.total();
  for (size_t i = 0; i < count; ++i) out[i] = (in[i] - mean) / std;
}

void clamp_unit(cv::Mat& pixels) {
  float* data = pixels.ptr<float>();
  const size_t count = pixels.total();
  for (size_t i = 0; i < count; ++i) data[i] = std::min(1.0f, std::max(0.0f, data[i]));
}

// torchvision's RandomResizedCrop.get_params: a box covering a fraction in `crop_scale` of the
// area with an aspect ratio (w/h) log-uniform in `crop_ratio`; after kCropAttempts misfits, the
// largest central box whose ratio is within range (the whole image when its ratio is).
cv::Rect random_resized_crop_box(int height, int width, const AugmentConfig& config,
                                 KeyedRng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_ratio_min = std::log(config.crop_ratio[0]);
  const double log_ratio_max = std::log(config.crop_ratio[1]);
  for (int attempt = 0; attempt < kCropAttempts; ++attempt) {
    const double target_area = area * rng.uniform(config.crop_scale[0], config.crop_scale[1]);
    const double aspect_ratio = std::exp(rng.uniform(log_ratio_min, log_ratio_max));
    const int w = static_cast<int>(std::lround(std::sqrt(target_area * aspect_ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target_area / aspect_ratio)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int top = static_cast<int>(rng.integer(0, height - h));
      const int left = static_cast<int>(rng.integer(0, width - w));
      return cv::Rect(left, top, w, h);
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int w = width;
  int h = height;
  if (in_ratio < config.crop_ratio[0]) {
    h = std::max(1, static_cast<int>(std::lround(w / config.crop_ratio[0])));
  } else if (in_ratio > config.crop_ratio[1]) {
    w = std::max(1, static_cast<int>(std::lround(h * config.crop_ratio[1])));
  }
  return cv::Rect((width - w) / 2, (height - h) / 2, w, h);
}

// Odd kernel size of about kBlurKernelFraction of `side`, at least 3.
int blur_kernel_size(int side) {
  int size = static_cast<int>(std::lround(kBlurKernelFraction * side));
  if (size % 2 == 0) ++size;
  return std::max(3, size);
}

}  // namespace

void SimClrAugment::view(const cv::Mat& image, KeyedRng& rng, float* out) const {
  check_config(config_);
  check_image(image);
  const int height = image.rows;
  const int width = image.cols;

  // 1. Random resized crop, resized back to [H, W] in float so no rounding to uint8 happens.
  const cv::Rect box = random_resized_crop_box(height, width, config_, rng);
  cv::Mat pixels = to_unit_float(image(box));  // [h, w] float32 in [0, 1]
  if (box.size() != image.size()) {
    cv::Mat resized;
    cv::resize(pixels, resized, image.size(), 0, 0, cv::INTER_LINEAR);
    pixels = resized;  // [H, W]
  }

  // 2. Horizontal flip.
  if (rng.bernoulli(config_.flip_prob)) {
    cv::Mat flipped;
    cv::flip(pixels, flipped, /*flipCode=*/1);
    pixels = flipped;
  }

  // 3. Brightness and contrast jitter, in a random order; each clamps to [0, 1] like torchvision.
  const bool jitter = rng.bernoulli(config_.jitter_prob);
  const double brightness = rng.uniform(1.0 - config_.brightness, 1.0 + config_.brightness);
  const double contrast = rng.uniform(1.0 - config_.contrast, 1.0 + config_.contrast);
  const bool brightness_first = rng.bernoulli(0.5);
  if (jitter) {
    const auto apply_brightness = [&] {
      pixels.convertTo(pixels, CV_32F, brightness);  // x * b
      clamp_unit(pixels);
    };
    // Blends with the mean grey level of the current image: (x - mean) * c + mean.
    const auto apply_contrast = [&] {
      const double mean = cv::mean(pixels)[0];
      pixels.convertTo(pixels, CV_32F, contrast, (1.0 - contrast) * mean);
      clamp_unit(pixels);
    };
    if (brightness_first) {
      apply_brightness();
      apply_contrast();
    } else {
      apply_contrast();
      apply_brightness();
    }
  }

  // 4. Gaussian blur; reflect-101 borders match torchvision's reflect padding. Sigma 0 is the
  // identity (OpenCV would instead derive a sigma from the kernel size).
  const bool blur = rng.bernoulli(config_.blur_prob);
  const double sigma = rng.uniform(config_.blur_sigma[0], config_.blur_sigma[1]);
  if (blur && sigma > 0) {
    cv::Mat blurred;
    cv::GaussianBlur(pixels, blurred, cv::Size(blur_kernel_size(width), blur_kernel_size(height)),
                     sigma, sigma, cv::BORDER_REFLECT_101);
    pixels = blurred;
  }

  // 5. Normalise into the caller's buffer.
  normalise(pixels, config_, out);
}

void SimClrAugment::plain(const cv::Mat& image, float* out) const {
  check_config(config_);
  check_image(image);
  normalise(to_unit_float(image), config_, out);
}

}  // namespace selfsup
