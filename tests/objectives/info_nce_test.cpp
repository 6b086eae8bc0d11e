// NT-Xent against an independent, naive per-anchor formulation (float64): loss and gradient.

#include "selfsup/objectives/info_nce.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>

namespace selfsup {
namespace {

// The textbook loss, one anchor at a time, with explicit loops over candidates:
//   l(a) = mean over positives p of -log( exp(s_ap / T) / sum_{j != a} exp(s_aj / T) )
// z: [B, V, D] L2-normalised; the anchor order is image-major (b*V + v), like the sharded loss.
torch::Tensor naive_nt_xent(const torch::Tensor& z, double temperature) {
  const int64_t batch = z.size(0), views = z.size(1);
  const auto flat = z.reshape({batch * views, -1});
  const int64_t n = batch * views;
  std::vector<torch::Tensor> losses;
  for (int64_t a = 0; a < n; ++a) {
    std::vector<torch::Tensor> denominator_terms;
    for (int64_t j = 0; j < n; ++j) {
      if (j != a)
        denominator_terms.push_back(torch::exp(torch::dot(flat[a], flat[j]) / temperature));
    }
    const auto log_denominator = torch::log(torch::stack(denominator_terms).sum());
    std::vector<torch::Tensor> terms;
    for (int64_t p = 0; p < n; ++p) {
      if (p != a && p / views == a / views) {
        terms.push_back(log_denominator - torch::dot(flat[a], flat[p]) / temperature);
      }
    }
    losses.push_back(torch::stack(terms).mean());
  }
  return torch::stack(losses).mean();
}

torch::Tensor random_projections(int64_t batch, int64_t views, int64_t dim, uint64_t seed) {
  torch::manual_seed(seed);
  auto z = torch::randn({batch, views, dim}, torch::kDouble);
  return z / z.norm(2, -1, true);
}

class InfoNceVsNaive : public ::testing::TestWithParam<std::tuple<double, int64_t, int64_t>> {};

TEST_P(InfoNceVsNaive, LossAndGradientMatch) {
  const auto [temperature, batch, views] = GetParam();
  const auto base = random_projections(batch, views, 16, 7 + batch * 10 + views);

  auto z1 = base.clone().requires_grad_(true);
  const auto fast = info_nce(z1, z1, 0, InfoNceOptions(temperature));
  fast.loss.backward();

  auto z2 = base.clone().requires_grad_(true);
  const auto naive = naive_nt_xent(z2, temperature);
  naive.backward();

  EXPECT_NEAR(fast.loss.item<double>(), naive.item<double>(), 1e-6);
  EXPECT_LT((z1.grad() - z2.grad()).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(fast.candidates_per_anchor, batch * views - 1);
}

INSTANTIATE_TEST_SUITE_P(TemperaturesBatchesViews, InfoNceVsNaive,
                         ::testing::Combine(::testing::Values(0.05, 0.1, 0.5, 1.0),
                                            ::testing::Values<int64_t>(1, 2, 7),
                                            ::testing::Values<int64_t>(2, 3)));

TEST(InfoNce, DuplicatedInputsMatchNaive) {
  // Several images with identical projections: ties everywhere, still the same loss and gradient.
  auto base = random_projections(3, 2, 8, 3);
  base = torch::cat({base, base, base.narrow(0, 0, 1)});  // [7, 2, 8] with repeats
  auto z1 = base.clone().requires_grad_(true);
  auto z2 = base.clone().requires_grad_(true);
  const auto fast = info_nce(z1, z1, 0, InfoNceOptions(0.2));
  fast.loss.backward();
  naive_nt_xent(z2, 0.2).backward();
  EXPECT_NEAR(fast.loss.item<double>(), naive_nt_xent(base, 0.2).item<double>(), 1e-6);
  EXPECT_LT((z1.grad() - z2.grad()).abs().max().item<double>(), 1e-6);
}

TEST(InfoNce, ClosedFormForIdenticalViews) {
  // All 2B views equal: every candidate has similarity 1, so the loss is log(2B - 1) exactly.
  const int64_t batch = 5;
  auto z = torch::ones({batch, 2, 4}, torch::kDouble) / 2.0;
  const auto out = info_nce(z, z, 0, InfoNceOptions(0.3));
  EXPECT_NEAR(out.loss.item<double>(), std::log(2.0 * batch - 1), 1e-12);
  EXPECT_NEAR(out.pos_sim, 1.0, 1e-12);
  EXPECT_NEAR(out.neg_sim, 1.0, 1e-12);
  EXPECT_NEAR(out.alignment, 0.0, 1e-12);
  EXPECT_NEAR(out.uniformity, 0.0, 1e-12);
}

TEST(InfoNce, ShardedRowsAverageToTheFullLoss) {
  // Two "ranks" computing their own rows against all columns: the mean of their losses is the
  // single-process loss (each holds the same number of anchors).
  const auto z = random_projections(6, 2, 8, 11);
  const auto full = info_nce(z, z, 0, InfoNceOptions(0.5)).loss.item<double>();
  const auto first = info_nce(z.narrow(0, 0, 3), z, 0, InfoNceOptions(0.5)).loss.item<double>();
  const auto second = info_nce(z.narrow(0, 3, 3), z, 3, InfoNceOptions(0.5)).loss.item<double>();
  EXPECT_NEAR((first + second) / 2.0, full, 1e-12);
}

TEST(InfoNce, StableAtTinyTemperature) {
  const auto z = random_projections(4, 2, 8, 5);
  const auto out = info_nce(z.to(torch::kFloat), z.to(torch::kFloat), 0, InfoNceOptions(1e-3));
  EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
}

TEST(InfoNce, RejectsBadShapes) {
  const auto z = random_projections(4, 2, 8, 5);
  EXPECT_THROW(info_nce(z, z.narrow(1, 0, 1), 0, InfoNceOptions(0.5)), std::exception);
  EXPECT_THROW(info_nce(z, z, 1, InfoNceOptions(0.5)), std::exception);
}

}  // namespace
}  // namespace selfsup
