// DeviceAugment: shapes, determinism by key, independence from the batch, each step against a
// closed form or a second implementation (per-pixel loops, OpenCV), and the distribution of its
// views against the CPU path (SimClrAugment).

#include "selfsup/data/device_augment.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/augment.h"

namespace selfsup {
namespace {

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
  config.mean = {0.0};
  config.std = {1.0};
  return config;
}

// [B, C, H, W] uint8 noise, fixed by `seed`.
torch::Tensor random_images(int64_t batch, int64_t channels, int64_t height, int64_t width,
                            uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {batch, channels, height, width}, torch::kUInt8);
}

// [B] int64 indices first, first + 1, ...
torch::Tensor index_range(int64_t first, int64_t count) {
  return torch::arange(first, first + count, torch::kInt64);
}

torch::Tensor unit(const torch::Tensor& images) { return images.to(torch::kFloat32) / 255.0; }

DeviceViewParams params_of(const AugmentConfig& config, const torch::Tensor& images, uint64_t seed,
                           int64_t epoch, int64_t index, int64_t stream) {
  KeyedRng rng(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index),
               static_cast<uint64_t>(stream));
  return draw_device_view_params(config, config.crop_scale, static_cast<int>(images.size(2)),
                                 static_cast<int>(images.size(3)), rng);
}

TEST(DeviceAugmentTest, ShapesAndDtype) {
  AugmentConfig config;
  config.views = 2;
  config.size = 16;
  config.local_views = 3;
  config.blur_prob = 0.5;
  config.solarize_prob = 0.2;
  config.mean = {0.5, 0.4, 0.3};
  config.std = {0.2, 0.2, 0.2};
  const DeviceAugment augment(config, 3);
  const torch::Tensor images = random_images(4, 3, 20, 24, 1);
  const DeviceViews views = augment.forward(images, 7, 0, index_range(0, 4));
  EXPECT_EQ(views.global.sizes(), (std::vector<int64_t>{2, 4, 3, 16, 16}));
  EXPECT_EQ(views.global.scalar_type(), torch::kFloat32);
  // local_size 0: round(16 * 3 / 7) = 7.
  EXPECT_EQ(views.local.sizes(), (std::vector<int64_t>{3, 4, 3, 7, 7}));
  EXPECT_EQ(views.local.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(views.global).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(views.local).all().item<bool>());
  // Every normalised value comes from a pixel in [0, 1].
  for (int c = 0; c < 3; ++c) {
    const torch::Tensor channel = views.global.select(2, c);
    const double lo = (0.0 - config.mean[c]) / config.std[c];
    const double hi = (1.0 - config.mean[c]) / config.std[c];
    EXPECT_GE(channel.min().item<double>(), lo - 1e-4);
    EXPECT_LE(channel.max().item<double>(), hi + 1e-4);
  }

  config.local_views = 0;
  config.size = 0;  // the input's size
  config.mean = {0.5};
  config.std = {0.25};
  const DeviceViews no_local = DeviceAugment(config, 3).forward(images, 7, 0, index_range(0, 4));
  EXPECT_EQ(no_local.global.sizes(), (std::vector<int64_t>{2, 4, 3, 20, 24}));
  EXPECT_FALSE(no_local.local.defined());

  const DeviceViews empty =
      DeviceAugment(config, 3).forward(images.narrow(0, 0, 0), 7, 0, index_range(0, 0));
  EXPECT_EQ(empty.global.sizes(), (std::vector<int64_t>{2, 0, 3, 20, 24}));
}

TEST(DeviceAugmentTest, RejectsBadInput) {
  const AugmentConfig config;
  EXPECT_THROW(DeviceAugment(config, 2), Error);
  AugmentConfig rgb_mean = config;
  rgb_mean.mean = {0.1, 0.2};
  EXPECT_THROW(DeviceAugment(rgb_mean, 3), Error);
  const DeviceAugment augment(config, 1);
  const torch::Tensor images = random_images(2, 1, 8, 8, 2);
  EXPECT_THROW(augment.forward(images.to(torch::kFloat32), 0, 0, index_range(0, 2)), Error);
  EXPECT_THROW(augment.forward(images, 0, 0, index_range(0, 3)), Error);
  EXPECT_THROW(augment.forward(random_images(2, 3, 8, 8, 2), 0, 0, index_range(0, 2)), Error);
}

