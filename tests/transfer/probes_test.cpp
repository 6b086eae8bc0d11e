// Tests of the downstream probes: the linear probe on synthetic Gaussian blobs, and the weighted
// kNN against hand-computed votes and a naive double-loop reference.

#include "selfsup/transfer/probes.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// `per_class` points per class drawn from N(centre_c, I) in `dim` dimensions, where the centres
// are `separation` times a fixed random unit-variance direction per class. Labels cycle 0, 1, ...
// so that every prefix holds all classes.
FeatureSet make_blobs(int64_t num_classes, int64_t per_class, int64_t dim, double separation,
                      uint64_t seed) {
  torch::Generator centre_generator = at::detail::createCPUGenerator(1234);
  const torch::Tensor centres = torch::randn({num_classes, dim}, centre_generator) * separation;
  torch::Generator generator = at::detail::createCPUGenerator(seed);
  FeatureSet set;
  set.labels = torch::arange(num_classes * per_class, torch::kInt64).remainder(num_classes);
  set.features = centres.index_select(0, set.labels) +
                 torch::randn({num_classes * per_class, dim}, generator);  // [N, D]
  return set;
}

LinearProbeConfig small_probe_config() {
  LinearProbeConfig config;
  config.epochs = 30;
  config.batch_size = 64;
  config.lr = 1e-2;
  config.weight_decay = 1e-5;
  return config;
}

TEST(LinearProbe, SeparableBlobsNearlyPerfect) {
  const FeatureSet train = make_blobs(/*num_classes=*/3, /*per_class=*/100, /*dim=*/8,
                                      /*separation=*/5.0, /*seed=*/1);
  const FeatureSet test = make_blobs(3, 50, 8, 5.0, /*seed=*/2);
  const ProbeResult result = linear_probe(train, test, 3, small_probe_config(), /*seed=*/7);
  EXPECT_GE(result.top1, 99.0);
  EXPECT_GE(result.train_top1, 99.0);
}

TEST(LinearProbe, DeterministicForSeed) {
  // Overlapping blobs, so that the result depends on the exact weights, not only on separability.
  const FeatureSet train = make_blobs(4, 200, 16, 0.5, /*seed=*/3);
  const FeatureSet test = make_blobs(4, 100, 16, 0.5, /*seed=*/4);
  const ProbeResult first = linear_probe(train, test, 4, small_probe_config(), /*seed=*/11);
  const ProbeResult second = linear_probe(train, test, 4, small_probe_config(), /*seed=*/11);
  EXPECT_EQ(first.top1, second.top1);
  EXPECT_EQ(first.train_top1, second.train_top1);
  // Sanity: overlapping but not hopeless (chance is 25 %).
  EXPECT_GT(first.top1, 40.0);
  EXPECT_LT(first.top1, 100.0);
}

TEST(LinearProbe, InvariantToFeatureScale) {
  const FeatureSet train = make_blobs(4, 200, 16, 0.5, /*seed=*/5);
  const FeatureSet test = make_blobs(4, 100, 16, 0.5, /*seed=*/6);
  const ProbeResult plain = linear_probe(train, test, 4, small_probe_config(), /*seed=*/3);
  // Scaled and shifted: standardisation with the training statistics undoes both.
  const FeatureSet scaled_train{train.features * 1000.0 + 50.0, train.labels};
  const FeatureSet scaled_test{test.features * 1000.0 + 50.0, test.labels};
  const ProbeResult scaled =
      linear_probe(scaled_train, scaled_test, 4, small_probe_config(), /*seed=*/3);
  EXPECT_NEAR(plain.top1, scaled.top1, 1.0);
  EXPECT_NEAR(plain.train_top1, scaled.train_top1, 1.0);
}

TEST(LinearProbe, ConstantFeatureIgnored) {
  // Column 0 is constant on train but spread over [-100, 100] on test: it carries no information,
  // and must not swing the test predictions (as 1 / clamped std would, with any nonzero weight).
  FeatureSet train = make_blobs(3, 100, 8, 5.0, /*seed=*/8);
  FeatureSet test = make_blobs(3, 50, 8, 5.0, /*seed=*/9);
  train.features.select(1, 0).fill_(2.0);
  test.features.select(1, 0).copy_(torch::linspace(-100.0, 100.0, test.features.size(0)));
  const ProbeResult result = linear_probe(train, test, 3, small_probe_config(), /*seed=*/1);
  EXPECT_GE(result.top1, 99.0);
}

