// In-painting: the holes (exact place when centred, inside the view and keyed only by the sample
// when random), the encoder's input (zero exactly in the hole, untouched elsewhere), the masked
// loss against a naive per-pixel formula and its gradient (none outside the hole), and learning.

#include "selfsup/objectives/inpainting.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kChannels = 3;

Config small_config(const std::string& mask, double size) {
  Config config;
  config.pretext.task = "inpainting";
  config.pretext.inpainting.mask = mask;
  config.pretext.inpainting.size = size;
  config.pretext.decoder_width = 16;
  config.model.encoder = "convnet";
  config.model.width = 8;
  config.augment.size = kSide;
  config.seed = 11;
  return config;
}

// [B, 1, side, side]: 1 where top <= y < top + hole and left <= x < left + hole, by loops.
torch::Tensor square(const std::vector<std::pair<int64_t, int64_t>>& corners, int64_t hole,
                     int64_t side) {
  auto mask = torch::zeros({int64_t(corners.size()), 1, side, side});
  auto a = mask.accessor<float, 4>();
  for (size_t i = 0; i < corners.size(); ++i)
    for (int64_t y = corners[i].first; y < corners[i].first + hole; ++y)
      for (int64_t x = corners[i].second; x < corners[i].second + hole; ++x) a[i][0][y][x] = 1.0f;
  return mask;
}

// The (top, left) corner of a mask [1, side, side] holding one square: its first set pixel.
std::pair<int64_t, int64_t> corner_of(const torch::Tensor& mask) {
  const auto set = mask[0].nonzero();  // [n, 2], row-major order
  return {set[0][0].item<int64_t>(), set[0][1].item<int64_t>()};
}

TEST(InpaintingMask, CenterHoleHasExactCoordinates) {
  const auto keys = torch::arange(3, torch::kLong);
  InpaintingConfig center;
  // 16 px, size 0.5: an 8 px hole from (4, 4) to (11, 11).
  center.size = 0.5;
  EXPECT_EQ(inpainting_hole_side(center, 16), 8);
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 16, 0, 0),
                           square({{4, 4}, {4, 4}, {4, 4}}, 8, 16)));
  // 15 px, size 0.3: round(4.5) = 5 px, from ((15 - 5) / 2 = 5, 5); 13 px, size 0.5: round(6.5) =
  // 7 px from (3, 3).
  center.size = 0.3;
  EXPECT_EQ(inpainting_hole_side(center, 15), 5);
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 15, 0, 0),
                           square({{5, 5}, {5, 5}, {5, 5}}, 5, 15)));
  center.size = 0.5;
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 13, 0, 0),
                           square({{3, 3}, {3, 3}, {3, 3}}, 7, 13)));
}

TEST(InpaintingMask, RandomHoleLiesInsideAndDependsOnlyOnTheKey) {
  InpaintingConfig random;
  random.mask = "random";
  random.size = 0.25;  // 4 px of 16: corners 0 .. 12
  const int64_t hole = 4, last = kSide - hole;
  const auto keys = torch::arange(100, 300, torch::kLong);
  const auto masks = inpainting_mask(keys, random, kSide, /*seed=*/5, /*epoch=*/2);
  ASSERT_EQ(masks.sizes(), (std::vector<int64_t>{200, 1, kSide, kSide}));
  std::vector<std::pair<int64_t, int64_t>> corners;
  int64_t lowest = kSide, highest = -1;
  for (int64_t i = 0; i < keys.numel(); ++i) {
    corners.push_back(corner_of(masks[i]));
    for (const int64_t c : {corners.back().first, corners.back().second}) {
      lowest = std::min(lowest, c);
      highest = std::max(highest, c);
    }
  }
  // Each mask is exactly one hole x hole square inside the view (square() would write out of
  // bounds otherwise: checked first), and the corners reach both ends of their range.
  EXPECT_GE(lowest, 0);
  EXPECT_LE(highest, last);
  ASSERT_TRUE(lowest >= 0 && highest <= last);
  EXPECT_TRUE(torch::equal(masks, square(corners, hole, kSide)));
  EXPECT_EQ(lowest, 0);
  EXPECT_EQ(highest, last);

  // The same keys in another order, in a smaller batch: the same holes.
  const auto some = torch::tensor({250, 100, 171}, torch::kLong);
  const auto again = inpainting_mask(some, random, kSide, 5, 2);
  for (int64_t i = 0; i < some.numel(); ++i)
    EXPECT_TRUE(torch::equal(again[i], masks[some[i].item<int64_t>() - 100]));
  // Another epoch or seed moves them.
  EXPECT_FALSE(torch::equal(inpainting_mask(keys, random, kSide, 5, 3), masks));
  EXPECT_FALSE(torch::equal(inpainting_mask(keys, random, kSide, 6, 2), masks));
}

