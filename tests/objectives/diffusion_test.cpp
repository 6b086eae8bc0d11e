// Diffusion: the schedule against a float64 loop and known values, the forward process (x_0 comes
// back from x_t and eps), the sinusoidal embedding against the Transformer's formula, the draws
// keyed by (seed, epoch, sample) only, the modules that make the pretext head, and learning.

#include "selfsup/objectives/diffusion.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kChannels = 3;

Config small_config() {
  Config config;
  config.pretext.task = "diffusion";
  config.pretext.decoder_width = 16;
  config.pretext.diffusion.time_dim = 32;
  config.model.encoder = "convnet";
  config.model.width = 8;
  config.augment.size = kSide;
  config.seed = 14;
  return config;
}

TEST(DiffusionSchedule, AlphaBarMatchesAFloat64Loop) {
  for (const int steps : {1000, 50, 2, 1}) {
    SCOPED_TRACE(steps);
    DiffusionConfig diffusion;
    diffusion.timesteps = steps;
    const auto alpha_bar = diffusion_alpha_bar(diffusion);
    ASSERT_EQ(alpha_bar.scalar_type(), torch::kDouble);
    ASSERT_EQ(alpha_bar.numel(), steps);
    double product = 1.0;
    for (int i = 0; i < steps; ++i) {
      const double beta = steps == 1
                              ? diffusion.beta_start
                              : diffusion.beta_start + (diffusion.beta_end - diffusion.beta_start) *
                                                           double(i) / (steps - 1);
      product *= 1.0 - beta;
      EXPECT_NEAR(alpha_bar[i].item<double>(), product, 1e-12 * product);
    }
    EXPECT_NEAR(alpha_bar[0].item<double>(), 1.0 - diffusion.beta_start, 1e-15);
    if (steps > 1) {
      // Strictly decreasing.
      EXPECT_TRUE((alpha_bar.slice(0, 1) < alpha_bar.slice(0, 0, -1)).all().item<bool>());
    }
  }
  // DDPM's default schedule (1e-4 .. 0.02 over 1000 steps) ends near 4.04e-5; the log of the
  // product is close to -sum beta = -10.05 (the betas are small).
  const double last = diffusion_alpha_bar(DiffusionConfig{})[999].item<double>();
  EXPECT_NEAR(last, 4.036e-5, 0.005e-5);
}