AugmentConfig full_recipe() {
  AugmentConfig config;
  config.views = 2;
  config.local_views = 2;
  config.size = 16;
  config.blur_prob = 0.5;
  config.solarize_prob = 0.2;
  config.mean = {0.5};
  config.std = {0.25};
  return config;
}

TEST(DeviceAugmentTest, SameKeySameViews) {
  const DeviceAugment augment(full_recipe(), 3);
  const torch::Tensor images = random_images(6, 3, 24, 24, 3);
  const DeviceViews a = augment.forward(images, 11, 4, index_range(100, 6));
  const DeviceViews b = augment.forward(images, 11, 4, index_range(100, 6));
  EXPECT_TRUE(torch::equal(a.global, b.global));
  EXPECT_TRUE(torch::equal(a.local, b.local));
  // Another seed, epoch or index gives other views; the two global views of an image differ.
  EXPECT_FALSE(torch::equal(a.global, augment.forward(images, 12, 4, index_range(100, 6)).global));
  EXPECT_FALSE(torch::equal(a.global, augment.forward(images, 11, 5, index_range(100, 6)).global));
  EXPECT_FALSE(torch::equal(a.global, augment.forward(images, 11, 4, index_range(101, 6)).global));
  EXPECT_FALSE(torch::equal(a.global[0], a.global[1]));
}

TEST(DeviceAugmentTest, ViewsDoNotDependOnTheBatch) {
  const DeviceAugment augment(full_recipe(), 3);
  const torch::Tensor images = random_images(5, 3, 24, 24, 4);
  const torch::Tensor indices = torch::tensor({40, 7, 12, 99, 3}, torch::kInt64);
  const DeviceViews batch = augment.forward(images, 5, 2, indices);
  // Each image alone, and the batch reversed: the same views (up to the batched reductions).
  const torch::Tensor reversed_order = torch::arange(4, -1, -1, torch::kInt64);
  const DeviceViews reversed = augment.forward(images.index_select(0, reversed_order), 5, 2,
                                               indices.index_select(0, reversed_order));
  for (int64_t i = 0; i < 5; ++i) {
    const DeviceViews alone =
        augment.forward(images.narrow(0, i, 1), 5, 2, indices.narrow(0, i, 1));
    EXPECT_TRUE(torch::allclose(alone.global.select(1, 0), batch.global.select(1, i), 1e-5, 1e-5))
        << "image " << i;
    EXPECT_TRUE(torch::allclose(alone.local.select(1, 0), batch.local.select(1, i), 1e-5, 1e-5))
        << "image " << i;
    EXPECT_TRUE(
        torch::allclose(reversed.global.select(1, 4 - i), batch.global.select(1, i), 1e-5, 1e-5))
        << "image " << i;
  }
}

TEST(DeviceAugmentTest, NothingRandomIsPlainResizeAndNormalise) {
  AugmentConfig config = identity_config();
  config.mean = {0.2, 0.3, 0.4};
  config.std = {0.5, 0.6, 0.7};
  const torch::Tensor images = random_images(3, 3, 12, 12, 5);
  const torch::Tensor mean = torch::tensor({0.2f, 0.3f, 0.4f}).view({1, 3, 1, 1});
  const torch::Tensor std = torch::tensor({0.5f, 0.6f, 0.7f}).view({1, 3, 1, 1});
  // Same size: the normalised pixels exactly.
  const DeviceViews same = DeviceAugment(config, 3).forward(images, 1, 0, index_range(0, 3));
  const torch::Tensor expected = (unit(images) - mean) / std;
  for (int v = 0; v < 2; ++v) EXPECT_TRUE(torch::allclose(same.global[v], expected, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(DeviceAugment(config, 3).plain(images), expected, 1e-4, 1e-4));

  // Another size: bilinear resampling with half-pixel centres (torch's interpolate, no
  // antialiasing), up and down.
  for (const int size : {7, 20}) {
    config.size = size;
    const DeviceAugment augment(config, 3);
    const torch::Tensor resized = torch::nn::functional::interpolate(
        unit(images), torch::nn::functional::InterpolateFuncOptions()
                          .size(std::vector<int64_t>{size, size})
                          .mode(torch::kBilinear)
                          .align_corners(false));
    const torch::Tensor expected_resized = (resized - mean) / std;
    const DeviceViews views = augment.forward(images, 1, 0, index_range(0, 3));
    EXPECT_TRUE(torch::allclose(views.global[0], expected_resized, 1e-4, 1e-4)) << size;
    EXPECT_TRUE(torch::allclose(augment.plain(images), expected_resized, 1e-4, 1e-4)) << size;
  }
}

TEST(DeviceAugmentTest, CropIsTheDrawnBoxResized) {
  AugmentConfig config = identity_config();
  config.crop_scale = {0.2, 0.6};
  config.crop_ratio = {0.75, 4.0 / 3.0};
  const torch::Tensor images = random_images(4, 3, 20, 20, 6);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 3, 1, index_range(10, 4));
  for (int64_t b = 0; b < 4; ++b) {
    for (int v = 0; v < 2; ++v) {
      const DeviceViewParams p = params_of(config, images, 3, 1, 10 + b, v);
      EXPECT_LT(p.width * p.height, 20 * 20 * 0.6 + 20);
      EXPECT_GT(p.width * p.height, 20 * 20 * 0.2 - 20);
      // The box cropped, then resized (bilinear, half-pixel centres) to 20x20.
      const torch::Tensor box =
          unit(images[b]).narrow(1, p.top, p.height).narrow(2, p.left, p.width).unsqueeze(0);
      const torch::Tensor expected =
          torch::nn::functional::interpolate(box, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{20, 20})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false));
      EXPECT_TRUE(torch::allclose(views.global[v][b], expected[0], 1e-4, 1e-4))
          << "image " << b << " view " << v;
    }
  }
}

