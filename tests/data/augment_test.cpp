// SimClrAugment: determinism by key and the documented draw order, each step against a closed form,
// OpenCV or torchvision (tests/data/torchvision_reference.py, run with /usr/bin/python3),
// grayscale and RGB images of any size, multi-crop local views, statistics of the random steps,
// plain() and resize_to_uint8.

#include "selfsup/data/augment.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <string>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

#ifndef SELFSUP_TEST_DATA_DIR
#error "tests/CMakeLists.txt defines SELFSUP_TEST_DATA_DIR (the folder of torchvision_reference.py)"
#endif

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

// [height, width, 3] RGB image of seeded noise: every hue, saturation and value occurs.
cv::Mat make_rgb_image(int height, int width, uint64_t seed = 0) {
  cv::Mat image(height, width, CV_8UC3);
  KeyedRng rng(seed, 0, 0, 0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) image.at<cv::Vec3b>(y, x)[c] = uint8_t(rng.integer(0, 255));
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
  config.grayscale_prob = 0.0;
  config.blur_prob = 0.0;
  config.solarize_prob = 0.0;
  return config;
}

// The augmentation for square images of `side` pixels.
SimClrAugment augment_for(const cv::Mat& image, AugmentConfig config) {
  SELFSUP_ASSERT(image.rows == image.cols);
  return SimClrAugment(std::move(config), image.channels(), image.rows);
}

std::vector<float> view_of(const SimClrAugment& augment, const cv::Mat& image, KeyedRng rng,
                           ViewKind kind = ViewKind::kGlobal) {
  std::vector<float> out(static_cast<size_t>(augment.view_floats(kind)));
  augment.view(image, rng, kind, out.data());
  return out;
}

std::vector<float> plain_of(const SimClrAugment& augment, const cv::Mat& image) {
  std::vector<float> out(static_cast<size_t>(augment.view_floats(ViewKind::kGlobal)));
  augment.plain(image, out.data());
  return out;
}

// A float32 [H, W] grayscale image in [0, 1] normalised the way the augmentation does it.
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

cv::Mat unit_of(const cv::Mat& image) {
  cv::Mat unit;
  image.convertTo(unit, CV_32F, 1.0 / 255.0);
  return unit;
}

// The numbers one view draws, in the order documented at the top of augment.cpp, for a crop that
// fits at its first attempt (e.g. scale and ratio [1, 1] on a square image).
struct Draws {
  bool flip = false;
  bool jitter = false;
  float brightness = 1, contrast = 1, saturation = 1, hue = 0;
  std::array<int, 4> order{0, 1, 2, 3};  // 0 brightness, 1 contrast, 2 saturation, 3 hue
  bool grayscale = false;
  bool blur = false;
  double sigma = 0;
  bool solarize = false;
};

Draws draws_of(KeyedRng rng, const AugmentConfig& config) {
  Draws d;
  rng.uniform(config.crop_scale[0], config.crop_scale[1]);
  rng.uniform(std::log(config.crop_ratio[0]), std::log(config.crop_ratio[1]));
  rng.integer(0, 0);
  rng.integer(0, 0);
  d.flip = rng.bernoulli(config.flip_prob);
  d.jitter = rng.bernoulli(config.jitter_prob);
  d.brightness = float(rng.uniform(1 - config.brightness, 1 + config.brightness));
  d.contrast = float(rng.uniform(1 - config.contrast, 1 + config.contrast));
  d.saturation = float(rng.uniform(1 - config.saturation, 1 + config.saturation));
  d.hue = float(rng.uniform(-config.hue, config.hue));
  for (int i = 3; i > 0; --i) std::swap(d.order[i], d.order[rng.integer(0, i)]);
  d.grayscale = rng.bernoulli(config.grayscale_prob);
  d.blur = rng.bernoulli(config.blur_prob);
  d.sigma = rng.uniform(config.blur_sigma[0], config.blur_sigma[1]);
  d.solarize = rng.bernoulli(config.solarize_prob);
  return d;
}