TEST(DiffusionSchedule, ObjectiveHoldsItAsAFloat32Buffer) {
  DiffusionObjective objective(small_config(), {kChannels, kSide},
                               std::make_shared<LocalCommunicator>());
  const auto buffers = objective.named_buffers(/*recurse=*/false);
  ASSERT_TRUE(buffers.contains("alpha_bar"));
  EXPECT_EQ(buffers["alpha_bar"].scalar_type(), torch::kFloat);
  EXPECT_TRUE(
      torch::equal(buffers["alpha_bar"], diffusion_alpha_bar(DiffusionConfig{}).to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(objective.alpha_bar(), buffers["alpha_bar"]));
  // The pretext head: a time embedding and a decoder conditioned on it; only "encoder" transfers.
  const auto parameters = objective.named_parameters();
  EXPECT_TRUE(parameters.contains("time_embedding.fc1.weight"));
  EXPECT_EQ(parameters["time_embedding.fc1.weight"].sizes(), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(parameters["time_embedding.fc2.weight"].sizes(), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(parameters["decoder.cond0.weight"].sizes(), (std::vector<int64_t>{16, 64}));
}

TEST(DiffusionProcess, ZeroComesBackFromTheNoisyImageAndTheNoise) {
  torch::manual_seed(1);
  const auto x0 = torch::randn({4, kChannels, 8, 8}, torch::kDouble);
  const auto eps = torch::randn({4, kChannels, 8, 8}, torch::kDouble);
  const auto abar = torch::tensor({0.9999, 0.5, 0.1, 4e-5}, torch::kDouble);
  const auto xt = diffuse(x0, eps, abar);
  for (int64_t i = 0; i < 4; ++i) {
    const double a = abar[i].item<double>();
    EXPECT_TRUE(
        torch::allclose((xt[i] - std::sqrt(1.0 - a) * eps[i]) / std::sqrt(a), x0[i], 1e-9, 1e-9));
    // And the variance: unit-variance x_0 and eps give unit-variance x_t.
  }
  // Pure noise at abar = 0, the image at abar = 1.
  EXPECT_TRUE(torch::allclose(diffuse(x0, eps, torch::zeros({4}, torch::kDouble)), eps));
  EXPECT_TRUE(torch::allclose(diffuse(x0, eps, torch::ones({4}, torch::kDouble)), x0));
}

TEST(TimestepEmbedding, MatchesTheTransformerFormulaInHalves) {
  // PE(t, 2k) = sin(t / 10000^(2k / d)) in column k, PE(t, 2k + 1) = cos(...) in column d/2 + k.
  const int64_t dim = 8;
  const auto t = torch::tensor({0, 1, 17, 999}, torch::kLong);
  const auto embedding = timestep_embedding(t, dim);
  ASSERT_EQ(embedding.sizes(), (std::vector<int64_t>{4, dim}));
  for (int64_t i = 0; i < 4; ++i) {
    const double step = t[i].item<double>();
    for (int64_t k = 0; k < dim / 2; ++k) {
      const double angle = step / std::pow(10000.0, double(2 * k) / double(dim));
      EXPECT_NEAR(embedding[i][k].item<double>(), std::sin(angle), 1e-6);
      EXPECT_NEAR(embedding[i][dim / 2 + k].item<double>(), std::cos(angle), 1e-6);
    }
  }
  // t = 0: sin 0 = 0 in the first half, cos 0 = 1 in the second, exactly.
  EXPECT_TRUE(torch::equal(embedding[0], torch::tensor({0.f, 0.f, 0.f, 0.f, 1.f, 1.f, 1.f, 1.f})));
  // dim 4 at t = 1: frequencies 1 and 10000^(-1/2) = 0.01.
  EXPECT_TRUE(torch::allclose(timestep_embedding(torch::tensor({1}, torch::kLong), 4)[0],
                              torch::tensor({float(std::sin(1.0)), float(std::sin(0.01)),
                                             float(std::cos(1.0)), float(std::cos(0.01))})));
  // An odd width ends with a zero column.
  const auto odd = timestep_embedding(t, 7);
  EXPECT_TRUE(torch::equal(odd.slice(1, 0, 6), timestep_embedding(t, 6)));
  EXPECT_TRUE(torch::equal(odd.select(1, 6), torch::zeros({4})));
}

TEST(DiffusionObjective, DrawsAreKeyedBySampleAndEpochOnly) {
  const auto config = small_config();
  DiffusionObjective objective(config, {kChannels, kSide}, std::make_shared<LocalCommunicator>());
  torch::manual_seed(2);
  ObjectiveInput input;
  input.views = torch::randn({1, 64, kChannels, kSide, kSide});
  input.keys = torch::arange(500, 564, torch::kLong);
  input.epoch = 3;
  const auto batch = objective.prepare(input);
  ASSERT_EQ(batch.t.sizes(), (std::vector<int64_t>{64}));
  EXPECT_GE(batch.t.min().item<int64_t>(), 0);
  EXPECT_LT(batch.t.max().item<int64_t>(), 1000);
  EXPECT_GT(std::set<int64_t>(batch.t.data_ptr<int64_t>(), batch.t.data_ptr<int64_t>() + 64).size(),
            50u);  // 64 draws from 1000 values: a few repeats at most
  // x_t from the float64 schedule.
  const auto abar = diffusion_alpha_bar(config.pretext.diffusion).index_select(0, batch.t);
  EXPECT_TRUE(torch::allclose(
      batch.noisy.to(torch::kDouble),
      diffuse(input.views[0].to(torch::kDouble), batch.eps.to(torch::kDouble), abar), 1e-5, 1e-5));

  // Samples 7 and 2 of this batch again, with other views, at other positions: same t and eps.
  ObjectiveInput again;
  again.views = torch::randn({1, 3, kChannels, kSide, kSide});
  again.keys = torch::tensor({502, 9999, 507}, torch::kLong);
  again.epoch = 3;
  const auto other = objective.prepare(again);
  EXPECT_EQ(other.t[0].item<int64_t>(), batch.t[2].item<int64_t>());
  EXPECT_EQ(other.t[2].item<int64_t>(), batch.t[7].item<int64_t>());
  EXPECT_TRUE(torch::equal(other.eps[0], batch.eps[2]));
  EXPECT_TRUE(torch::equal(other.eps[2], batch.eps[7]));
  // Another epoch draws anew.
  input.epoch = 4;
  const auto next = objective.prepare(input);
  EXPECT_FALSE(torch::equal(next.t, batch.t));
  EXPECT_FALSE(torch::equal(next.eps, batch.eps));
  // The noise is standard normal (64 x 768 draws).
  EXPECT_NEAR(batch.eps.std().item<double>(), 1.0, 0.02);
}

TEST(DiffusionObjective, LossLearnsOnAFixedBatch) {
  const auto config = small_config();
  const auto objective =
      make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
  ASSERT_NE(std::dynamic_pointer_cast<DiffusionObjective>(objective), nullptr);
  torch::manual_seed(5);
  ObjectiveInput input;
  input.views = torch::randn({1, 8, kChannels, kSide, kSide});
  input.keys = torch::arange(8, torch::kLong);
  torch::optim::Adam adam(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    const auto out = objective->compute(input);  // epoch 0 every step: the same t and eps
    EXPECT_DOUBLE_EQ(out.metrics.at("eps_mse"), out.loss.item<double>());
    out.loss.backward();
    adam.step();
    losses.push_back(out.loss.item<double>());
  }
  std::printf("diffusion losses: first %.4f, last %.4f\n", losses.front(), losses.back());
  // Random images and a tiny model: the loss falls by a third or more in these steps (measured
  // 0.49-0.57 of the first), against none without learning.
  EXPECT_LT(losses.back(), 0.67 * losses.front());
}

}  // namespace
}  // namespace selfsup
