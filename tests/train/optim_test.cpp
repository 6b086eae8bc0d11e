#include "selfsup/train/optim.h"

#include <gtest/gtest.h>

#include <cmath>

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
  for (const auto* name : {"adam", "sgd"}) {
    config.name = name;
    auto optimizer = make_optimizer(config, {w});
    set_learning_rate(*optimizer, 0.5);
    EXPECT_DOUBLE_EQ(optimizer->param_groups()[0].options().get_lr(), 0.5);
  }
}

}  // namespace
}  // namespace selfsup