TEST(DeviceAugmentTest, FlipMirrors) {
  AugmentConfig config = identity_config();
  config.flip_prob = 1.0;
  config.crop_ratio = {13.0 / 9.0, 13.0 / 9.0};  // the whole 9 x 13 image
  const torch::Tensor images = random_images(3, 3, 9, 13, 7);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 1, 0, index_range(0, 3));
  for (int v = 0; v < 2; ++v)
    EXPECT_TRUE(torch::allclose(views.global[v], unit(images).flip({3}), 1e-4, 1e-4));
}

TEST(DeviceAugmentTest, SolarizeInvertsAboveThreshold) {
  AugmentConfig config = identity_config();
  config.solarize_prob = 1.0;
  config.solarize_threshold = 0.5;
  const torch::Tensor images = random_images(3, 3, 8, 8, 8);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 1, 0, index_range(0, 3));
  const torch::Tensor x = unit(images);
  const torch::Tensor expected = torch::where(x >= 0.5, 1 - x, x);
  EXPECT_TRUE(torch::allclose(views.global[0], expected, 1e-5, 1e-5));
}

TEST(DeviceAugmentTest, GrayscaleIsLumaOnEveryChannel) {
  AugmentConfig config = identity_config();
  config.grayscale_prob = 1.0;
  const torch::Tensor images = random_images(2, 3, 6, 6, 9);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 1, 0, index_range(0, 2));
  const torch::Tensor x = unit(images);
  const torch::Tensor luma =
      0.2989 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2);
  for (int c = 0; c < 3; ++c)
    EXPECT_TRUE(torch::allclose(views.global[0].select(1, c), luma, 1e-5, 1e-5));
}

// Brightness alone: each view is its pixels times its own drawn factor, clamped.
TEST(DeviceAugmentTest, BrightnessUsesTheDrawnFactor) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.4;
  config.contrast = 0.0;
  config.saturation = 0.0;
  config.hue = 0.0;
  const torch::Tensor images = random_images(6, 1, 8, 8, 10);
  const DeviceViews views = DeviceAugment(config, 1).forward(images, 2, 3, index_range(0, 6));
  for (int64_t b = 0; b < 6; ++b) {
    const DeviceViewParams p = params_of(config, images, 2, 3, b, 0);
    EXPECT_TRUE(p.jitter);
    const torch::Tensor expected = (unit(images[b]) * p.brightness).clamp(0, 1);
    EXPECT_TRUE(torch::allclose(views.global[0][b], expected, 1e-5, 1e-5)) << p.brightness;
  }
  // A zero-width range (brightness 0): the exact image.
  config.brightness = 0.0;
  const DeviceViews unchanged = DeviceAugment(config, 1).forward(images, 2, 3, index_range(0, 6));
  EXPECT_TRUE(torch::allclose(unchanged.global[0], unit(images), 1e-6, 1e-6));
}

