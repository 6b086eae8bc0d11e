// Colorization: sRGB -> CIE Lab against published values and a per-pixel double-precision scalar
// implementation written from the CIE formulas (XYZ in 0..100, kappa and epsilon), the (a, b)
// bins of known colours, the encoder's gray input, and that both targets learn.

#include "selfsup/objectives/colorization.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

// [1, 3, 1, 1] image of one colour.
torch::Tensor pixel(double r, double g, double b, torch::Dtype dtype = torch::kDouble) {
  return torch::tensor({r, g, b}, dtype).view({1, 3, 1, 1});
}

// Lab of one sRGB colour, scalar double code: XYZ scaled to 0..100 against the white
// (95.047, 100, 108.883), and the CIE constants epsilon = 216/24389, kappa = 24389/27.
std::array<double, 3> reference_lab(double r, double g, double b) {
  auto linear = [](double c) {
    c = std::min(1.0, std::max(0.0, c));
    return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
  };
  const double lr = linear(r), lg = linear(g), lb = linear(b);
  const double x = 100.0 * (0.4124564 * lr + 0.3575761 * lg + 0.1804375 * lb);
  const double y = 100.0 * (0.2126729 * lr + 0.7151522 * lg + 0.0721750 * lb);
  const double z = 100.0 * (0.0193339 * lr + 0.1191920 * lg + 0.9503041 * lb);
  const double epsilon = 216.0 / 24389.0, kappa = 24389.0 / 27.0;
  auto f = [&](double t) { return t > epsilon ? std::cbrt(t) : (kappa * t + 16.0) / 116.0; };
  const double fx = f(x / 95.047), fy = f(y / 100.0), fz = f(z / 108.883);
  return {116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)};
}

TEST(RgbToLab, MatchesPublishedValues) {
  struct Known {
    std::array<double, 3> rgb, lab;
  };
  const std::vector<Known> known{
      {{1, 0, 0}, {53.24, 80.09, 67.20}},   {{0, 1, 0}, {87.73, -86.18, 83.18}},
      {{0, 0, 1}, {32.30, 79.19, -107.86}}, {{1, 1, 1}, {100.0, 0.0, 0.0}},
      {{0, 0, 0}, {0.0, 0.0, 0.0}},         {{0.5, 0.5, 0.5}, {53.39, 0.0, 0.0}},
  };
  for (const auto dtype : {torch::kDouble, torch::kFloat}) {
    for (const auto& colour : known) {
      const auto lab =
          rgb_to_lab(pixel(colour.rgb[0], colour.rgb[1], colour.rgb[2], dtype)).flatten();
      ASSERT_EQ(lab.scalar_type(), dtype);
      for (int i = 0; i < 3; ++i)
        EXPECT_NEAR(lab[i].item<double>(), colour.lab[i], 0.05)
            << "rgb (" << colour.rgb[0] << ", " << colour.rgb[1] << ", " << colour.rgb[2]
            << "), channel " << i << ", " << dtype;
    }
  }
}

TEST(RgbToLab, MatchesAScalarImplementationPerPixel) {
  torch::manual_seed(8);
  // Bright and very dark pixels (below both linear thresholds), and a few outside [0, 1].
  const auto rgb = torch::cat({torch::rand({2, 3, 5, 6}, torch::kDouble),
                               0.03 * torch::rand({1, 3, 5, 6}, torch::kDouble),
                               1.4 * torch::rand({1, 3, 5, 6}, torch::kDouble) - 0.2});
  const auto lab = rgb_to_lab(rgb);
  const auto lab_float = rgb_to_lab(rgb.to(torch::kFloat)).to(torch::kDouble);
  const auto in = rgb.accessor<double, 4>();
  const auto out = lab.accessor<double, 4>();
  const auto out_float = lab_float.accessor<double, 4>();
  for (int64_t b = 0; b < rgb.size(0); ++b)
    for (int64_t i = 0; i < rgb.size(2); ++i)
      for (int64_t j = 0; j < rgb.size(3); ++j) {
        const auto expected = reference_lab(in[b][0][i][j], in[b][1][i][j], in[b][2][i][j]);
        for (int c = 0; c < 3; ++c) {
          EXPECT_NEAR(out[b][c][i][j], expected[c], 1e-9) << b << " " << i << " " << j << " " << c;
          EXPECT_NEAR(out_float[b][c][i][j], expected[c], 2e-3);
        }
      }
}

