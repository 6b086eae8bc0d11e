// NT-Xent against an independent, naive per-anchor formulation (float64): loss, gradient and (with
// a queue of extra negatives) the statistics.

#include "selfsup/objectives/info_nce.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// The textbook loss, one anchor at a time, with explicit loops over candidates:
//   l(a) = mean over positives p of -log( exp(s_ap / T) / (sum_{j != a} exp(s_aj / T)
//                                                          + sum_k exp(<z_a, q_k> / T)) )
// z: [B, V, D] L2-normalised; the anchor order is image-major (b*V + v), like the sharded loss.
// queue: [K, D] extra negatives (undefined: none).
torch::Tensor naive_nt_xent(const torch::Tensor& z, double temperature,
                            const torch::Tensor& queue = {}) {
  const int64_t batch = z.size(0), views = z.size(1);
  const auto flat = z.reshape({batch * views, -1});
  const int64_t n = batch * views;
  const int64_t queue_size = queue.defined() ? queue.size(0) : 0;
  std::vector<torch::Tensor> losses;
  for (int64_t a = 0; a < n; ++a) {
    std::vector<torch::Tensor> denominator_terms;
    for (int64_t j = 0; j < n; ++j) {
      if (j != a)
        denominator_terms.push_back(torch::exp(torch::dot(flat[a], flat[j]) / temperature));
    }
    for (int64_t k = 0; k < queue_size; ++k) {
      denominator_terms.push_back(torch::exp(torch::dot(flat[a], queue[k]) / temperature));
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

// The statistics, pair by pair in float64: {pos_sim, neg_sim, uniformity}; the queue's columns
// are negatives of every anchor; the uniformity is over the pairs of different images of the batch.
std::vector<double> naive_statistics(const torch::Tensor& z, const torch::Tensor& queue) {
  const int64_t batch = z.size(0), views = z.size(1), n = batch * views;
  const auto flat = z.reshape({n, -1}).to(torch::kDouble);
  const auto q = queue.to(torch::kDouble);
  double pos = 0.0, neg = 0.0, kernel = 0.0;
  int64_t n_pos = 0, n_neg = 0, n_pairs = 0;
  const auto add_negative = [&](double cos) {
    neg += cos;
    ++n_neg;
  };
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t j = 0; j < n; ++j) {
      if (j == a) continue;
      const double cos = torch::dot(flat[a], flat[j]).item<double>();
      if (j / views == a / views) {
        pos += cos;
        ++n_pos;
      } else {
        add_negative(cos);
        kernel += std::exp(-2.0 * (2.0 - 2.0 * cos));
        ++n_pairs;
      }
    }
    for (int64_t k = 0; k < q.size(0); ++k) add_negative(torch::dot(flat[a], q[k]).item<double>());
  }
  return {pos / double(n_pos), neg / double(n_neg),
          n_pairs > 0 ? std::log(kernel / double(n_pairs)) : 0.0};
}

class InfoNceQueueVsNaive
    : public ::testing::TestWithParam<std::tuple<double, int64_t, int64_t, int64_t>> {};

TEST_P(InfoNceQueueVsNaive, LossGradientAndStatisticsMatch) {
  const auto [temperature, batch, views, queue_size] = GetParam();
  const auto base = random_projections(batch, views, 16, 17 + batch * 10 + views);
  auto queue = random_projections(queue_size, 1, 16, 99 + queue_size).reshape({queue_size, 16});
  queue.requires_grad_(true);  // must be ignored: the queue gets no gradient

  auto z1 = base.clone().requires_grad_(true);
  const auto fast = info_nce(z1, z1, 0, InfoNceOptions(temperature).queue(queue));
  fast.loss.backward();

  auto z2 = base.clone().requires_grad_(true);
  const auto naive = naive_nt_xent(z2, temperature, queue.detach());
  naive.backward();

  EXPECT_NEAR(fast.loss.item<double>(), naive.item<double>(), 1e-6);
  EXPECT_LT((z1.grad() - z2.grad()).abs().max().item<double>(), 1e-6);
  EXPECT_FALSE(queue.grad().defined());
  EXPECT_EQ(fast.candidates_per_anchor, batch * views - 1 + queue_size);
  const auto expected = naive_statistics(base, queue.detach());
  EXPECT_NEAR(fast.pos_sim, expected[0], 1e-9);
  EXPECT_NEAR(fast.alignment, 2.0 - 2.0 * expected[0], 1e-9);
  EXPECT_NEAR(fast.neg_sim, expected[1], 1e-9);
  EXPECT_NEAR(fast.uniformity, expected[2], 1e-9);
}

INSTANTIATE_TEST_SUITE_P(TemperaturesBatchesViewsQueues, InfoNceQueueVsNaive,
                         ::testing::Combine(::testing::Values(0.1, 0.5),
                                            ::testing::Values<int64_t>(1, 3),
                                            ::testing::Values<int64_t>(2, 3),
                                            ::testing::Values<int64_t>(1, 5, 16)));

TEST(InfoNce, EmptyQueueIsNoQueue) {
  const auto z = random_projections(4, 2, 8, 21);
  const auto plain = info_nce(z, z, 0, InfoNceOptions(0.5));
  const auto empty =
      info_nce(z, z, 0, InfoNceOptions(0.5).queue(torch::empty({0, 8}, torch::kDouble)));
  EXPECT_EQ(plain.loss.item<double>(), empty.loss.item<double>());
  EXPECT_EQ(plain.candidates_per_anchor, empty.candidates_per_anchor);
  EXPECT_EQ(plain.uniformity, empty.uniformity);
}

TEST(InfoNce, ShardedRowsWithAQueueAverageToTheFullLoss) {
  const auto z = random_projections(6, 3, 8, 13);
  const auto queue = random_projections(5, 1, 8, 14).reshape({5, 8});
  const auto options = InfoNceOptions(0.3).queue(queue);
  const auto full = info_nce(z, z, 0, options).loss.item<double>();
  const auto first = info_nce(z.narrow(0, 0, 2), z, 0, options).loss.item<double>();
  const auto second = info_nce(z.narrow(0, 2, 2), z, 2, options).loss.item<double>();
  const auto third = info_nce(z.narrow(0, 4, 2), z, 4, options).loss.item<double>();
  EXPECT_NEAR((first + second + third) / 3.0, full, 1e-12);
  EXPECT_NEAR(full, naive_nt_xent(z, 0.3, queue).item<double>(), 1e-9);
}

TEST(InfoNce, RejectsABadQueue) {
  const auto z = random_projections(4, 2, 8, 5);
  const auto queue = random_projections(3, 1, 8, 6).reshape({3, 8});
  EXPECT_THROW(info_nce(z, z, 0, InfoNceOptions(0.5).queue(queue.narrow(1, 0, 4))), Error);
  EXPECT_THROW(info_nce(z, z, 0, InfoNceOptions(0.5).queue(queue.to(torch::kFloat))), Error);
  EXPECT_THROW(info_nce(z, z, 0, InfoNceOptions(0.5).queue(queue.reshape({3, 1, 8}))), Error);
}

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