// Per-pixel references in double precision for the colour jitter.
struct Rgb {
  double r, g, b;
};

double luma_of(const Rgb& c) { return 0.2989 * c.r + 0.587 * c.g + 0.114 * c.b; }

Rgb shift_hue_reference(const Rgb& c, double shift) {
  const double max = std::max({c.r, c.g, c.b});
  const double min = std::min({c.r, c.g, c.b});
  const double chroma = max - min;
  const double saturation = max > 0 ? chroma / max : 0.0;
  double hue = 0.0;
  if (chroma > 0) {
    if (max == c.r) {
      hue = (c.g - c.b) / chroma;
    } else if (max == c.g) {
      hue = 2.0 + (c.b - c.r) / chroma;
    } else {
      hue = 4.0 + (c.r - c.g) / chroma;
    }
  }
  hue = hue / 6.0 + shift;
  hue -= std::floor(hue);
  const double sector = std::floor(hue * 6.0);
  const double f = hue * 6.0 - sector;
  const double v = max;
  const double p = v * (1 - saturation);
  const double q = v * (1 - saturation * f);
  const double t = v * (1 - saturation * (1 - f));
  switch (static_cast<int>(sector) % 6) {
    case 0:
      return {v, t, p};
    case 1:
      return {q, v, p};
    case 2:
      return {p, v, t};
    case 3:
      return {p, q, v};
    case 4:
      return {t, p, v};
    default:
      return {v, p, q};
  }
}

// One image [3, H, W] jittered with the view's factors in the view's order, pixel by pixel.
torch::Tensor jitter_reference(const torch::Tensor& image, const DeviceViewParams& p) {
  const int64_t height = image.size(1), width = image.size(2);
  std::vector<Rgb> pixels;
  const torch::Tensor x = image.to(torch::kFloat64).contiguous();
  const auto a = x.accessor<double, 3>();
  for (int64_t y = 0; y < height; ++y)
    for (int64_t i = 0; i < width; ++i) pixels.push_back({a[0][y][i], a[1][y][i], a[2][y][i]});
  const auto clamp = [](double v) { return std::min(1.0, std::max(0.0, v)); };
  const auto blend = [&](Rgb c, double other, double f) {
    return Rgb{clamp(f * c.r + (1 - f) * other), clamp(f * c.g + (1 - f) * other),
               clamp(f * c.b + (1 - f) * other)};
  };
  for (const int step : p.order) {
    if (step == 0) {
      for (Rgb& c : pixels) c = blend(c, 0.0, p.brightness);
    } else if (step == 1) {
      double mean = 0;
      for (const Rgb& c : pixels) mean += luma_of(c);
      mean /= static_cast<double>(pixels.size());
      for (Rgb& c : pixels) c = blend(c, mean, p.contrast);
    } else if (step == 2) {
      for (Rgb& c : pixels) c = blend(c, luma_of(c), p.saturation);
    } else {
      for (Rgb& c : pixels) c = shift_hue_reference(c, p.hue);
    }
  }
  torch::Tensor out = torch::empty({3, height, width}, torch::kFloat64);
  auto o = out.accessor<double, 3>();
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t i = 0; i < width; ++i) {
      const Rgb& c = pixels[static_cast<size_t>(y * width + i)];
      o[0][y][i] = c.r;
      o[1][y][i] = c.g;
      o[2][y][i] = c.b;
    }
  }
  return out.to(torch::kFloat32);
}

// The four jitter steps, with per-view factors and per-view orders, against the per-pixel
// reference; 24 views cover many of the 24 orders.
TEST(DeviceAugmentTest, ColourJitterMatchesPerPixelReference) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.4;
  config.contrast = 0.4;
  config.saturation = 0.4;
  config.hue = 0.1;
  const int64_t batch = 12;
  const torch::Tensor images = random_images(batch, 3, 6, 6, 11);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 4, 0, index_range(0, batch));
  int orders_seen = 0;
  std::vector<std::array<int, 4>> orders;
  for (int64_t b = 0; b < batch; ++b) {
    for (int v = 0; v < 2; ++v) {
      const DeviceViewParams p = params_of(config, images, 4, 0, b, v);
      if (std::find(orders.begin(), orders.end(), p.order) == orders.end()) {
        orders.push_back(p.order);
        ++orders_seen;
      }
      const torch::Tensor expected = jitter_reference(unit(images[b]), p);
      const double error = (views.global[v][b] - expected).abs().max().item<double>();
      EXPECT_LT(error, 1e-4) << "image " << b << " view " << v;
    }
  }
  EXPECT_GE(orders_seen, 8);
}