TEST(Colorization, BinsOfKnownColours) {
  // 11 bins of 20 Lab units: cell k covers [-110 + 20k, -90 + 20k). With an odd count the
  // neutral axis a = b = 0 is the middle of cell 5, not an edge where rounding (white's a and b
  // are 1e-5 off zero in float) would split gray pixels between four cells.
  const auto lab = rgb_to_lab(torch::cat({pixel(1, 0, 0), pixel(1, 1, 1), pixel(0, 0, 1)}, 3));
  const auto bins = ab_to_bins(lab.narrow(1, 1, 2), 11).flatten();
  // Red (80.09, 67.20): cells (9, 8); white (0, 0): (5, 5); blue (79.19, -107.86): (9, 0).
  EXPECT_TRUE(torch::equal(bins, torch::tensor({9 * 11 + 8, 5 * 11 + 5, 9 * 11 + 0}, torch::kLong)))
      << bins;
  // Edges and beyond go to the edge cells; a cell's lower edge belongs to it.
  const auto ab =
      torch::tensor({-200.0, 200.0, -110.0, 110.0, -88.0, -88.1, 21.99, 22.0}, torch::kDouble)
          .view({1, 2, 1, 4});  // a = (-200, 200, -110, 110), b = (-88, ...)
  EXPECT_TRUE(
      torch::equal(ab_to_bins(ab, 10).flatten(),
                   torch::tensor({0 * 10 + 1, 9 * 10 + 0, 0 * 10 + 5, 9 * 10 + 6}, torch::kLong)));
  EXPECT_EQ(ab_to_bins(torch::zeros({1, 2, 1, 1}), 3).item<int64_t>(), 1 * 3 + 1);
}

TEST(Colorization, TheEncoderSeesLuminanceAsGray) {
  torch::manual_seed(9);
  const auto rgb = torch::rand({3, 3, 8, 8});
  for (const auto& [mean, deviation] :
       std::vector<std::pair<std::vector<double>, std::vector<double>>>{
           {{0.4, 0.5, 0.6}, {0.2, 0.25, 0.3}}, {{0.45}, {0.22}}}) {
    AugmentConfig augment;
    augment.mean = mean;
    augment.std = deviation;
    auto per_channel = [](const std::vector<double>& v) {
      return torch::tensor(v, torch::kDouble).to(torch::kFloat).view({1, -1, 1, 1});
    };
    const auto views = (rgb - per_channel(mean)) / per_channel(deviation);
    const auto batch = colorization_batch(views, augment);
    ASSERT_EQ(batch.input.sizes(), rgb.sizes());
    // The targets are the views' colours.
    EXPECT_LE((batch.lab - rgb_to_lab(rgb)).abs().max().item<double>(), 1e-3);
    // De-normalised, the input's three channels are equal, and equal L / 100.
    const auto gray = batch.input * per_channel(deviation) + per_channel(mean);
    const auto lightness = batch.lab.select(1, 0) / 100.0;
    for (int c = 0; c < 3; ++c)
      EXPECT_LE((gray.select(1, c) - lightness).abs().max().item<double>(), 1e-6) << c;
  }
  AugmentConfig two_values;
  two_values.mean = {0.5, 0.5};
  two_values.std = {0.2, 0.2};
  EXPECT_THROW(colorization_batch(rgb, two_values), Error);
}

Config colorization_config(const std::string& target) {
  Config config;
  config.seed = 2;
  config.pretext.task = "colorization";
  config.pretext.colorization.target = target;
  config.pretext.colorization.bins = 10;
  config.pretext.decoder_width = 8;
  config.augment.views = 1;
  config.augment.mean = {0.5};
  config.augment.std = {0.25};
  config.model.width = 4;
  return config;
}

