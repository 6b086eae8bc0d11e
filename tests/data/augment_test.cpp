// SimClrAugment: determinism by key, and each step against a closed form or OpenCV directly.

#include "selfsup/data/augment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// [height, width] uint8 image with an asymmetric pattern (so that flips and crops change it).
cv::Mat make_image(int height, int width, int salt = 0) {
  cv::Mat image(height, width, CV_8UC1);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<uint8_t>(y, x) = static_cast<uint8_t>((37 * y + 11 * x * x + 5 * salt) % 256);
    }
  }
  return image;
}

// A config with every random step off and the crop forced to the whole (square) image.
AugmentConfig identity_config() {
  AugmentConfig config;
  config.crop_scale = {1.0, 1.0};
  config.crop_ratio = {1.0, 1.0};
  config.flip_prob = 0.0;
  config.jitter_prob = 0.0;
  config.blur_prob = 0.0;
  return config;
}

std::vector<float> view_of(const SimClrAugment& augment, const cv::Mat& image, KeyedRng rng) {
  std::vector<float> out(image.total());
  augment.view(image, rng, out.data());
  return out;
}

std::vector<float> plain_of(const SimClrAugment& augment, const cv::Mat& image) {
  std::vector<float> out(image.total());
  augment.plain(image, out.data());
  return out;
}

// A float32 [0, 1] image normalised the way the augmentation does it.
std::vector<float> normalised(const cv::Mat& unit, const AugmentConfig& config) {
  std::vector<float> out;
  for (int y = 0; y < unit.rows; ++y) {
    for (int x = 0; x < unit.cols; ++x) {
      out.push_back((unit.at<float>(y, x) - static_cast<float>(config.mean[0])) /
                    static_cast<float>(config.std[0]));
    }
  }
  return out;
}

TEST(AugmentTest, PlainIsNormalisedPixels) {
  const AugmentConfig config;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(5, 7);
  const std::vector<float> out = plain_of(augment, image);
  ASSERT_EQ(out.size(), 35u);
  for (int i = 0; i < 35; ++i) {
    const double expected = (image.data[i] / 255.0 - config.mean[0]) / config.std[0];
    EXPECT_NEAR(out[i], expected, 1e-5);
  }
}

TEST(AugmentTest, SameKeySameView) {
  AugmentConfig config;
  config.blur_prob = 0.5;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  for (uint64_t index = 0; index < 20; ++index) {
    EXPECT_EQ(view_of(augment, image, KeyedRng(7, 3, index, 1)),
              view_of(augment, image, KeyedRng(7, 3, index, 1)));
  }
}

TEST(AugmentTest, DifferentKeysDiffer) {
  AugmentConfig config;
  config.blur_prob = 0.5;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  const std::vector<float> base = view_of(augment, image, KeyedRng(7, 3, 10, 0));
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 3, 10, 1)));  // other view
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 4, 10, 0)));  // other epoch
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 3, 11, 0)));  // other index
  EXPECT_NE(base, view_of(augment, image, KeyedRng(8, 3, 10, 0)));  // other seed
}

TEST(AugmentTest, OutputShapeAndRange) {
  AugmentConfig config;
  config.blur_prob = 0.5;
  const SimClrAugment augment(config);
  const float lo = static_cast<float>((0.0 - config.mean[0]) / config.std[0]);
  const float hi = static_cast<float>((1.0 - config.mean[0]) / config.std[0]);
  // Non-square images too: the output has the input's size.
  for (const cv::Size size : {cv::Size(28, 28), cv::Size(20, 12), cv::Size(9, 31)}) {
    const cv::Mat image = make_image(size.height, size.width);
    for (uint64_t index = 0; index < 50; ++index) {
      // Guard bytes after the output catch writes past H*W floats.
      std::vector<float> out(image.total() + 4, 12345.0f);
      KeyedRng rng(1, 0, index, 0);
      augment.view(image, rng, out.data());
      for (size_t i = 0; i < image.total(); ++i) {
        ASSERT_TRUE(std::isfinite(out[i]));
        ASSERT_GE(out[i], lo - 1e-5f);
        ASSERT_LE(out[i], hi + 1e-5f);
      }
      for (size_t i = image.total(); i < out.size(); ++i) ASSERT_EQ(out[i], 12345.0f);
    }
  }
}

TEST(AugmentTest, NoAugmentationEqualsPlain) {
  const SimClrAugment augment(identity_config());
  const cv::Mat image = make_image(28, 28);
  const std::vector<float> plain = plain_of(augment, image);
  for (uint64_t index = 0; index < 10; ++index) {
    EXPECT_EQ(view_of(augment, image, KeyedRng(3, 1, index, 0)), plain);
  }
}

TEST(AugmentTest, FlipOnlyMirrorsPlain) {
  AugmentConfig config = identity_config();
  config.flip_prob = 1.0;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  const std::vector<float> plain = plain_of(augment, image);
  const std::vector<float> flipped = view_of(augment, image, KeyedRng(3, 1, 2, 0));
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) ASSERT_EQ(flipped[y * 28 + x], plain[y * 28 + 27 - x]);
  }
}