TEST(DeviceAugmentTest, HueShiftOfPureColours) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.0;
  config.contrast = 0.0;
  config.saturation = 0.0;
  config.hue = 0.5;
  // Pure red, and a grey that no hue shift changes.
  torch::Tensor images = torch::zeros({2, 3, 2, 2}, torch::kUInt8);
  images[0][0].fill_(255);
  images[1].fill_(128);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 9, 0, index_range(0, 2));
  const DeviceViewParams p = params_of(config, images, 9, 0, 0, 0);
  const Rgb expected = shift_hue_reference({1, 0, 0}, p.hue);
  EXPECT_NEAR(views.global[0][0][0][0][0].item<double>(), expected.r, 1e-5);
  EXPECT_NEAR(views.global[0][0][1][0][0].item<double>(), expected.g, 1e-5);
  EXPECT_NEAR(views.global[0][0][2][0][0].item<double>(), expected.b, 1e-5);
  EXPECT_TRUE(torch::allclose(views.global[0][1], unit(images[1]), 1e-6, 1e-6));
}

TEST(DeviceAugmentTest, GrayscaleImagesSkipColourSteps) {
  AugmentConfig config = identity_config();
  config.jitter_prob = 1.0;
  config.brightness = 0.0;
  config.contrast = 0.0;
  config.saturation = 0.4;
  config.hue = 0.5;
  config.grayscale_prob = 1.0;
  const torch::Tensor images = random_images(3, 1, 8, 8, 12);
  const DeviceViews views = DeviceAugment(config, 1).forward(images, 1, 0, index_range(0, 3));
  EXPECT_TRUE(torch::allclose(views.global[0], unit(images), 1e-6, 1e-6));
}

TEST(DeviceAugmentTest, BlurMatchesOpenCv) {
  AugmentConfig config = identity_config();
  config.blur_prob = 1.0;
  config.blur_sigma = {1.5, 1.5};
  for (const int side : {32, 64}) {  // kernels 3 and 7 (about 10 % of the side, odd)
    const torch::Tensor images = random_images(2, 1, side, side, 13);
    const DeviceViews views = DeviceAugment(config, 1).forward(images, 1, 0, index_range(0, 2));
    for (int64_t b = 0; b < 2; ++b) {
      const torch::Tensor pixels = unit(images[b][0]).contiguous();
      const cv::Mat mat(side, side, CV_32F, pixels.data_ptr<float>());
      cv::Mat blurred;
      const int kernel = side == 32 ? 3 : 7;
      cv::GaussianBlur(mat, blurred, cv::Size(kernel, kernel), 1.5, 1.5, cv::BORDER_REFLECT_101);
      const torch::Tensor expected = torch::from_blob(blurred.data, {side, side}, torch::kFloat32);
      EXPECT_TRUE(torch::allclose(views.global[0][b][0], expected, 1e-5, 1e-5)) << side;
    }
  }
}

TEST(DeviceAugmentTest, LocalViewsUseTheLocalScale) {
  AugmentConfig config = identity_config();
  config.crop_ratio = {0.75, 4.0 / 3.0};
  config.local_views = 4;
  config.local_crop_scale = {0.05, 0.4};
  config.local_size = 6;
  const torch::Tensor images = random_images(8, 3, 20, 20, 14);
  const DeviceViews views = DeviceAugment(config, 3).forward(images, 5, 0, index_range(0, 8));
  ASSERT_EQ(views.local.sizes(), (std::vector<int64_t>{4, 8, 3, 6, 6}));
  for (int64_t b = 0; b < 8; ++b) {
    for (int l = 0; l < 4; ++l) {
      // Local view l is keyed by stream V + l and drawn with local_crop_scale.
      KeyedRng rng(5, 0, static_cast<uint64_t>(b), static_cast<uint64_t>(config.views + l));
      const DeviceViewParams p =
          draw_device_view_params(config, config.local_crop_scale, 20, 20, rng);
      EXPECT_LE(p.width * p.height, 20 * 20 * 0.4 + 20);
      const torch::Tensor box =
          unit(images[b]).narrow(1, p.top, p.height).narrow(2, p.left, p.width).unsqueeze(0);
      const torch::Tensor expected =
          torch::nn::functional::interpolate(box, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{6, 6})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false));
      EXPECT_TRUE(torch::allclose(views.local[l][b], expected[0], 1e-4, 1e-4));
    }
  }
}

