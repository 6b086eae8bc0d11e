// Super-resolution: the low-resolution image against block means by loops, the bilinear upsampling
// against a hand-written bilinear interpolation (half-pixel centres), the encoder's input against
// both, PSNR in closed form, and learning.

#include "selfsup/objectives/superres.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kChannels = 3;

Config small_config(int factor) {
  Config config;
  config.pretext.task = "superres";
  config.pretext.superres.factor = factor;
  config.pretext.decoder_width = 16;
  config.model.encoder = "convnet";
  config.model.width = 8;
  config.augment.size = kSide;
  config.augment.mean = {0.5, 0.4, 0.3};
  config.augment.std = {0.25, 0.2, 0.3};
  config.seed = 12;
  return config;
}

// [B, C, H / f, W / f]: the mean of every f x f block, in float64, by loops.
torch::Tensor block_means(const torch::Tensor& images, int64_t f) {
  const auto x = images.to(torch::kDouble);
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2) / f, w = x.size(3) / f;
  auto out = torch::zeros({b, c, h, w}, torch::kDouble);
  auto in = x.accessor<double, 4>();
  auto o = out.accessor<double, 4>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          double sum = 0.0;
          for (int64_t dy = 0; dy < f; ++dy)
            for (int64_t dx = 0; dx < f; ++dx) sum += in[i][ch][y * f + dy][xx * f + dx];
          o[i][ch][y][xx] = sum / double(f * f);
        }
  return out;
}

// Bilinear resize with half-pixel centres, by loops in float64: output pixel d samples the input
// at s = (d + 0.5) * in / out - 0.5, clamped to [0, in - 1], from its two neighbours.
torch::Tensor hand_bilinear(const torch::Tensor& images, int64_t side) {
  const auto x = images.to(torch::kDouble);
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  struct Tap {
    int64_t lo, hi;
    double weight_hi;
  };
  auto taps = [side](int64_t in) {
    std::vector<Tap> out;
    for (int64_t d = 0; d < side; ++d) {
      const double s =
          std::clamp((double(d) + 0.5) * double(in) / double(side) - 0.5, 0.0, double(in - 1));
      const auto lo = int64_t(std::floor(s));
      out.push_back({lo, std::min(lo + 1, in - 1), s - double(lo)});
    }
    return out;
  };
  const auto rows = taps(h), cols = taps(w);
  auto out = torch::zeros({b, c, side, side}, torch::kDouble);
  auto in = x.accessor<double, 4>();
  auto o = out.accessor<double, 4>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < side; ++y)
        for (int64_t xx = 0; xx < side; ++xx) {
          const auto& r = rows[y];
          const auto& k = cols[xx];
          const double top =
              (1 - k.weight_hi) * in[i][ch][r.lo][k.lo] + k.weight_hi * in[i][ch][r.lo][k.hi];
          const double bottom =
              (1 - k.weight_hi) * in[i][ch][r.hi][k.lo] + k.weight_hi * in[i][ch][r.hi][k.hi];
          o[i][ch][y][xx] = (1 - r.weight_hi) * top + r.weight_hi * bottom;
        }
  return out;
}

TEST(SuperResolution, AreaDownsampleIsTheBlockMean) {
  torch::manual_seed(1);
  const auto images = torch::randn({2, kChannels, 8, 8});
  for (const int64_t factor : {2, 4}) {
    SCOPED_TRACE(factor);
    const auto low = area_downsample(images, factor);
    ASSERT_EQ(low.sizes(), (std::vector<int64_t>{2, kChannels, 8 / factor, 8 / factor}));
    EXPECT_TRUE(torch::allclose(low.to(torch::kDouble), block_means(images, factor), 1e-6, 1e-6));
  }
  // A known case: the 2 x 2 blocks of 0 .. 15 in a 4 x 4 grid.
  const auto grid = torch::arange(16, torch::kFloat).view({1, 1, 4, 4});
  EXPECT_TRUE(torch::equal(area_downsample(grid, 2),
                           torch::tensor({2.5f, 4.5f, 10.5f, 12.5f}).view({1, 1, 2, 2})));
}

TEST(SuperResolution, BilinearUpsampleMatchesAHandWrittenInterpolation) {
  torch::manual_seed(2);
  for (const int64_t low : {2, 3, 4, 8}) {
    const auto images = torch::randn({2, 2, low, low});
    for (const int64_t side : {2 * low, 4 * low, low + 1}) {
      SCOPED_TRACE(std::to_string(low) + " -> " + std::to_string(side));
      const auto up = bilinear_upsample(images, side);
      ASSERT_EQ(up.sizes(), (std::vector<int64_t>{2, 2, side, side}));
      EXPECT_TRUE(torch::allclose(up.to(torch::kDouble), hand_bilinear(images, side), 1e-5, 1e-6));
    }
  }
  // Known values: 2x upsampling of [0, 4] samples at -0.25 (clamped to 0), 0.25, 0.75, 1.25
  // (clamped to 1): 0, 1, 3, 4.
  const auto ramp = torch::tensor({0.0f, 4.0f}).view({1, 1, 1, 2}).expand({1, 1, 2, 2});
  EXPECT_TRUE(torch::allclose(bilinear_upsample(ramp.contiguous(), 4)[0][0][1],
                              torch::tensor({0.0f, 1.0f, 3.0f, 4.0f})));
}