TEST(Colorization, RejectsGrayscale) {
  const auto config = colorization_config("bins");
  auto comm = std::make_shared<LocalCommunicator>();
  EXPECT_THROW(make_objective(config, 1, comm, 16), ConfigError);
  EXPECT_THROW(make_colorization_objective(config, PretextShape{1, 16}, comm), Error);
}

// Views of hand-made images whose colour follows their shape: a red disc on even samples, a green
// square on odd ones, on gray backgrounds of varying brightness, normalised with mean 0.5, std
// 0.25.
torch::Tensor shape_views(int64_t batch, int64_t side) {
  const auto rows = torch::arange(side, torch::kFloat).view({side, 1});
  const auto cols = torch::arange(side, torch::kFloat).view({1, side});
  std::vector<torch::Tensor> images;
  for (int64_t b = 0; b < batch; ++b) {
    auto image = torch::full({3, side, side}, 0.3f + 0.05f * float(b % 5));
    const float cy = 5.0f + float(b % 3) * 2.0f, cx = 6.0f + float(b % 4);
    const auto inside = b % 2 == 0
                            ? ((rows - cy).square() + (cols - cx).square()).le(12.0f)
                            : (rows - cy).abs().le(3.0f).logical_and((cols - cx).abs().le(3.0f));
    const std::array<float, 3> colour = b % 2 == 0 ? std::array<float, 3>{0.9f, 0.1f, 0.1f}
                                                   : std::array<float, 3>{0.1f, 0.8f, 0.2f};
    for (int c = 0; c < 3; ++c) image[c].masked_fill_(inside, colour[c]);
    images.push_back(image);
  }
  return ((torch::stack(images) - 0.5) / 0.25).unsqueeze(0);  // [1, B, 3, side, side]
}

// Trains `steps` Adam steps on one batch; returns the first and last outputs.
std::pair<ObjectiveOutput, ObjectiveOutput> train(Objective& objective, const torch::Tensor& views,
                                                  int steps) {
  torch::optim::Adam optimizer(objective.trainable_parameters(), torch::optim::AdamOptions(3e-3));
  ObjectiveOutput first, last;
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    auto out = objective.compute(views);
    out.loss.backward();
    optimizer.step();
    if (step == 0) first = out;
    last = out;
  }
  return {first, last};
}

TEST(Colorization, BinsLearnOnAFixedBatch) {
  const auto config = colorization_config("bins");
  auto objective = make_objective(config, 3, std::make_shared<LocalCommunicator>(), 16);
  EXPECT_EQ(objective->name(), "colorization");
  const auto [first, last] = train(*objective, shape_views(8, 16), 30);
  // About log(100) at first: 10 x 10 bins.
  EXPECT_NEAR(first.loss.item<double>(), std::log(100.0), 1.0);
  EXPECT_LT(last.loss.item<double>(), 0.5 * first.loss.item<double>());
  // The backgrounds alone are most pixels; measured 0.79-0.82 (it varies with the number of
  // threads, whose reductions round differently), against 0.01 by chance.
  EXPECT_GT(last.metrics.at("accuracy"), 0.7);
}

TEST(Colorization, RegressionLearnsOnAFixedBatch) {
  const auto config = colorization_config("regression");
  auto objective = make_objective(config, 3, std::make_shared<LocalCommunicator>(), 16);
  const auto [first, last] = train(*objective, shape_views(8, 16), 30);
  // The metric is the loss in Lab units: rmse = 110 sqrt(mean squared error of (a, b) / 110).
  EXPECT_NEAR(first.metrics.at("ab_rmse"), 110.0 * std::sqrt(first.loss.item<double>()), 1e-3);
  EXPECT_LT(last.loss.item<double>(), 0.5 * first.loss.item<double>());
}

}  // namespace
}  // namespace selfsup
