// Tiled InfoNCE against the dense one (a second implementation): loss, gradients with respect to
// the local and the global projections, and the statistics, for block sizes from 1 column to more
// than the whole pool, 2 and 3 views, a whole batch and a rank's shard, with and without a queue.

#include "selfsup/objectives/tiled_info_nce.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

torch::Tensor random_projections(int64_t batch, int64_t views, int64_t dim, uint64_t seed) {
  torch::manual_seed(seed);
  auto z = torch::randn({batch, views, dim});
  return z / z.norm(2, -1, true);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// One evaluation: the result, and the gradients of the loss with respect to `local` and `global`
// (separate leaves, as on a rank where `global` comes from all_gather_with_grad).
struct Evaluated {
  InfoNceResult result;
  torch::Tensor grad_local, grad_global;
};

template <typename Loss>
Evaluated evaluate(Loss loss, const torch::Tensor& local, const torch::Tensor& global,
                   int64_t offset, const InfoNceOptions& options) {
  auto local_leaf = local.clone().requires_grad_(true);
  auto global_leaf = global.clone().requires_grad_(true);
  Evaluated out;
  out.result = loss(local_leaf, global_leaf, offset, options);
  out.result.loss.backward();
  out.grad_local = local_leaf.grad();
  out.grad_global = global_leaf.grad();
  return out;
}

// (views, shard, queue size); shard 0: the whole batch (B_local = B_global, offset 0); 1: the first
// rank's shard (offset 0, B_local < B_global); 2: a middle rank's shard (offset > 0).
class TiledInfoNceVsDense : public ::testing::TestWithParam<std::tuple<int64_t, int, int64_t>> {};

TEST_P(TiledInfoNceVsDense, LossGradientsAndStatisticsMatchForEveryBlockSize) {
  const auto [views, shard, queue_size] = GetParam();
  const int64_t b_global = 6, dim = 8;
  const int64_t b_local = shard == 0 ? b_global : 2;
  const int64_t offset = shard == 2 ? 2 : 0;
  const auto global = random_projections(b_global, views, dim, 3 + views * 10 + shard);
  const auto local = global.narrow(0, offset, b_local).clone();
  auto queue = random_projections(queue_size, 1, dim, 50 + queue_size).reshape({queue_size, dim});
  queue.requires_grad_(true);  // must be ignored: the queue gets no gradient

  const int64_t cols = b_global * views;
  // T = 0.2: logits within +-5, the fixed-shift path; T = 0.02: within +-50, the online maximum.
  // Without batch negatives (MoCo): the other images' columns drop out of the loss, but still get
  // the positives' gradient.
  for (const bool batch_negatives : {true, false})
    for (const double temperature : {0.2, 0.02})
      for (const int64_t block_size :
           {int64_t(1), int64_t(3), int64_t(7), cols - 1, cols, 10 * cols}) {
        SCOPED_TRACE("batch negatives " + std::to_string(batch_negatives) + ", T " +
                     std::to_string(temperature) + ", block_size " + std::to_string(block_size));
        if (!batch_negatives && queue_size == 0) continue;  // positives only: nothing to compare
        const auto options = InfoNceOptions(temperature)
                                 .queue(queue)
                                 .block_size(block_size)
                                 .batch_negatives(batch_negatives);
        const auto dense = evaluate(info_nce, local, global, offset, options);
        const auto tiled = evaluate(info_nce_tiled, local, global, offset, options);
        // Relative to the size of what is compared (logits and gradients grow as 1/T).
        const auto near = [](const torch::Tensor& a, const torch::Tensor& b) {
          return max_abs_diff(a, b) / std::max(1.0, b.abs().max().item<double>());
        };
        EXPECT_LE(near(tiled.result.loss, dense.result.loss), 1e-5);
        EXPECT_LE(near(tiled.grad_local, dense.grad_local), 1e-5);
        EXPECT_LE(near(tiled.grad_global, dense.grad_global), 1e-5);
        EXPECT_EQ(tiled.result.candidates_per_anchor,
                  (batch_negatives ? cols - 1 : views - 1) + queue_size);
        EXPECT_EQ(tiled.result.candidates_per_anchor, dense.result.candidates_per_anchor);
        EXPECT_NEAR(tiled.result.pos_sim, dense.result.pos_sim, 1e-6);
        EXPECT_NEAR(tiled.result.neg_sim, dense.result.neg_sim, 1e-6);
        EXPECT_NEAR(tiled.result.alignment, dense.result.alignment, 1e-6);
        EXPECT_NEAR(tiled.result.uniformity, dense.result.uniformity, 1e-6);
      }
  EXPECT_FALSE(queue.grad().defined());
}

INSTANTIATE_TEST_SUITE_P(ViewsShardsQueues, TiledInfoNceVsDense,
                         ::testing::Combine(::testing::Values<int64_t>(2, 3),
                                            ::testing::Values(0, 1, 2),
                                            ::testing::Values<int64_t>(0, 5, 16)));

TEST(TiledInfoNce, SameTensorAsLocalAndGlobal) {
  // One process, no gather: `local` and `global` are the same leaf and both paths add up.
  const auto base = random_projections(5, 2, 8, 9);
  auto z1 = base.clone().requires_grad_(true);
  auto z2 = base.clone().requires_grad_(true);
  const auto dense = info_nce(z1, z1, 0, InfoNceOptions(0.5));
  const auto tiled = info_nce_tiled(z2, z2, 0, InfoNceOptions(0.5).block_size(4));
  dense.loss.backward();
  tiled.loss.backward();
  EXPECT_NEAR(tiled.loss.item<double>(), dense.loss.item<double>(), 1e-5);
  EXPECT_LE(max_abs_diff(z2.grad(), z1.grad()), 1e-5);
}

TEST(TiledInfoNce, ClosedFormForIdenticalViews) {
  // All 2B views and the K queue entries equal: the loss is log(2B - 1 + K) exactly.
  const int64_t batch = 5, queue_size = 3;
  const auto z = torch::ones({batch, 2, 4}, torch::kDouble) / 2.0;
  const auto queue = torch::ones({queue_size, 4}, torch::kDouble) / 2.0;
  const auto out = info_nce_tiled(z, z, 0, InfoNceOptions(0.3).queue(queue).block_size(3));
  EXPECT_NEAR(out.loss.item<double>(), std::log(2.0 * batch - 1 + queue_size), 1e-12);
  EXPECT_NEAR(out.pos_sim, 1.0, 1e-12);
  EXPECT_NEAR(out.neg_sim, 1.0, 1e-12);
  EXPECT_NEAR(out.alignment, 0.0, 1e-12);
  EXPECT_NEAR(out.uniformity, 0.0, 1e-12);
}

TEST(TiledInfoNce, StableAtTinyTemperature) {
  const auto z = random_projections(4, 2, 8, 5);
  auto z1 = z.clone().requires_grad_(true);
  auto z2 = z.clone().requires_grad_(true);
  const auto dense = info_nce(z1, z1, 0, InfoNceOptions(1e-3));
  const auto tiled = info_nce_tiled(z2, z2, 0, InfoNceOptions(1e-3).block_size(3));
  dense.loss.backward();
  tiled.loss.backward();
  EXPECT_TRUE(std::isfinite(tiled.loss.item<double>()));
  EXPECT_TRUE(torch::isfinite(z2.grad()).all().item<bool>());
  // Logits up to 1000: compare relative to the loss.
  EXPECT_NEAR(tiled.loss.item<double>(), dense.loss.item<double>(),
              1e-6 * std::max(1.0, std::abs(dense.loss.item<double>())));
}

TEST(TiledInfoNce, NoGradientWhenInputsDoNotRequireIt) {
  const auto z = random_projections(4, 2, 8, 5);
  const auto out = info_nce_tiled(z, z, 0, InfoNceOptions(0.5).block_size(2));
  EXPECT_FALSE(out.loss.requires_grad());
  EXPECT_NEAR(out.loss.item<double>(), info_nce(z, z, 0, InfoNceOptions(0.5)).loss.item<double>(),
              1e-5);
}

TEST(TiledInfoNce, SimClrObjectiveUsesTheTiledLossWhenConfigured) {
  // loss.tiled switches the objective to the tiled loss: the same loss and parameter gradients.
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  torch::manual_seed(11);
  const auto views = torch::randn({2, 5, 1, 12, 12});  // [V, B, C, H, W]
  auto comm = std::make_shared<LocalCommunicator>();
  torch::manual_seed(5);
  auto dense = make_objective(config, 1, comm);
  config.loss.tiled = true;
  config.loss.block_size = 3;
  torch::manual_seed(5);
  auto tiled = make_objective(config, 1, comm);

  const auto dense_out = dense->compute(views);
  const auto tiled_out = tiled->compute(views);
  EXPECT_EQ(std::string(dense_out.loss.grad_fn()->name()).find("TiledInfoNce"), std::string::npos);
  EXPECT_NE(std::string(tiled_out.loss.grad_fn()->name()).find("TiledInfoNce"), std::string::npos);
  dense_out.loss.backward();
  tiled_out.loss.backward();
  EXPECT_NEAR(tiled_out.loss.item<double>(), dense_out.loss.item<double>(), 1e-5);
  EXPECT_EQ(tiled_out.candidates_per_anchor, dense_out.candidates_per_anchor);
  for (const auto& [name, value] : dense_out.metrics) {
    EXPECT_NEAR(tiled_out.metrics.at(name), value, 1e-6) << name;
  }
  const auto ours = tiled->named_parameters();
  for (const auto& item : dense->named_parameters()) {
    const double scale = std::max(1.0, item.value().grad().abs().max().item<double>());
    EXPECT_LE(max_abs_diff(ours[item.key()].grad(), item.value().grad()), 1e-5 * scale)
        << item.key();
  }
}

TEST(TiledInfoNce, RejectsBadInputs) {
  const auto z = random_projections(4, 2, 8, 5);
  EXPECT_THROW(info_nce_tiled(z, z.narrow(1, 0, 1), 0, InfoNceOptions(0.5)), Error);
  EXPECT_THROW(info_nce_tiled(z, z, 1, InfoNceOptions(0.5)), Error);
  EXPECT_THROW(info_nce_tiled(z, z, 0, InfoNceOptions(0.5).block_size(0)), Error);
  EXPECT_THROW(info_nce_tiled(z, z, 0, InfoNceOptions(0.5).queue(torch::zeros({3, 7}))), Error);
}

}  // namespace
}  // namespace selfsup