// Runs torchvision_reference.py on `cases`; nullopt (with the reason in `why`) when
// /usr/bin/python3 lacks torchvision.
std::optional<nlohmann::json> torchvision_results(const nlohmann::json& cases, std::string& why) {
  namespace fs = std::filesystem;
  const fs::path input =
      fs::temp_directory_path() / ("selfsup_augment_cases_" + std::to_string(::getpid()) + ".json");
  std::ofstream(input) << nlohmann::json{{"cases", cases}}.dump();
  const std::string command = std::string("/usr/bin/python3 ") + SELFSUP_TEST_DATA_DIR +
                              "/torchvision_reference.py " + input.string();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    fs::remove(input);
    why = "cannot run " + command;
    return std::nullopt;
  }
  std::string output;
  char buffer[1 << 16];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = ::pclose(pipe);
  fs::remove(input);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    why =
        "`" + command + "` exited with status " + std::to_string(WEXITSTATUS(status)) +
        (WEXITSTATUS(status) == 77 ? " (no torchvision: apt-get install python3-torchvision)" : "");
    return std::nullopt;
  }
  return nlohmann::json::parse(output).at("results");
}

// uint8 HWC image -> float [C][H][W] in [0, 1], as JSON: the very floats the augmentation starts
// from, so that a threshold compares equal values on both sides.
nlohmann::json chw_json(const cv::Mat& image) {
  const cv::Mat unit = unit_of(image);
  nlohmann::json planes = nlohmann::json::array();
  for (int c = 0; c < image.channels(); ++c) {
    nlohmann::json rows = nlohmann::json::array();
    for (int y = 0; y < image.rows; ++y) {
      std::vector<double> row;
      for (int x = 0; x < image.cols; ++x)
        row.push_back(unit.ptr<float>(y)[x * image.channels() + c]);
      rows.push_back(row);
    }
    planes.push_back(rows);
  }
  return planes;
}

TEST(AugmentTest, PlainOfASquareImageIsNormalisedPixels) {
  const cv::Mat image = make_image(7, 7);
  const AugmentConfig config;
  const SimClrAugment augment = augment_for(image, config);
  const std::vector<float> out = plain_of(augment, image);
  ASSERT_EQ(out.size(), 49u);
  for (int i = 0; i < 49; ++i) {
    const double expected = (image.data[i] / 255.0 - config.mean[0]) / config.std[0];
    EXPECT_NEAR(out[i], expected, 1e-5);
  }
}

TEST(AugmentTest, PlainCentreCropsTheLongerSide) {
  // 10 x 20 at size 10: no resize, columns 5 .. 14 kept (torchvision's Resize + CenterCrop).
  AugmentConfig config;
  config.size = 10;
  const SimClrAugment augment(config, 1, /*image_side=*/0);
  const cv::Mat wide = make_image(10, 20);
  const cv::Mat tall = make_image(20, 10);
  const std::vector<float> from_wide = plain_of(augment, wide);
  const std::vector<float> from_tall = plain_of(augment, tall);
  EXPECT_EQ(from_wide, normalised(unit_of(wide(cv::Rect(5, 0, 10, 10))), config));
  EXPECT_EQ(from_tall, normalised(unit_of(tall(cv::Rect(0, 5, 10, 10))), config));
  // 20 x 40 at size 10: shrunk to 10 x 20 (area averaging), then the centre.
  const cv::Mat large = make_image(20, 40);
  cv::Mat shrunk;
  cv::resize(unit_of(large), shrunk, cv::Size(20, 10), 0, 0, cv::INTER_AREA);
  const std::vector<float> expected = normalised(shrunk(cv::Rect(5, 0, 10, 10)), config);
  const std::vector<float> out = plain_of(augment, large);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 1e-5);
}