TEST(AugmentTest, CropIsAResizedWindow) {
  // A quarter of the area at ratio 1: a 14x14 window somewhere in the 28x28 image, resized back.
  AugmentConfig config = identity_config();
  config.crop_scale = {0.25, 0.25};
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  cv::Mat unit;
  image.convertTo(unit, CV_32F, 1.0 / 255.0);
  for (uint64_t index = 0; index < 5; ++index) {
    const std::vector<float> out = view_of(augment, image, KeyedRng(5, 0, index, 0));
    EXPECT_NE(out, plain_of(augment, image));
    int matches = 0;
    for (int top = 0; top <= 14; ++top) {
      for (int left = 0; left <= 14; ++left) {
        cv::Mat resized;
        cv::resize(unit(cv::Rect(left, top, 14, 14)), resized, cv::Size(28, 28), 0, 0,
                   cv::INTER_LINEAR);
        if (normalised(resized, config) == out) ++matches;
      }
    }
    EXPECT_EQ(matches, 1) << "index " << index;
  }
}

TEST(AugmentTest, ImpossibleCropFallsBackToCentre) {
  // Ratio 2 on a square image at full area never fits: the fallback is the central 28x14 box.
  AugmentConfig config = identity_config();
  config.crop_ratio = {2.0, 2.0};
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  cv::Mat unit;
  cv::Mat resized;
  image.convertTo(unit, CV_32F, 1.0 / 255.0);
  cv::resize(unit(cv::Rect(0, 7, 28, 14)), resized, cv::Size(28, 28), 0, 0, cv::INTER_LINEAR);
  EXPECT_EQ(view_of(augment, image, KeyedRng(5, 0, 0, 0)), normalised(resized, config));
}

TEST(AugmentTest, BrightnessOnlyScalesPixels) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.4;
  config.contrast = 0.0;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  for (uint64_t index = 0; index < 5; ++index) {
    const std::vector<float> out = view_of(augment, image, KeyedRng(5, 0, index, 0));
    // Recover the factor from an unclamped mid-grey pixel, then check clamp(x * b) everywhere.
    double factor = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const double x = image.data[i] / 255.0;
      if (x > 0.3 && x < 0.6) {
        factor = (out[i] * config.std[0] + config.mean[0]) / x;
        break;
      }
    }
    ASSERT_GE(factor, 0.6 - 1e-4);
    ASSERT_LE(factor, 1.4 + 1e-4);
    for (size_t i = 0; i < out.size(); ++i) {
      const double expected = std::min(1.0, image.data[i] / 255.0 * factor);
      ASSERT_NEAR(out[i] * config.std[0] + config.mean[0], expected, 1e-4);
    }
  }
}

TEST(AugmentTest, ContrastOnlyBlendsWithMean) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.0;
  config.contrast = 0.4;
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  const double mean = cv::mean(image)[0] / 255.0;
  const std::vector<float> out = view_of(augment, image, KeyedRng(5, 0, 0, 0));
  // (x - mean) * c + mean, clamped: recover c from a pixel far from the mean and unclamped.
  double factor = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double x = image.data[i] / 255.0;
    if (std::abs(x - mean) > 0.1 && std::abs(x - mean) < 0.3) {
      factor = (out[i] * config.std[0] + config.mean[0] - mean) / (x - mean);
      break;
    }
  }
  ASSERT_GE(factor, 0.6 - 1e-4);
  ASSERT_LE(factor, 1.4 + 1e-4);
  for (size_t i = 0; i < out.size(); ++i) {
    const double x = image.data[i] / 255.0;
    const double expected = std::clamp((x - mean) * factor + mean, 0.0, 1.0);
    ASSERT_NEAR(out[i] * config.std[0] + config.mean[0], expected, 1e-4);
  }
}

TEST(AugmentTest, BlurMatchesOpenCv) {
  AugmentConfig config = identity_config();
  config.blur_prob = 1.0;
  config.blur_sigma = {1.5, 1.5};
  const SimClrAugment augment(config);
  const cv::Mat image = make_image(28, 28);
  cv::Mat unit;
  cv::Mat blurred;
  image.convertTo(unit, CV_32F, 1.0 / 255.0);
  // 10% of 28 pixels, rounded to the odd size 3.
  cv::GaussianBlur(unit, blurred, cv::Size(3, 3), 1.5, 1.5, cv::BORDER_REFLECT_101);
  const std::vector<float> expected = normalised(blurred, config);
  const std::vector<float> out = view_of(augment, image, KeyedRng(5, 0, 0, 0));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 1e-5);
}

TEST(AugmentTest, RejectsColourImages) {
  const SimClrAugment augment{AugmentConfig{}};
  const cv::Mat colour(8, 8, CV_8UC3, cv::Scalar(1, 2, 3));
  std::vector<float> out(64 * 3);
  KeyedRng rng(0, 0, 0, 0);
  EXPECT_THROW(augment.view(colour, rng, out.data()), Error);
  EXPECT_THROW(augment.plain(colour, out.data()), Error);
}

}  // namespace
}  // namespace selfsup