TEST(InpaintingObjective, EncoderInputIsZeroExactlyInTheHole) {
  for (const std::string mask : {"center", "random"}) {
    SCOPED_TRACE(mask);
    const auto config = small_config(mask, 0.375);  // 6 px holes
    InpaintingObjective objective(config, {kChannels, kSide},
                                  std::make_shared<LocalCommunicator>());
    torch::manual_seed(3);
    ObjectiveInput input;
    input.views = torch::randn({1, 4, kChannels, kSide, kSide}) + 3.0;  // no zero pixels
    input.keys = torch::tensor({7, 1, 30, 12}, torch::kLong);
    input.epoch = 4;
    const auto batch = objective.prepare(input);
    EXPECT_TRUE(torch::equal(batch.mask, inpainting_mask(input.keys, config.pretext.inpainting,
                                                         kSide, config.seed, input.epoch)));
    EXPECT_TRUE(torch::equal(batch.target, input.views[0]));
    // Per pixel, by loops: 0 in all channels in the hole, the view's value elsewhere.
    auto m = batch.mask.accessor<float, 4>();
    auto v = input.views.accessor<float, 5>();
    auto c = batch.context.accessor<float, 4>();
    int64_t zeros = 0;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t ch = 0; ch < kChannels; ++ch)
        for (int64_t y = 0; y < kSide; ++y)
          for (int64_t x = 0; x < kSide; ++x) {
            const float expected = m[i][0][y][x] == 1.0f ? 0.0f : v[0][i][ch][y][x];
            EXPECT_EQ(c[i][ch][y][x], expected);
            zeros += c[i][ch][y][x] == 0.0f;
          }
    EXPECT_EQ(zeros, 4 * kChannels * 6 * 6);
  }
}

TEST(MaskedMse, MatchesNaiveFormulaAndHasNoGradientOutsideTheMask) {
  torch::manual_seed(4);
  const int64_t batch = 3, side = 5;
  auto prediction = torch::randn({batch, kChannels, side, side}, torch::kDouble).requires_grad_();
  const auto target = torch::randn({batch, kChannels, side, side}, torch::kDouble);
  // Holes of different sizes (1, 4 and 9 pixels), so that the per-sample mean is seen.
  const auto mask = torch::zeros({batch, 1, side, side}, torch::kDouble);
  mask[0][0][0][0] = 1.0;
  mask[1][0].slice(0, 1, 3).slice(1, 2, 4).fill_(1.0);
  mask[2][0].slice(0, 2, 5).slice(1, 1, 4).fill_(1.0);
  ASSERT_TRUE(torch::equal(mask.sum({1, 2, 3}), torch::tensor({1.0, 4.0, 9.0}, torch::kDouble)));
  const auto loss = masked_mse(prediction, target, mask);

  // Naive: per sample, the squared error summed over masked pixels and channels / their count.
  double expected = 0.0;
  const auto detached = prediction.detach();
  auto p = detached.accessor<double, 4>();
  auto t = target.accessor<double, 4>();
  auto m = mask.accessor<double, 4>();
  for (int64_t i = 0; i < batch; ++i) {
    double sum = 0.0, count = 0.0;
    for (int64_t ch = 0; ch < kChannels; ++ch)
      for (int64_t y = 0; y < side; ++y)
        for (int64_t x = 0; x < side; ++x)
          if (m[i][0][y][x] == 1.0) {
            sum += (p[i][ch][y][x] - t[i][ch][y][x]) * (p[i][ch][y][x] - t[i][ch][y][x]);
            count += 1.0;
          }
    expected += sum / count / double(batch);
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);

  loss.backward();
  const auto grad = prediction.grad();
  const auto outside = (mask == 0).expand_as(grad);
  EXPECT_EQ(grad.masked_select(outside).abs().max().item<double>(), 0.0);
  EXPECT_GT(grad.masked_select(~outside).abs().min().item<double>(), 0.0);
  // Inside: 2 (p - t) / (batch * count_i), the derivative of the formula above.
  const auto counts = mask.sum({1, 2, 3}, /*keepdim=*/true) * double(kChannels);
  EXPECT_TRUE(torch::allclose(grad, 2.0 * (prediction.detach() - target) * mask / counts / batch,
                              1e-12, 1e-14));
}

TEST(InpaintingObjective, LossLearnsOnAFixedBatch) {
  auto config = small_config("random", 0.5);
  const auto objective =
      make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
  ASSERT_NE(std::dynamic_pointer_cast<InpaintingObjective>(objective), nullptr);
  torch::manual_seed(5);
  ObjectiveInput input;
  // Smooth images (bilinear from 4 x 4), so that the hole is predictable from its context.
  namespace F = torch::nn::functional;
  input.views = F::interpolate(torch::randn({8, kChannels, 4, 4}),
                               F::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{kSide, kSide})
                                   .mode(torch::kBilinear)
                                   .align_corners(false))
                    .unsqueeze(0);
  input.keys = torch::arange(8, torch::kLong);
  torch::optim::Adam adam(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    const auto out = objective->compute(input);
    EXPECT_DOUBLE_EQ(out.metrics.at("hole_mse"), out.loss.item<double>());
    EXPECT_TRUE(out.metrics.count("context_mse"));
    out.loss.backward();
    adam.step();
    losses.push_back(out.loss.item<double>());
  }
  std::printf("inpainting losses: first %.4f, last %.4f\n", losses.front(), losses.back());
  // Random images and a tiny model: the loss falls by a third or more in these steps (measured
  // 0.49-0.57 of the first), against none without learning.
  EXPECT_LT(losses.back(), 0.67 * losses.front());
}

}  // namespace
}  // namespace selfsup