TEST(AugmentTest, ResizeToUint8MatchesPlainGeometry) {
  const cv::Mat image = make_rgb_image(20, 40, 3);
  std::vector<uint8_t> out(3 * 10 * 10);
  resize_to_uint8(image, 10, out.data());
  cv::Mat shrunk;
  cv::resize(image, shrunk, cv::Size(20, 10), 0, 0, cv::INTER_AREA);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 10; ++y) {
      for (int x = 0; x < 10; ++x) {
        ASSERT_EQ(out[(c * 10 + y) * 10 + x], shrunk.at<cv::Vec3b>(y, x + 5)[c]);
      }
    }
  }
  EXPECT_THROW(resize_to_uint8(cv::Mat(), 10, out.data()), Error);
  EXPECT_THROW(resize_to_uint8(image, 0, out.data()), Error);
}

TEST(AugmentTest, SameKeySameView) {
  AugmentConfig config;
  config.blur_prob = 0.5;
  config.solarize_prob = 0.3;
  for (const cv::Mat& image : {make_image(28, 28), make_rgb_image(28, 28)}) {
    const SimClrAugment augment = augment_for(image, config);
    for (uint64_t index = 0; index < 20; ++index) {
      EXPECT_EQ(view_of(augment, image, KeyedRng(7, 3, index, 1)),
                view_of(augment, image, KeyedRng(7, 3, index, 1)));
    }
  }
}

TEST(AugmentTest, DifferentKeysDiffer) {
  AugmentConfig config;
  config.blur_prob = 0.5;
  const cv::Mat image = make_rgb_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  const std::vector<float> base = view_of(augment, image, KeyedRng(7, 3, 10, 0));
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 3, 10, 1)));  // other view
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 4, 10, 0)));  // other epoch
  EXPECT_NE(base, view_of(augment, image, KeyedRng(7, 3, 11, 0)));  // other index
  EXPECT_NE(base, view_of(augment, image, KeyedRng(8, 3, 10, 0)));  // other seed
}

TEST(AugmentTest, OutputShapeAndRangeForAnyImageSize) {
  AugmentConfig config;
  config.size = 16;
  config.local_views = 2;
  config.blur_prob = 0.5;
  config.solarize_prob = 0.2;
  config.mean = {0.4, 0.5, 0.6};
  config.std = {0.2, 0.3, 0.4};
  const SimClrAugment augment(config, 3, /*image_side=*/0);
  EXPECT_EQ(augment.global_size(), 16);
  EXPECT_EQ(augment.local_size(), 7);  // 16 * 3/7 rounded
  // Larger, smaller and non-square images: the output is [3, S, S] whatever the input.
  for (const cv::Size size :
       {cv::Size(28, 28), cv::Size(40, 12), cv::Size(9, 31), cv::Size(3, 2)}) {
    const cv::Mat image = make_rgb_image(size.height, size.width, size.area());
    for (const ViewKind kind : {ViewKind::kGlobal, ViewKind::kLocal}) {
      const auto floats = static_cast<size_t>(augment.view_floats(kind));
      for (uint64_t index = 0; index < 30; ++index) {
        // Guard floats after the output catch writes past C*S*S floats.
        std::vector<float> out(floats + 4, 12345.0f);
        KeyedRng rng(1, 0, index, 0);
        augment.view(image, rng, kind, out.data());
        for (size_t i = 0; i < floats; ++i) {
          const size_t c = i / (floats / 3);
          ASSERT_TRUE(std::isfinite(out[i]));
          ASSERT_GE(out[i] * config.std[c] + config.mean[c], -1e-5);
          ASSERT_LE(out[i] * config.std[c] + config.mean[c], 1 + 1e-5);
        }
        for (size_t i = floats; i < out.size(); ++i) ASSERT_EQ(out[i], 12345.0f);
      }
    }
  }
}