// A second implementation of the probe's recipe with autograd and torch::optim::Adam, full batch
// (so that the shuffle does not matter): standardise, zero-initialised Linear, mean cross-entropy
// plus wd * ||W||^2, cosine-decayed lr. Returns test top-1 in percent.
double autograd_full_batch_probe(const FeatureSet& train, const FeatureSet& test,
                                 int64_t num_classes, const LinearProbeConfig& config) {
  const auto [std_dev, mean] = torch::std_mean(train.features, {0}, /*unbiased=*/false);
  const torch::Tensor train_z = (train.features - mean) / std_dev;
  const torch::Tensor test_z = (test.features - mean) / std_dev;
  torch::nn::Linear linear(train.features.size(1), num_classes);
  torch::nn::init::zeros_(linear->weight);
  torch::nn::init::zeros_(linear->bias);
  torch::optim::Adam adam(linear->parameters(), torch::optim::AdamOptions(config.lr));
  for (int64_t step = 0; step < config.epochs; ++step) {
    const double progress = static_cast<double>(step) / static_cast<double>(config.epochs);
    static_cast<torch::optim::AdamOptions&>(adam.param_groups()[0].options())
        .lr(0.5 * config.lr * (1.0 + std::cos(3.14159265358979323846 * progress)));
    adam.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(linear(train_z), train.labels) +
                               config.weight_decay * linear->weight.pow(2).sum();
    loss.backward();
    adam.step();
  }
  torch::NoGradGuard no_grad;
  return 100.0 * linear(test_z).argmax(1).eq(test.labels).to(torch::kFloat64).mean().item<double>();
}

TEST(LinearProbe, MatchesAutogradReference) {
  const FeatureSet train = make_blobs(4, 100, 16, 0.5, /*seed=*/12);
  const FeatureSet test = make_blobs(4, 500, 16, 0.5, /*seed=*/13);
  LinearProbeConfig config;
  config.epochs = 150;      // one full-batch step per epoch
  config.batch_size = 400;  // the whole training split
  config.lr = 3e-2;
  config.weight_decay = 1e-2;
  const double reference = autograd_full_batch_probe(train, test, 4, config);
  // Same maths; only float summation order differs, which may flip a borderline example or two.
  EXPECT_NEAR(linear_probe(train, test, 4, config, /*seed=*/0).top1, reference, 0.2);
  EXPECT_GT(reference, 40.0);  // chance is 25 %
}

TEST(LinearProbe, RejectsBadShapes) {
  const FeatureSet train = make_blobs(3, 10, 8, 5.0, /*seed=*/1);
  const FeatureSet test = make_blobs(3, 10, 8, 5.0, /*seed=*/2);
  const LinearProbeConfig config = small_probe_config();

  const FeatureSet narrow_test{test.features.narrow(1, 0, 7), test.labels};
  EXPECT_THROW(linear_probe(train, narrow_test, 3, config, 0), Error);
  const FeatureSet short_labels{train.features, train.labels.narrow(0, 0, 29)};
  EXPECT_THROW(linear_probe(short_labels, test, 3, config, 0), Error);
  const FeatureSet flat_features{train.features.reshape({-1}), train.labels};
  EXPECT_THROW(linear_probe(flat_features, test, 3, config, 0), Error);
  const FeatureSet float_labels{train.features, train.labels.to(torch::kFloat32)};
  EXPECT_THROW(linear_probe(float_labels, test, 3, config, 0), Error);
  // Labels reach 2, so two classes is too few.
  EXPECT_THROW(linear_probe(train, test, 2, config, 0), Error);
}

// A unit vector at `degrees` from the x axis, scaled by `length` (cosine similarity ignores it).
std::vector<float> at_angle(double degrees, double length = 1.0) {
  const double radians = degrees * 3.14159265358979323846 / 180.0;
  return {static_cast<float>(length * std::cos(radians)),
          static_cast<float>(length * std::sin(radians))};
}

FeatureSet make_set(const std::vector<std::vector<float>>& rows,
                    const std::vector<int64_t>& labels) {
  const auto n = static_cast<int64_t>(rows.size());
  torch::Tensor features = torch::empty({n, 2}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    features[i][0] = rows[i][0];
    features[i][1] = rows[i][1];
  }
  return {features, torch::tensor(labels, torch::kInt64)};
}

// Query at 0 degrees, label 0. Training points and their cosine similarity to it:
//   class 0 at  10 degrees (length 5): cos = 0.985
//   class 1 at  60 degrees:            cos = 0.5
//   class 1 at -60 degrees:            cos = 0.5
//   class 1 at 170 degrees:            cos = -0.985 (never among the 3 nearest)
// With k = 3 the neighbours are the first three. Unweighted majority: class 1 (2 votes to 1).
//   T = 0.1: class 0 gets exp(9.85) = 18900, class 1 gets 2 exp(5) = 297    -> class 0, correct.
//   T = 10:  class 0 gets exp(0.0985) = 1.10, class 1 gets 2 exp(0.05) = 2.10 -> class 1, wrong.
FeatureSet hand_train() {
  return make_set({at_angle(10, 5.0), at_angle(60), at_angle(-60), at_angle(170)}, {0, 1, 1, 1});
}
FeatureSet hand_test() { return make_set({at_angle(0)}, {0}); }

TEST(Knn, WeightingOverridesMajority) {
  KnnConfig sharp;
  sharp.k = 3;
  sharp.temperature = 0.1;
  EXPECT_DOUBLE_EQ(knn_top1(hand_train(), hand_test(), 2, sharp), 100.0);
  KnnConfig flat = sharp;
  flat.temperature = 10.0;
  EXPECT_DOUBLE_EQ(knn_top1(hand_train(), hand_test(), 2, flat), 0.0);
}