TEST(SuperResolutionObjective, EncoderReadsTheBlurredView) {
  for (const int factor : {2, 4}) {
    SCOPED_TRACE(factor);
    SuperResolutionObjective objective(small_config(factor), {kChannels, kSide},
                                       std::make_shared<LocalCommunicator>());
    torch::manual_seed(3);
    ObjectiveInput input;
    input.views = torch::randn({1, 3, kChannels, kSide, kSide});
    input.keys = torch::arange(3, torch::kLong);
    const auto blurred = objective.encoder_input(input);
    // The same pipeline by loops: block means, then the hand-written bilinear.
    const auto expected = hand_bilinear(block_means(input.views[0], factor), kSide);
    EXPECT_TRUE(torch::allclose(blurred.to(torch::kDouble), expected, 1e-5, 1e-6));
    // Blurred: each block's mean survives the round trip only approximately, but a constant image
    // comes back exactly.
    input.views = torch::full({1, 2, kChannels, kSide, kSide}, 0.75f);
    input.keys = torch::arange(2, torch::kLong);
    EXPECT_TRUE(torch::allclose(objective.encoder_input(input), input.views[0]));
  }
}

TEST(SuperResolution, PsnrInPixelUnits) {
  torch::manual_seed(4);
  const auto target = torch::randn({2, kChannels, 4, 4});
  // An error of d normalised units in every pixel of channel c is d * std[c] in pixel units:
  // mse = mean_c (d_c std_c)^2, PSNR = -10 log10(mse).
  const auto error = torch::tensor({0.1f, 0.2f, 0.4f}).view({1, kChannels, 1, 1});
  const std::vector<double> pixel_std = {0.5, 0.25, 0.1};
  const double mse = (0.05 * 0.05 + 0.05 * 0.05 + 0.04 * 0.04) / 3.0;
  EXPECT_NEAR(psnr_db(target + error, target, pixel_std), -10.0 * std::log10(mse), 1e-4);
  // One std for all channels.
  const double mse_one = (0.01 + 0.04 + 0.16) / 3.0 * 0.09;
  EXPECT_NEAR(psnr_db(target + error, target, {0.3}), -10.0 * std::log10(mse_one), 1e-4);
  // Per sample, then the mean: errors 0.1 and 0.01 (std 1) give 20 and 40 dB.
  const auto per_sample = torch::tensor({0.1f, 0.01f}).view({2, 1, 1, 1});
  EXPECT_NEAR(psnr_db(target + per_sample, target, {1.0}), 30.0, 1e-3);
  // A perfect prediction is capped at 100 dB.
  EXPECT_NEAR(psnr_db(target, target, {1.0}), 100.0, 1e-9);
}

TEST(SuperResolutionObjective, LossLearnsOnAFixedBatch) {
  const auto config = small_config(2);
  const auto objective =
      make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
  ASSERT_NE(std::dynamic_pointer_cast<SuperResolutionObjective>(objective), nullptr);
  torch::manual_seed(5);
  ObjectiveInput input;
  input.views = torch::randn({1, 8, kChannels, kSide, kSide});
  input.keys = torch::arange(8, torch::kLong);
  const auto blurred =
      std::dynamic_pointer_cast<SuperResolutionObjective>(objective)->encoder_input(input);
  const double bilinear_mse = (blurred - input.views[0]).pow(2).mean().item<double>();
  torch::optim::Adam adam(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
  std::vector<double> losses, psnr;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    const auto out = objective->compute(input);
    EXPECT_DOUBLE_EQ(out.metrics.at("mse"), out.loss.item<double>());
    EXPECT_NEAR(out.metrics.at("bilinear_mse"), bilinear_mse, 1e-9);
    EXPECT_NEAR(out.metrics.at("bilinear_psnr"),
                psnr_db(blurred, input.views[0], config.augment.std), 1e-9);
    out.loss.backward();
    adam.step();
    losses.push_back(out.loss.item<double>());
    psnr.push_back(out.metrics.at("psnr"));
  }
  std::printf("superres losses: first %.4f, last %.4f; psnr %.2f -> %.2f dB\n", losses.front(),
              losses.back(), psnr.front(), psnr.back());
  // Random images and a tiny model: the loss falls by a third or more in these steps (measured
  // 0.49-0.57 of the first), against none without learning.
  EXPECT_LT(losses.back(), 0.67 * losses.front());
  EXPECT_GT(psnr.back(), psnr.front() + 1.5);  // measured +2.5 dB
}

}  // namespace
}  // namespace selfsup