// ---- Distribution against the CPU path -------------------------------------------------------

// Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs.
double ks_statistic(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  size_t i = 0, j = 0;
  double gap = 0.0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    gap = std::max(gap, std::abs(double(i) / a.size() - double(j) / b.size()));
  }
  return gap;
}

// The KS statistic's critical value at significance 0.001 (c = 1.95) for samples of n and m.
double ks_threshold(size_t n, size_t m) {
  return 1.95 * std::sqrt(double(n + m) / (double(n) * double(m)));
}

// Views of one grayscale [H, W] uint8 image, as [count, H, W] un-normalised pixels: view v of key
// k is row k * views + v. The CPU path: SimClrAugment with KeyedRng(seed, 0, k, v), output size =
// input size (square images).
torch::Tensor cpu_views(const AugmentConfig& config, const torch::Tensor& image, int64_t keys,
                        uint64_t seed) {
  const int64_t height = image.size(0), width = image.size(1);
  const torch::Tensor contiguous = image.contiguous();
  const cv::Mat mat(static_cast<int>(height), static_cast<int>(width), CV_8UC1,
                    contiguous.data_ptr<uint8_t>());
  const SimClrAugment augment(config, /*channels=*/1, /*image_side=*/static_cast<int>(height));
  torch::Tensor out = torch::empty({keys * config.views, height, width}, torch::kFloat32);
  for (int64_t k = 0; k < keys; ++k) {
    for (int v = 0; v < config.views; ++v) {
      KeyedRng rng(seed, 0, static_cast<uint64_t>(k), static_cast<uint64_t>(v));
      augment.view(mat, rng, ViewKind::kGlobal, out[k * config.views + v].data_ptr<float>());
    }
  }
  return out * config.std[0] + config.mean[0];
}

// The same from DeviceAugment (keys 0 .. keys-1, one batch).
torch::Tensor device_views(const AugmentConfig& config, const torch::Tensor& image, int64_t keys,
                           uint64_t seed) {
  const torch::Tensor images = image.view({1, 1, image.size(0), image.size(1)})
                                   .expand({keys, 1, image.size(0), image.size(1)})
                                   .contiguous();
  const DeviceViews views = DeviceAugment(config, 1).forward(images, seed, 0, index_range(0, keys));
  // [V, K, 1, H, W] -> [K * V, H, W], row k * V + v.
  return views.global.squeeze(2).transpose(0, 1).reshape({-1, image.size(0), image.size(1)}) *
             config.std[0] +
         config.mean[0];
}