TEST(Knn, KLargerThanTrainingSet) {
  // k = 100 is clipped to the 4 training points; the 170-degree point now votes too.
  //   T = 0.1: class 0 exp(9.85) = 18900 vs class 1 2 exp(5) + exp(-9.85) = 297 -> class 0.
  //   T = 10:  class 0 1.10 vs class 1 2.10 + exp(-0.0985) = 3.01               -> class 1.
  KnnConfig sharp;
  sharp.k = 100;
  sharp.temperature = 0.1;
  EXPECT_DOUBLE_EQ(knn_top1(hand_train(), hand_test(), 2, sharp), 100.0);
  KnnConfig flat = sharp;
  flat.temperature = 10.0;
  EXPECT_DOUBLE_EQ(knn_top1(hand_train(), hand_test(), 2, flat), 0.0);
}

TEST(Knn, SmallTemperatureDoesNotOverflow) {
  KnnConfig config;
  config.k = 3;
  config.temperature = 1e-4;  // exp(1 / 1e-4) overflows float without the per-row shift
  EXPECT_DOUBLE_EQ(knn_top1(hand_train(), hand_test(), 2, config), 100.0);
}

TEST(Knn, TestEqualsTrainWithKOne) {
  torch::Generator generator = at::detail::createCPUGenerator(21);
  const FeatureSet set{torch::randn({1000, 32}, generator),
                       torch::randint(0, 10, {1000}, generator, torch::kInt64)};
  KnnConfig config;
  config.k = 1;
  EXPECT_DOUBLE_EQ(knn_top1(set, set, 10, config), 100.0);
}

// Naive reference in double precision: per query, cosine to every training row, a stable sort,
// exp(cos / T) votes over the k nearest, and the first class with the most weight.
double naive_knn_top1(const FeatureSet& train, const FeatureSet& test, int64_t num_classes,
                      const KnnConfig& config) {
  const torch::Tensor train_x = train.features.to(torch::kFloat64).contiguous();
  const torch::Tensor test_x = test.features.to(torch::kFloat64).contiguous();
  const auto train_a = train_x.accessor<double, 2>();
  const auto test_a = test_x.accessor<double, 2>();
  const auto train_y = train.labels.accessor<int64_t, 1>();
  const auto test_y = test.labels.accessor<int64_t, 1>();
  const int64_t n_train = train_x.size(0), n_test = test_x.size(0), dim = train_x.size(1);
  const int64_t k = std::min(config.k, n_train);

  auto norm = [dim](const auto& row) {
    double sum = 0.0;
    for (int64_t d = 0; d < dim; ++d) sum += row[d] * row[d];
    return std::sqrt(sum);
  };
  int64_t correct = 0;
  for (int64_t q = 0; q < n_test; ++q) {
    std::vector<double> cosine(n_train);
    for (int64_t i = 0; i < n_train; ++i) {
      double dot = 0.0;
      for (int64_t d = 0; d < dim; ++d) dot += test_a[q][d] * train_a[i][d];
      cosine[i] = dot / (norm(test_a[q]) * norm(train_a[i]));
    }
    std::vector<int64_t> order(n_train);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return cosine[a] > cosine[b]; });
    std::vector<double> votes(num_classes, 0.0);
    for (int64_t j = 0; j < k; ++j) {
      votes[train_y[order[j]]] += std::exp(cosine[order[j]] / config.temperature);
    }
    const auto best = std::max_element(votes.begin(), votes.end()) - votes.begin();
    correct += (best == test_y[q]) ? 1 : 0;
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n_test);
}

TEST(Knn, MatchesNaiveReference) {
  // Clustered data so that accuracy is well above chance; 700 queries span two 512-row chunks.
  const FeatureSet train = make_blobs(5, 60, 16, 0.7, /*seed=*/31);
  const FeatureSet test = make_blobs(5, 140, 16, 0.7, /*seed=*/32);
  for (const int64_t k : {1, 5, 20, 1000}) {
    KnnConfig config;
    config.k = k;
    config.temperature = 0.1;
    const double expected = naive_knn_top1(train, test, 5, config);
    EXPECT_DOUBLE_EQ(knn_top1(train, test, 5, config), expected) << "k = " << k;
    EXPECT_GT(expected, 20.0 + 10.0) << "k = " << k;  // chance is 20 %
  }
}

TEST(Knn, RejectsBadShapes) {
  const FeatureSet train = make_blobs(3, 10, 8, 5.0, /*seed=*/1);
  const FeatureSet test = make_blobs(3, 10, 8, 5.0, /*seed=*/2);
  const FeatureSet narrow_test{test.features.narrow(1, 0, 7), test.labels};
  EXPECT_THROW(knn_top1(train, narrow_test, 3, KnnConfig{}), Error);
  const FeatureSet bad_labels{test.features, test.labels + 5};
  EXPECT_THROW(knn_top1(train, bad_labels, 3, KnnConfig{}), Error);
}

}  // namespace
}  // namespace selfsup