TEST(AugmentTest, SidesOfGlobalAndLocalViews) {
  AugmentConfig config;
  EXPECT_EQ(SimClrAugment(config, 1, 28).global_size(), 28);
  EXPECT_EQ(SimClrAugment(config, 1, 28).local_size(), 12);  // 28 * 3/7
  config.size = 224;
  EXPECT_EQ(SimClrAugment(config, 3, 0).local_size(), 96);  // DINO's 224 / 96
  config.local_size = 64;
  const SimClrAugment augment(config, 3, 32);  // augment.size wins over the image's side
  EXPECT_EQ(augment.global_size(), 224);
  EXPECT_EQ(augment.local_size(), 64);
  EXPECT_EQ(augment.view_floats(ViewKind::kLocal), 3 * 64 * 64);
  config.size = 2;
  config.local_size = 0;
  EXPECT_EQ(SimClrAugment(config, 1, 0).local_size(), 1);  // at least one pixel
}

TEST(AugmentTest, ConfigErrorsNameTheKey) {
  const auto message_of = [](AugmentConfig config, int channels, int side) -> std::string {
    try {
      SimClrAugment augment(std::move(config), channels, side);
    } catch (const ConfigError& error) {
      return error.what();
    }
    return "";
  };
  // Images of varying size have no side of their own.
  EXPECT_NE(message_of(AugmentConfig{}, 3, 0).find("augment.size"), std::string::npos);
  AugmentConfig config;
  config.mean = {0.1, 0.2};
  EXPECT_NE(message_of(config, 3, 8).find("augment.mean has 2 values for 3-channel"),
            std::string::npos);
  config.mean = {0.1, 0.2, 0.3};
  EXPECT_NE(message_of(config, 1, 8).find("augment.mean"), std::string::npos);
  config = AugmentConfig{};
  config.std = {0.1, 0.2, 0.3, 0.4};
  EXPECT_NE(message_of(config, 3, 8).find("augment.std"), std::string::npos);
  config = AugmentConfig{};
  config.local_views = 2;
  config.local_size = 40;
  EXPECT_NE(message_of(config, 1, 32).find("augment.local_size"), std::string::npos);
  EXPECT_THROW(SimClrAugment(AugmentConfig{}, 2, 8), Error);
}

TEST(AugmentTest, RejectsImagesOfOtherChannels) {
  const SimClrAugment grey(AugmentConfig{}, 1, 8);
  const SimClrAugment rgb(AugmentConfig{}, 3, 8);
  std::vector<float> out(3 * 64);
  KeyedRng rng(0, 0, 0, 0);
  EXPECT_THROW(grey.view(make_rgb_image(8, 8), rng, ViewKind::kGlobal, out.data()), Error);
  EXPECT_THROW(grey.plain(make_rgb_image(8, 8), out.data()), Error);
  EXPECT_THROW(rgb.view(make_image(8, 8), rng, ViewKind::kGlobal, out.data()), Error);
  EXPECT_THROW(rgb.plain(cv::Mat(), out.data()), Error);
}

TEST(AugmentTest, NoAugmentationEqualsPlain) {
  for (const cv::Mat& image : {make_image(28, 28), make_rgb_image(28, 28)}) {
    const SimClrAugment augment = augment_for(image, identity_config());
    const std::vector<float> plain = plain_of(augment, image);
    for (uint64_t index = 0; index < 10; ++index) {
      EXPECT_EQ(view_of(augment, image, KeyedRng(3, 1, index, 0)), plain);
    }
  }
}

TEST(AugmentTest, PerChannelNormalisation) {
  AugmentConfig config = identity_config();
  config.mean = {0.1, 0.5, 0.9};
  config.std = {0.5, 0.25, 2.0};
  const cv::Mat image = make_rgb_image(6, 6);
  const cv::Mat unit = unit_of(image);
  const std::vector<float> out = plain_of(augment_for(image, config), image);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 6; ++y) {
      for (int x = 0; x < 6; ++x) {
        const float value = unit.at<cv::Vec3f>(y, x)[c];
        EXPECT_EQ(out[(c * 6 + y) * 6 + x], (value - float(config.mean[c])) / float(config.std[c]));
      }
    }
  }
}