std::vector<double> to_vector(const torch::Tensor& x) {
  const torch::Tensor c = x.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Ramps along x and along y (0 .. 255): a view's range of values measures its crop box's width
// (height), and the sign of its left-to-right slope tells whether it was flipped.
torch::Tensor ramp(int64_t side, bool along_x) {
  torch::Tensor r = torch::round(torch::linspace(0, 255, side)).to(torch::kUInt8);
  return along_x ? r.view({1, side}).expand({side, side}).contiguous()
                 : r.view({side, 1}).expand({side, side}).contiguous();
}

struct Geometry {
  std::vector<double> area;   // crop area fraction
  std::vector<double> ratio;  // crop aspect ratio, w / h
  double flipped = 0;         // fraction of flipped views
};

// x_views, y_views: [N, H, W] views of the x and y ramps drawn with the same keys.
Geometry geometry_of(const torch::Tensor& x_views, const torch::Tensor& y_views) {
  const int64_t side = x_views.size(1);
  const auto extent = [side](const torch::Tensor& views) {  // [N] box side in pixels, estimated
    const torch::Tensor flat = views.flatten(1);
    return (std::get<0>(flat.max(1)) - std::get<0>(flat.min(1))) * (side - 1) / 255.0 + 1;
  };
  const torch::Tensor w = extent(x_views), h = extent(y_views);
  Geometry g;
  g.area = to_vector(w * h / double(side * side));
  g.ratio = to_vector(w / h);
  const torch::Tensor slope = x_views.select(2, side - 1).mean(1) - x_views.select(2, 0).mean(1);
  g.flipped = (slope < 0).to(torch::kFloat64).mean().item<double>();
  return g;
}

TEST(DeviceAugmentTest, SameDistributionAsCpuPath) {
  const int64_t side = 28, keys = 1000;  // 2 000 views per path and statistic
  const uint64_t cpu_seed = 1, device_seed = 2;

  // 1. Geometry: crop and flip only, on the two ramps with the same keys.
  AugmentConfig geometry_config = identity_config();
  geometry_config.crop_scale = {0.2, 1.0};
  geometry_config.crop_ratio = {0.75, 4.0 / 3.0};
  geometry_config.flip_prob = 0.5;
  const Geometry cpu = geometry_of(cpu_views(geometry_config, ramp(side, true), keys, cpu_seed),
                                   cpu_views(geometry_config, ramp(side, false), keys, cpu_seed));
  const Geometry device =
      geometry_of(device_views(geometry_config, ramp(side, true), keys, device_seed),
                  device_views(geometry_config, ramp(side, false), keys, device_seed));
  const size_t n = cpu.area.size();
  EXPECT_LT(ks_statistic(cpu.area, device.area), ks_threshold(n, n));
  EXPECT_LT(ks_statistic(cpu.ratio, device.ratio), ks_threshold(n, n));
  // Fractions: within 4 standard errors of their difference (p = 0.5).
  EXPECT_LT(std::abs(cpu.flipped - device.flipped), 4 * std::sqrt(2 * 0.25 / n));
  EXPECT_NEAR(device.flipped, 0.5, 4 * std::sqrt(0.25 / n));

  // 2. Appearance: the whole recipe that the CPU path knows on a textured image: the mean, the
  // contrast and the sharpness of each view.
  AugmentConfig recipe;
  recipe.blur_prob = 0.5;
  torch::Tensor texture = torch::empty({side, side}, torch::kUInt8);
  for (int64_t y = 0; y < side; ++y)
    for (int64_t x = 0; x < side; ++x) texture[y][x] = (37 * y + 11 * x * x) % 256 / 2 + 40;
  const auto appearance = [&](const torch::Tensor& views) {
    const torch::Tensor flat = views.flatten(1);
    const torch::Tensor sharpness =
        (views.narrow(2, 1, side - 1) - views.narrow(2, 0, side - 1)).abs().flatten(1).mean(1);
    return std::array<std::vector<double>, 3>{to_vector(flat.mean(1)), to_vector(flat.std(1)),
                                              to_vector(sharpness)};
  };
  const auto cpu_stats = appearance(cpu_views(recipe, texture, keys, cpu_seed));
  const auto device_stats = appearance(device_views(recipe, texture, keys, device_seed));
  const char* names[3] = {"mean", "std", "sharpness"};
  for (int s = 0; s < 3; ++s) {
    EXPECT_LT(ks_statistic(cpu_stats[s], device_stats[s]), ks_threshold(n, n)) << names[s];
  }

  // 3. The test can tell distributions apart: without jitter the contrast's distribution moves,
  // without blur the sharpness'.
  AugmentConfig no_jitter = recipe;
  no_jitter.jitter_prob = 0.0;
  const auto without_jitter = appearance(device_views(no_jitter, texture, keys, device_seed));
  EXPECT_GT(ks_statistic(cpu_stats[1], without_jitter[1]), ks_threshold(n, n));
  AugmentConfig no_blur = recipe;
  no_blur.blur_prob = 0.0;
  const auto without_blur = appearance(device_views(no_blur, texture, keys, device_seed));
  EXPECT_GT(ks_statistic(cpu_stats[2], without_blur[2]), ks_threshold(n, n));
}

TEST(DeviceAugmentTest, CudaMatchesCpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const DeviceAugment augment(full_recipe(), 3);
  const torch::Tensor images = random_images(8, 3, 24, 24, 15);
  const DeviceViews cpu = augment.forward(images, 3, 1, index_range(0, 8));
  const DeviceViews cuda =
      augment.forward(images.to(torch::kCUDA), 3, 1, index_range(0, 8).to(torch::kCUDA));
  EXPECT_TRUE(cuda.global.is_cuda());
  EXPECT_TRUE(torch::allclose(cuda.global.cpu(), cpu.global, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(cuda.local.cpu(), cpu.local, 1e-4, 1e-4));
}

}  // namespace
}  // namespace selfsup
