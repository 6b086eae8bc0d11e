#include "selfsup/train/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

TEST(Schedule, WarmupThenCosine) {
  OptimConfig config;
  config.lr = 0.1;
  config.warmup_steps = 10;
  config.min_lr_ratio = 0.0;
  const int64_t total = 110;
  EXPECT_NEAR(learning_rate(config, 0, total), 0.01, 1e-12);  // first warmup step: lr/10
  EXPECT_NEAR(learning_rate(config, 9, total), 0.1, 1e-12);   // end of warmup: the peak
  EXPECT_NEAR(learning_rate(config, 10, total), 0.1, 1e-12);  // cosine starts at the peak
  EXPECT_NEAR(learning_rate(config, 10 + 99 / 2.0, total), 0.05, 1e-3);
  EXPECT_NEAR(learning_rate(config, total - 1, total), 0.0, 1e-12);  // ends at the floor
  for (int64_t s = 10; s + 1 < total; ++s) {
    EXPECT_GE(learning_rate(config, s, total), learning_rate(config, s + 1, total));
  }
}

TEST(Schedule, FloorAndConstant) {
  OptimConfig config;
  config.lr = 1.0;
  config.warmup_steps = 0;
  config.min_lr_ratio = 0.1;
  EXPECT_NEAR(learning_rate(config, 99, 100), 0.1, 1e-12);
  config.schedule = "constant";
  EXPECT_NEAR(learning_rate(config, 50, 100), 1.0, 1e-12);
}

TEST(Optimizer, BuildsAndSetsLearningRate) {
  auto w = torch::zeros({3}, torch::requires_grad());
  OptimConfig config;
  for (const auto* name : {"adam", "adamw", "sgd", "lars"}) {
    config.name = name;
    auto optimizer = make_optimizer(config, {w});
    set_learning_rate(*optimizer, 0.5);
    EXPECT_DOUBLE_EQ(optimizer->param_groups()[0].options().get_lr(), 0.5);
  }
}

TEST(Schedule, LearningRateScalesWithTheGlobalBatch) {
  OptimConfig config;
  config.lr = 0.3;  // SimCLR's LARS recipe: 0.3 x B / 256
  config.lr_scaling = "linear";
  EXPECT_NEAR(scaled_learning_rate(config, 4096), 4.8, 1e-12);
  EXPECT_NEAR(scaled_learning_rate(config, 256), 0.3, 1e-12);
  config.lr = 0.075 * 16;  // the square-root rule: 0.075 x sqrt(B) = 1.2 x sqrt(B / 256)
  config.lr_scaling = "sqrt";
  EXPECT_NEAR(scaled_learning_rate(config, 4096), 0.075 * 64, 1e-12);
  config.base_batch = 1024;
  EXPECT_NEAR(scaled_learning_rate(config, 256), 1.2 * 0.5, 1e-12);
  config.lr_scaling = "none";
  EXPECT_NEAR(scaled_learning_rate(config, 4096), 1.2, 1e-12);
}