TEST(AugmentTest, FlipOnlyMirrorsPlain) {
  AugmentConfig config = identity_config();
  config.flip_prob = 1.0;
  const cv::Mat image = make_rgb_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  const std::vector<float> plain = plain_of(augment, image);
  const std::vector<float> flipped = view_of(augment, image, KeyedRng(3, 1, 2, 0));
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 28; ++y) {
      for (int x = 0; x < 28; ++x) {
        ASSERT_EQ(flipped[(c * 28 + y) * 28 + x], plain[(c * 28 + y) * 28 + 27 - x]);
      }
    }
  }
}

TEST(AugmentTest, CropIsAResizedWindow) {
  // A quarter of the area at ratio 1: a 14x14 window somewhere in the 28x28 image, resized back.
  AugmentConfig config = identity_config();
  config.crop_scale = {0.25, 0.25};
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  const cv::Mat unit = unit_of(image);
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

TEST(AugmentTest, LocalViewIsASmallWindowShrunkToLocalSize) {
  // Local crops take local_crop_scale of the area: a 14x14 window of 28x28, shrunk to 12x12.
  AugmentConfig config = identity_config();
  config.local_crop_scale = {0.25, 0.25};
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  ASSERT_EQ(augment.local_size(), 12);
  const cv::Mat unit = unit_of(image);
  for (uint64_t index = 0; index < 3; ++index) {
    const std::vector<float> out =
        view_of(augment, image, KeyedRng(5, 0, index, 2), ViewKind::kLocal);
    ASSERT_EQ(out.size(), 144u);
    int matches = 0;
    for (int top = 0; top <= 14; ++top) {
      for (int left = 0; left <= 14; ++left) {
        cv::Mat resized;
        cv::resize(unit(cv::Rect(left, top, 14, 14)), resized, cv::Size(12, 12), 0, 0,
                   cv::INTER_AREA);
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
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  cv::Mat resized;
  cv::resize(unit_of(image)(cv::Rect(0, 7, 28, 14)), resized, cv::Size(28, 28), 0, 0,
             cv::INTER_LINEAR);
  EXPECT_EQ(view_of(augment, image, KeyedRng(5, 0, 0, 0)), normalised(resized, config));
}

TEST(AugmentTest, BrightnessOnlyScalesPixels) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.4;
  config.contrast = 0.0;
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  for (uint64_t index = 0; index < 5; ++index) {
    const KeyedRng rng(5, 0, index, 0);
    const std::vector<float> out = view_of(augment, image, rng);
    const double factor = draws_of(rng, config).brightness;
    ASSERT_GE(factor, 0.6 - 1e-6);
    ASSERT_LE(factor, 1.4 + 1e-6);
    for (size_t i = 0; i < out.size(); ++i) {
      const double expected = std::min(1.0, image.data[i] / 255.0 * factor);
      ASSERT_NEAR(out[i] * config.std[0] + config.mean[0], expected, 1e-5);
    }
  }
}

TEST(AugmentTest, ContrastOnlyBlendsWithMean) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.0;
  config.contrast = 0.4;
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  const double mean = cv::mean(image)[0] / 255.0;
  const KeyedRng rng(5, 0, 0, 0);
  const std::vector<float> out = view_of(augment, image, rng);
  const double factor = draws_of(rng, config).contrast;
  for (size_t i = 0; i < out.size(); ++i) {
    const double x = image.data[i] / 255.0;
    const double expected = std::clamp((x - mean) * factor + mean, 0.0, 1.0);
    ASSERT_NEAR(out[i] * config.std[0] + config.mean[0], expected, 1e-5);
  }
}

TEST(AugmentTest, BlurMatchesOpenCv) {
  AugmentConfig config = identity_config();
  config.blur_prob = 1.0;
  config.blur_sigma = {1.5, 1.5};
  const cv::Mat image = make_image(28, 28);
  const SimClrAugment augment = augment_for(image, config);
  cv::Mat blurred;
  // 10% of 28 pixels, rounded to the odd size 3.
  cv::GaussianBlur(unit_of(image), blurred, cv::Size(3, 3), 1.5, 1.5, cv::BORDER_REFLECT_101);
  const std::vector<float> expected = normalised(blurred, config);
  const std::vector<float> out = view_of(augment, image, KeyedRng(5, 0, 0, 0));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 1e-5);
}

TEST(AugmentTest, SolarizeInvertsAboveTheThreshold) {
  AugmentConfig config = identity_config();
  config.solarize_prob = 1.0;
  config.solarize_threshold = 0.4;
  const cv::Mat image = make_image(16, 16);
  const SimClrAugment augment = augment_for(image, config);
  const std::vector<float> out = view_of(augment, image, KeyedRng(1, 0, 0, 0));
  for (size_t i = 0; i < out.size(); ++i) {
    const float x = image.data[i] / 255.0f;
    const float expected = x >= 0.4f ? 1.0f - x : x;
    ASSERT_NEAR(out[i] * config.std[0] + config.mean[0], expected, 1e-5);
  }
}

TEST(AugmentTest, GrayscaleInputSkipsColourSteps) {
  // Saturation, hue and grayscale are certain and strong, yet a grayscale image comes out as if
  // they were off: the other steps (crop, flip, brightness, blur) draw the same numbers.
  AugmentConfig colour;
  colour.jitter_prob = 1.0;
  colour.contrast = 0.0;
  colour.saturation = 1.0;
  colour.hue = 0.5;
  colour.grayscale_prob = 1.0;
  colour.blur_prob = 0.5;
  AugmentConfig no_colour = colour;
  no_colour.saturation = 0.0;
  no_colour.hue = 0.0;
  no_colour.grayscale_prob = 0.0;
  const cv::Mat image = make_image(20, 20);
  const SimClrAugment with = augment_for(image, colour);
  const SimClrAugment without = augment_for(image, no_colour);
  for (uint64_t index = 0; index < 20; ++index) {
    const KeyedRng rng(9, 1, index, 0);
    EXPECT_EQ(view_of(with, image, rng), view_of(without, image, rng)) << "index " << index;
  }
}

TEST(AugmentTest, DisabledStepsKeepTheDrawOrder) {
  // Changing what a disabled step would do changes nothing else: its numbers are still drawn.
  AugmentConfig base;
  base.jitter_prob = 0.0;
  base.grayscale_prob = 0.0;
  base.blur_prob = 0.5;
  base.solarize_prob = 0.0;
  AugmentConfig other = base;
  other.brightness = 0.9;
  other.contrast = 0.1;
  other.saturation = 0.7;
  other.hue = 0.3;
  other.solarize_threshold = 0.1;
  const cv::Mat image = make_rgb_image(24, 24);
  const SimClrAugment a = augment_for(image, base);
  const SimClrAugment b = augment_for(image, other);
  for (uint64_t index = 0; index < 20; ++index) {
    const KeyedRng rng(4, 2, index, 1);
    EXPECT_EQ(view_of(a, image, rng), view_of(b, image, rng)) << "index " << index;
  }
}

TEST(AugmentTest, FlipAndGrayscaleFrequencies) {
  // Over 2000 seeded views, the fractions of flipped and of grayscale views are within 4 standard
  // deviations (about 0.04) of flip_prob and grayscale_prob.
  AugmentConfig config = identity_config();
  config.flip_prob = 0.3;
  config.grayscale_prob = 0.2;
  AugmentConfig grey_config = identity_config();
  grey_config.grayscale_prob = 1.0;
  const cv::Mat image = make_rgb_image(8, 8, 5);
  const SimClrAugment augment = augment_for(image, config);
  const auto mirrored = [](std::vector<float> planes) {  // [3, 8, 8], every row reversed
    for (size_t row = 0; row < 3 * 8; ++row) {
      std::reverse(planes.begin() + row * 8, planes.begin() + (row + 1) * 8);
    }
    return planes;
  };
  // The four possible outcomes: colour or grey, as is or mirrored.
  const std::vector<float> colour = plain_of(augment, image);
  const std::vector<float> grey =
      view_of(augment_for(image, grey_config), image, KeyedRng(0, 0, 0, 0));
  const std::vector<float> colour_flipped = mirrored(colour);
  const std::vector<float> grey_flipped = mirrored(grey);
  ASSERT_NE(colour, colour_flipped);
  ASSERT_NE(grey, grey_flipped);
  constexpr int kViews = 2000;
  int flipped = 0, greyed = 0;
  for (int v = 0; v < kViews; ++v) {
    const std::vector<float> out = view_of(augment, image, KeyedRng(11, 0, uint64_t(v), 0));
    const bool is_flipped = out == colour_flipped || out == grey_flipped;
    const bool is_grey = out == grey || out == grey_flipped;
    ASSERT_TRUE(is_flipped || is_grey || out == colour) << "view " << v;
    flipped += is_flipped;
    greyed += is_grey;
  }
  EXPECT_NEAR(double(flipped) / kViews, 0.3, 0.04);
  EXPECT_NEAR(double(greyed) / kViews, 0.2, 0.04);
}

TEST(AugmentTest, ColourStepsMatchTorchvision) {
  // Full colour jitter in a random order, grayscale and solarization with strong settings; the
  // factors and the order each view drew are handed to torchvision.transforms.functional.
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.8;
  config.contrast = 0.8;
  config.saturation = 0.9;
  config.hue = 0.5;
  config.grayscale_prob = 0.3;
  config.solarize_prob = 0.5;
  config.solarize_threshold = 0.6;
  config.mean = {0.0};
  config.std = {1.0};
  AugmentConfig blur = identity_config();
  blur.blur_prob = 1.0;
  blur.blur_sigma = {1.2, 1.2};
  blur.mean = {0.0};
  blur.std = {1.0};

  struct Case {
    cv::Mat image;
    AugmentConfig config;
    KeyedRng rng;
  };
  std::vector<Case> cases;
  for (uint64_t index = 0; index < 12; ++index) {
    cases.push_back({make_rgb_image(10, 10, index), config, KeyedRng(2, 0, index, 0)});
  }
  cases.push_back({make_image(10, 10), config, KeyedRng(2, 0, 0, 0)});       // grayscale input
  cases.push_back({make_rgb_image(40, 40, 7), blur, KeyedRng(2, 0, 0, 0)});  // kernel 5

  const char* names[] = {"brightness", "contrast", "saturation", "hue"};
  nlohmann::json json_cases = nlohmann::json::array();
  std::vector<std::vector<float>> ours;
  for (const Case& c : cases) {
    const Draws d = draws_of(c.rng, c.config);
    nlohmann::json steps = nlohmann::json::array();
    if (d.jitter) {
      const float factors[] = {d.brightness, d.contrast, d.saturation, d.hue};
      for (const int step : d.order) steps.push_back({names[step], double(factors[step])});
    }
    if (d.grayscale) steps.push_back({"grayscale"});
    if (d.blur) steps.push_back({"blur", c.image.rows == 40 ? 5 : 3, d.sigma});
    if (d.solarize) steps.push_back({"solarize", c.config.solarize_threshold});
    json_cases.push_back({{"image", chw_json(c.image)}, {"steps", steps}});
    ours.push_back(view_of(augment_for(c.image, c.config), c.image, c.rng));
  }
  std::string why;
  const std::optional<nlohmann::json> results = torchvision_results(json_cases, why);
  if (!results) GTEST_SKIP() << why;
  ASSERT_EQ(results->size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    std::vector<float> reference;  // [C][H][W] flattened in order
    for (const auto& plane : (*results)[k]) {
      for (const auto& row : plane) {
        for (const auto& value : row) reference.push_back(value.get<float>());
      }
    }
    ASSERT_EQ(reference.size(), ours[k].size());
    double worst = 0;
    for (size_t i = 0; i < reference.size(); ++i) {
      worst = std::max(worst, double(std::abs(reference[i] - ours[k][i])));
    }
    EXPECT_LT(worst, 1e-3) << "case " << k << ": " << json_cases[k]["steps"].dump();
  }
}

}  // namespace
}  // namespace selfsup
