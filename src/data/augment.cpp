// SimCLR augmentations for grayscale and RGB images: random resized crop (global or local scale),
// horizontal flip, colour jitter (brightness, contrast, saturation, hue in a random order), random
// grayscale, Gaussian blur, solarization, per-channel normalisation. The colour steps follow
// torchvision.transforms.functional on float tensors (tests/data/augment_test.cpp compares them).
//
// Every view draws the same random numbers in the same order, whichever steps the config disables
// and whatever the image's channels (saturation, hue and grayscale are skipped on grayscale images,
// their numbers are still drawn):
//   crop (1 to 10 attempts of 2 draws, then 2 offsets on success), flip, jitter, brightness factor,
//   contrast factor, saturation factor, hue shift, jitter order (3 draws), grayscale, blur, blur
//   sigma, solarize.
// So a view depends only on the image, the rng key and the config, never on the thread computing
// it. Pixels stay float32 HWC in [0, 1] from the crop on; the last step writes normalised CHW.

#include "selfsup/data/augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/dataset.h"

namespace selfsup {
namespace {

// RandomResizedCrop gives up after this many rejected boxes and falls back to a central crop.
constexpr int kCropAttempts = 10;
// The blur kernel spans about this fraction of the view's side (SimCLR's recipe).
constexpr double kBlurKernelFraction = 0.1;
// Luma weights of torchvision's rgb_to_grayscale (used by contrast, saturation and grayscale).
constexpr float kLumaRed = 0.2989f;
constexpr float kLumaGreen = 0.587f;
constexpr float kLumaBlue = 0.114f;

// The colour jitter steps, applied in a random order (torchvision's ColorJitter).
enum JitterStep { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

void check_pair(const std::vector<double>& pair, double lowest, const char* key) {
  SELFSUP_CHECK(pair.size() == 2 && pair[0] >= lowest && pair[0] <= pair[1], "augment.", key,
                " must be a pair [min, max] with ", lowest, " <= min <= max");
}

// `values` (one for all channels, or one per channel) as one float per channel.
std::vector<float> per_channel(const std::vector<double>& values, int channels, const char* key) {
  if (values.size() != 1 && values.size() != static_cast<size_t>(channels)) {
    throw ConfigError(detail::concat("augment.", key, " has ", values.size(), " values for ",
                                     channels, "-channel images; give one value for every ",
                                     "channel, or one value for all of them"));
  }
  std::vector<float> result(static_cast<size_t>(channels));
  for (int c = 0; c < channels; ++c) {
    result[static_cast<size_t>(c)] = static_cast<float>(values[values.size() == 1 ? 0 : c]);
  }
  return result;
}

void check_image(const cv::Mat& image, int channels) {
  SELFSUP_CHECK(!image.empty() && image.type() == CV_8UC(channels), "SimClrAugment expects a ",
                "non-empty uint8 image with ", channels, " channel(s) (CV_8UC", channels,
                "), got type ", image.type(), " with ", image.channels(), " channel(s) of size ",
                image.rows, "x", image.cols);
}

// OpenCV's resize: area averaging when shrinking both sides (anti-aliased, like torchvision's
// antialias=True), bilinear otherwise.
int interpolation_for(cv::Size from, cv::Size to) {
  return to.width <= from.width && to.height <= from.height ? cv::INTER_AREA : cv::INTER_LINEAR;
}

cv::Mat resized(const cv::Mat& image, cv::Size size) {
  if (image.size() == size) return image;
  cv::Mat result;
  cv::resize(image, result, size, 0, 0, interpolation_for(image.size(), size));
  return result;
}

// torchvision's Resize(side) then CenterCrop(side): the shorter side becomes `side`, the longer
// one keeps the aspect ratio, and the central side x side square is kept.
cv::Mat resize_and_centre_crop(const cv::Mat& image, int side) {
  const int height = image.rows;
  const int width = image.cols;
  cv::Size size(side, side);
  if (height < width) {
    size.width = std::max(side, static_cast<int>(int64_t{side} * width / height));
  } else if (width < height) {
    size.height = std::max(side, static_cast<int>(int64_t{side} * height / width));
  }
  const cv::Mat scaled = resized(image, size);
  const int top = static_cast<int>(std::lround((size.height - side) / 2.0));
  const int left = static_cast<int>(std::lround((size.width - side) / 2.0));
  return scaled(cv::Rect(left, top, side, side));
}

// uint8 [H, W, C] -> float32 [H, W, C] in [0, 1]; the same conversion for views and plain images.
cv::Mat to_unit_float(const cv::Mat& image) {
  cv::Mat pixels;
  image.convertTo(pixels, CV_32F, 1.0 / 255.0);
  return pixels;
}

// float32 [S, S, C] -> (x - mean[c]) / std[c] written as CHW into `out` (C*S*S floats).
void normalise(const cv::Mat& pixels, const std::vector<float>& mean, const std::vector<float>& std,
               float* out) {
  SELFSUP_ASSERT(pixels.depth() == CV_32F && pixels.isContinuous());
  const int channels = pixels.channels();
  const size_t plane = pixels.total();
  const float* in = pixels.ptr<float>();
  for (int c = 0; c < channels; ++c) {
    float* out_plane = out + static_cast<size_t>(c) * plane;
    for (size_t i = 0; i < plane; ++i) out_plane[i] = (in[i * channels + c] - mean[c]) / std[c];
  }
}

float clamp_unit(float x) { return std::min(1.0f, std::max(0.0f, x)); }

float luma(const float* rgb) {
  return kLumaRed * rgb[0] + kLumaGreen * rgb[1] + kLumaBlue * rgb[2];
}

// Applies `f(value, pixel_index)` to every float of a continuous float32 image.
template <typename F>
void for_each_value(cv::Mat& pixels, F f) {
  SELFSUP_ASSERT(pixels.depth() == CV_32F && pixels.isContinuous());
  float* data = pixels.ptr<float>();
  const size_t count = pixels.total() * static_cast<size_t>(pixels.channels());
  for (size_t i = 0; i < count; ++i) data[i] = f(data[i]);
}

// torchvision's _blend(img, other, factor) with a constant `other`: clamp(f * x + (1 - f) * o).
void blend_with_constant(cv::Mat& pixels, float factor, float other) {
  const float offset = (1.0f - factor) * other;
  for_each_value(pixels, [&](float x) { return clamp_unit(factor * x + offset); });
}

// adjust_saturation: blends every RGB pixel with its own luma.
void blend_with_luma(cv::Mat& pixels, float factor) {
  float* rgb = pixels.ptr<float>();
  for (size_t i = 0; i < pixels.total(); ++i, rgb += 3) {
    const float grey = luma(rgb);
    for (int c = 0; c < 3; ++c) rgb[c] = clamp_unit(factor * rgb[c] + (1.0f - factor) * grey);
  }
}

// adjust_contrast's mean: of the luma for RGB, of the pixels for grayscale.
float mean_grey(const cv::Mat& pixels) {
  if (pixels.channels() == 1) return static_cast<float>(cv::mean(pixels)[0]);
  double sum = 0;
  const float* rgb = pixels.ptr<float>();
  for (size_t i = 0; i < pixels.total(); ++i, rgb += 3) sum += luma(rgb);
  return static_cast<float>(sum / static_cast<double>(pixels.total()));
}

// adjust_hue: RGB -> HSV, h = (h + shift) mod 1, HSV -> RGB; torchvision's _rgb2hsv and _hsv2rgb
// (after Pillow) per pixel, so that the result matches it to float rounding.
void shift_hue(cv::Mat& pixels, float shift) {
  float* rgb = pixels.ptr<float>();
  for (size_t i = 0; i < pixels.total(); ++i, rgb += 3) {
    const float r = rgb[0], g = rgb[1], b = rgb[2];
    const float maxc = std::max(r, std::max(g, b));
    const float minc = std::min(r, std::min(g, b));
    const bool grey = maxc == minc;
    const float chroma = maxc - minc;
    const float s = chroma / (grey ? 1.0f : maxc);
    const float divisor = grey ? 1.0f : chroma;
    const float rc = (maxc - r) / divisor, gc = (maxc - g) / divisor, bc = (maxc - b) / divisor;
    float h;
    if (maxc == r) {
      h = bc - gc;
    } else if (maxc == g) {
      h = 2.0f + rc - bc;
    } else {
      h = 4.0f + gc - rc;
    }
    h = std::fmod(h / 6.0f + 1.0f, 1.0f);
    // Python's % on floats: the result has the sign of the divisor, so it lies in [0, 1).
    h = std::fmod(h + shift, 1.0f);
    if (h < 0) h += 1.0f;
    const float v = maxc;
    const float sector = std::floor(h * 6.0f);
    const float f = h * 6.0f - sector;
    const float p = clamp_unit(v * (1.0f - s));
    const float q = clamp_unit(v * (1.0f - s * f));
    const float t = clamp_unit(v * (1.0f - s * (1.0f - f)));
    // (r, g, b) for each sixth of the hue circle.
    const float sectors[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    const float* out = sectors[static_cast<int>(sector) % 6];
    std::copy(out, out + 3, rgb);
  }
}

// RandomGrayscale on RGB: every channel becomes the luma.
void to_grayscale(cv::Mat& pixels) {
  float* rgb = pixels.ptr<float>();
  for (size_t i = 0; i < pixels.total(); ++i, rgb += 3) {
    const float grey = luma(rgb);
    rgb[0] = rgb[1] = rgb[2] = grey;
  }
}

// torchvision's RandomResizedCrop.get_params: a box covering a fraction in `scale` of the area
// with an aspect ratio (w/h) log-uniform in `ratio`; after kCropAttempts misfits, the largest
// central box whose ratio is within range (the whole image when its ratio is).
cv::Rect random_resized_crop_box(int height, int width, const std::vector<double>& scale,
                                 const std::vector<double>& ratio, KeyedRng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_ratio_min = std::log(ratio[0]);
  const double log_ratio_max = std::log(ratio[1]);
  for (int attempt = 0; attempt < kCropAttempts; ++attempt) {
    const double target_area = area * rng.uniform(scale[0], scale[1]);
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
  if (in_ratio < ratio[0]) {
    h = std::max(1, static_cast<int>(std::lround(w / ratio[0])));
  } else if (in_ratio > ratio[1]) {
    w = std::max(1, static_cast<int>(std::lround(h * ratio[1])));
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

SimClrAugment::SimClrAugment(AugmentConfig config, int channels, int image_side)
    : config_(std::move(config)), channels_(channels) {
  SELFSUP_CHECK(channels == 1 || channels == 3, "SimClrAugment handles 1- or 3-channel images, ",
                "got ", channels, " channels");
  SELFSUP_CHECK(image_side >= 0, "SimClrAugment: image_side = ", image_side,
                " must be >= 0 (0 = images of varying size)");
  check_pair(config_.crop_scale, 0.0, "crop_scale");
  check_pair(config_.local_crop_scale, 0.0, "local_crop_scale");
  SELFSUP_CHECK(config_.crop_ratio.size() == 2 && config_.crop_ratio[0] > 0 &&
                    config_.crop_ratio[0] <= config_.crop_ratio[1],
                "augment.crop_ratio must be a pair [min, max] with 0 < min <= max");
  check_pair(config_.blur_sigma, 0.0, "blur_sigma");
  mean_ = per_channel(config_.mean, channels, "mean");
  std_ = per_channel(config_.std, channels, "std");
  for (const float s : std_) SELFSUP_CHECK(s > 0, "augment.std = ", s, " must be > 0");

  if (config_.size > 0) {
    global_size_ = config_.size;
  } else if (image_side > 0) {
    global_size_ = image_side;
  } else {
    throw ConfigError(
        "augment.size = 0 (the image's side) needs square images all of one size, and these "
        "vary in size or are not square; set augment.size, e.g. augment.size=224");
  }
  local_size_ = config_.local_size > 0
                    ? config_.local_size
                    : std::max(1, static_cast<int>(std::lround(global_size_ * 3.0 / 7.0)));
  if (config_.local_views > 0 && local_size_ > global_size_) {
    throw ConfigError(detail::concat("augment.local_size = ", local_size_,
                                     " is larger than the global views' side ", global_size_,
                                     "; local views are the small crops"));
  }
}

SimClrAugment SimClrAugment::for_dataset(AugmentConfig config, const Dataset& dataset) {
  const int side = dataset.height() == dataset.width() ? dataset.height() : 0;
  return SimClrAugment(std::move(config), dataset.channels(), side);
}

void SimClrAugment::view(const cv::Mat& image, KeyedRng& rng, ViewKind kind, float* out) const {
  check_image(image, channels_);
  const int side = this->side(kind);
  const bool colour = channels_ == 3;

  // 1. Random resized crop, resized to [S, S] in float so no rounding to uint8 happens.
  const cv::Rect box = random_resized_crop_box(
      image.rows, image.cols,
      kind == ViewKind::kGlobal ? config_.crop_scale : config_.local_crop_scale, config_.crop_ratio,
      rng);
  cv::Mat pixels = resized(to_unit_float(image(box)), cv::Size(side, side));  // [S, S, C]

  // 2. Horizontal flip.
  if (rng.bernoulli(config_.flip_prob)) {
    cv::Mat flipped;
    cv::flip(pixels, flipped, /*flipCode=*/1);
    pixels = flipped;
  }

  // 3. Colour jitter: every factor and the order are drawn whether or not the jitter applies.
  // Each step clamps to [0, 1] like torchvision.
  const bool jitter = rng.bernoulli(config_.jitter_prob);
  const auto brightness =
      static_cast<float>(rng.uniform(1.0 - config_.brightness, 1.0 + config_.brightness));
  const auto contrast =
      static_cast<float>(rng.uniform(1.0 - config_.contrast, 1.0 + config_.contrast));
  const auto saturation =
      static_cast<float>(rng.uniform(1.0 - config_.saturation, 1.0 + config_.saturation));
  const auto hue = static_cast<float>(rng.uniform(-config_.hue, config_.hue));
  std::array<int, 4> order{kBrightness, kContrast, kSaturation, kHue};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.integer(0, i)]);  // Fisher-Yates
  if (jitter) {
    for (const int step : order) {
      switch (step) {
        case kBrightness:  // blends with black: x * b
          blend_with_constant(pixels, brightness, 0.0f);
          break;
        case kContrast:  // blends with the mean grey level of the current image
          blend_with_constant(pixels, contrast, mean_grey(pixels));
          break;
        case kSaturation:  // blends with the pixel's own grey level
          if (colour) blend_with_luma(pixels, saturation);
          break;
        default:  // hue shift in HSV, a fraction of a turn
          if (colour && hue != 0.0f) shift_hue(pixels, hue);
          break;
      }
    }
  }

  // 4. Random grayscale: luma in every channel.
  if (rng.bernoulli(config_.grayscale_prob) && colour) to_grayscale(pixels);

  // 5. Gaussian blur; reflect-101 borders match torchvision's reflect padding. Sigma 0 is the
  // identity (OpenCV would instead derive a sigma from the kernel size).
  const bool blur = rng.bernoulli(config_.blur_prob);
  const double sigma = rng.uniform(config_.blur_sigma[0], config_.blur_sigma[1]);
  if (blur && sigma > 0) {
    const int kernel = blur_kernel_size(side);
    cv::Mat blurred;
    cv::GaussianBlur(pixels, blurred, cv::Size(kernel, kernel), sigma, sigma,
                     cv::BORDER_REFLECT_101);
    pixels = blurred;
  }

  // 6. Solarization: values at or above the threshold are inverted.
  if (rng.bernoulli(config_.solarize_prob)) {
    const auto threshold = static_cast<float>(config_.solarize_threshold);
    for_each_value(pixels, [&](float x) { return x >= threshold ? 1.0f - x : x; });
  }

  // 7. Normalise into the caller's buffer, [C, S, S].
  normalise(pixels, mean_, std_, out);
}

void SimClrAugment::plain(const cv::Mat& image, float* out) const {
  check_image(image, channels_);
  cv::Mat pixels = resize_and_centre_crop(to_unit_float(image), global_size_);
  if (!pixels.isContinuous()) pixels = pixels.clone();  // the centre crop is a window
  normalise(pixels, mean_, std_, out);
}

void resize_to_uint8(const cv::Mat& image, int side, uint8_t* out) {
  SELFSUP_CHECK(!image.empty() && (image.type() == CV_8UC1 || image.type() == CV_8UC3),
                "resize_to_uint8 expects a non-empty uint8 image with 1 or 3 channels, got type ",
                image.type(), " of size ", image.rows, "x", image.cols);
  SELFSUP_CHECK(side >= 1, "resize_to_uint8: side = ", side, " must be >= 1");
  const cv::Mat square = resize_and_centre_crop(image, side);  // [side, side, C]
  const int channels = image.channels();
  const size_t plane = static_cast<size_t>(side) * side;
  for (int y = 0; y < side; ++y) {
    const uint8_t* row = square.ptr<uint8_t>(y);
    for (int x = 0; x < side; ++x) {
      const size_t pixel = static_cast<size_t>(y) * side + x;
      for (int c = 0; c < channels; ++c) out[c * plane + pixel] = row[x * channels + c];
    }
  }
}

}  // namespace selfsup