// Two LARS steps against the formulas written out: the weight matrix gets weight decay and the
// trust ratio eta |w| / |g + wd w|, the bias (one dimension, like batch norm's parameters) plain
// momentum SGD without weight decay.
TEST(Lars, StepsAreTheLayerwiseTrustRatioUpdate) {
  const double lr = 0.5, momentum = 0.9, wd = 0.01, eta = 0.02;
  torch::manual_seed(0);
  auto w = torch::randn({4, 3}, torch::kDouble).requires_grad_();
  auto b = torch::randn({4}, torch::kDouble).requires_grad_();
  OptimConfig config;
  config.name = "lars";
  config.lr = lr;
  config.momentum = momentum;
  config.weight_decay = wd;
  config.trust_coefficient = eta;
  auto optimizer = make_optimizer(config, {w, b});
  auto w_ref = w.detach().clone(), b_ref = b.detach().clone();
  torch::Tensor w_buf, b_buf;
  for (int step = 0; step < 2; ++step) {
    const auto gw = torch::randn({4, 3}, torch::kDouble) * (step + 1) * 10;  // scale: irrelevant
    const auto gb = torch::randn({4}, torch::kDouble);
    w.mutable_grad() = gw.clone();
    b.mutable_grad() = gb.clone();
    optimizer->step();
    const auto update = gw + wd * w_ref;
    const auto scaled = update * (eta * w_ref.norm() / update.norm());
    w_buf = step == 0 ? scaled : momentum * w_buf + scaled;
    b_buf = step == 0 ? gb : momentum * b_buf + gb;
    w_ref = w_ref - lr * w_buf;
    b_ref = b_ref - lr * b_buf;
    EXPECT_TRUE(torch::allclose(w.detach(), w_ref, 1e-12, 1e-12)) << "step " << step;
    EXPECT_TRUE(torch::allclose(b.detach(), b_ref, 1e-12, 1e-12)) << "step " << step;
  }
  // The step of the adapted layer is eta x lr x |w| before momentum, whatever the gradient's scale.
  auto fresh = torch::randn({5, 5}, torch::kDouble).requires_grad_();
  config.weight_decay = 0;
  config.momentum = 0;
  auto plain = make_optimizer(config, {fresh});
  const auto before = fresh.detach().clone();
  fresh.mutable_grad() = torch::randn({5, 5}, torch::kDouble) * 1e6;
  plain->step();
  EXPECT_NEAR((fresh.detach() - before).norm().item<double>(),
              eta * lr * before.norm().item<double>(), 1e-12);
}

TEST(Lars, ZeroNormsAndStateRoundTrip) {
  // A zero weight (or gradient) has no ratio: plain SGD, not a division by zero.
  auto w = torch::zeros({2, 2}, torch::requires_grad());
  OptimConfig config;
  config.name = "lars";
  config.lr = 1.0;
  config.momentum = 0.0;
  config.weight_decay = 0.0;
  auto optimizer = make_optimizer(config, {w});
  w.mutable_grad() = torch::ones({2, 2});
  optimizer->step();
  EXPECT_TRUE(torch::allclose(w.detach(), -torch::ones({2, 2})));
  // Its state is SGD's momentum buffers, saved and loaded like SGD's.
  config.momentum = 0.9;
  auto a = torch::randn({3, 3}).requires_grad_();
  auto first = make_optimizer(config, {a});
  a.mutable_grad() = torch::randn({3, 3});
  first->step();
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  first->save(out);
  out.save_to(buffer);
  auto second = make_optimizer(config, {a});
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  second->load(in);
  auto copy = a.detach().clone().requires_grad_();
  const auto g = torch::randn({3, 3});
  a.mutable_grad() = g.clone();
  first->step();
  const auto after_first = a.detach().clone();
  // The same step from the loaded state reaches the same weights.
  a.detach().copy_(copy.detach());
  a.mutable_grad() = g.clone();
  second->step();
  EXPECT_TRUE(torch::allclose(a.detach(), after_first, 1e-6, 1e-7));
}

TEST(Lars, RejectsAZeroTrustCoefficient) {
  auto w = torch::zeros({2, 2}, torch::requires_grad());
  OptimConfig config;
  config.name = "lars";
  config.trust_coefficient = 0.0;
  EXPECT_THROW(make_optimizer(config, {w}), Error);
}

TEST(AdamW, DecaysTheWeightsApartFromTheGradient) {
  // AdamW's first step: w - lr (wd w + m / (sqrt(v) + eps)) with bias-corrected m = g, v = g^2:
  // w (1 - lr wd) - lr sign(g) (up to eps).
  auto w = torch::tensor({1.0, -2.0, 3.0}, torch::kDouble).requires_grad_();
  OptimConfig config;
  config.name = "adamw";
  config.lr = 0.1;
  config.weight_decay = 0.5;
  auto optimizer = make_optimizer(config, {w});
  w.mutable_grad() = torch::tensor({0.3, 0.2, -4.0}, torch::kDouble);
  optimizer->step();
  const auto expected =
      torch::tensor({1.0 * 0.95 - 0.1, -2.0 * 0.95 - 0.1, 3.0 * 0.95 + 0.1}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(w.detach(), expected, 1e-6, 1e-7));
}

}  // namespace
}  // namespace selfsup
