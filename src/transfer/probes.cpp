// Downstream probes on frozen features.
//
// The linear probe computes the softmax cross-entropy gradient in closed form and applies Adam by
// hand, all under NoGradGuard: for a single linear layer this is what autograd would do, without
// building a graph per step, and it keeps every random choice (the shuffle) on one seeded
// generator.

#include "selfsup/transfer/probes.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// Rows per chunk when scoring or searching neighbours: bounds the [chunk, num_classes] logits and
// the [chunk, N_train] similarity matrix (512 x 60000 float32 = 123 MB).
constexpr int64_t kEvalChunk = 4096;
constexpr int64_t kKnnChunk = 512;

// Adam's moment decay rates and denominator epsilon (the PyTorch defaults).
constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEps = 1e-8;

constexpr double kPi = 3.14159265358979323846;

// A feature whose training standard deviation is below this fraction of the largest one is taken
// as constant: it carries no information and is dropped (scaled by 0) rather than blown up by 1/std
// on the test split. Relative, so that multiplying all features by a constant changes nothing.
constexpr double kConstantFeatureRatio = 1e-6;

// The probe's shuffling stream, derived from the run seed so that it does not replay a stream
// another part of the run draws from the same seed.
constexpr uint64_t kProbeStream = 0x70726F6265ULL;  // "probe"
uint64_t derive_seed(uint64_t seed) { return splitmix64(seed + kProbeStream); }

// Adam's first and second moment estimates for one parameter tensor.
struct AdamState {
  explicit AdamState(const torch::Tensor& param)
      : first_moment(torch::zeros_like(param)), second_moment(torch::zeros_like(param)) {}
  torch::Tensor first_moment;   // same shape as the parameter
  torch::Tensor second_moment;  // same shape as the parameter
};

// One Adam update with bias correction (step counts from 1), in place on a contiguous float32
// parameter; a serial loop over the (small) parameter tensor.
void adam_step_(torch::Tensor& param, const torch::Tensor& grad, AdamState& state, double lr,
                int64_t step) {
  const double correction1 = 1.0 - std::pow(kAdamBeta1, static_cast<double>(step));
  const double correction2 = 1.0 - std::pow(kAdamBeta2, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / correction1);
  const float inv_sqrt_correction2 = static_cast<float>(1.0 / std::sqrt(correction2));
  const float beta1 = kAdamBeta1, beta2 = kAdamBeta2, eps = kAdamEps;
  const torch::Tensor grad_c = grad.contiguous();
  float* const p = param.data_ptr<float>();
  const float* const g = grad_c.data_ptr<float>();
  float* const m = state.first_moment.data_ptr<float>();
  float* const v = state.second_moment.data_ptr<float>();
  const int64_t size = param.numel();
  for (int64_t i = 0; i < size; ++i) {
    m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_correction2 + eps);
  }
}

// Turns contiguous float32 logits [B, C] in place into d(mean cross-entropy)/d(logits) =
// (softmax - one_hot(labels)) / B, and writes its column sums (the bias gradient, [C]) to
// `grad_bias`.
void cross_entropy_grad_(torch::Tensor& logits, const int64_t* labels, torch::Tensor& grad_bias) {
  const int64_t rows = logits.size(0);
  const int64_t classes = logits.size(1);
  const float inv_rows = 1.0f / static_cast<float>(rows);
  float* const data = logits.data_ptr<float>();
  float* const bias_data = grad_bias.data_ptr<float>();
  std::fill(bias_data, bias_data + classes, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* const row = data + r * classes;
    const float row_max = *std::max_element(row, row + classes);
    float sum = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
      row[c] = std::exp(row[c] - row_max);
      sum += row[c];
    }
    const float scale = inv_rows / sum;
    for (int64_t c = 0; c < classes; ++c) row[c] *= scale;
    row[labels[r]] -= inv_rows;
    for (int64_t c = 0; c < classes; ++c) bias_data[c] += row[c];
  }
}

// Checks one split: [N, D] floating features, [N] int64 labels in [0, num_classes).
void check_split(const FeatureSet& split, const char* name, int64_t num_classes) {
  SELFSUP_CHECK(split.features.defined() && split.labels.defined(), name,
                " split: features and labels must both be set");
  SELFSUP_CHECK(split.features.dim() == 2, name, " features: expected a 2-D [N, D] tensor, got ",
                split.features.dim(), "-D ", split.features.sizes());
  SELFSUP_CHECK(split.features.is_floating_point(), name,
                " features: expected a floating-point tensor, got ", split.features.scalar_type());
  SELFSUP_CHECK(split.labels.dim() == 1, name, " labels: expected a 1-D [N] tensor, got ",
                split.labels.dim(), "-D ", split.labels.sizes());
  SELFSUP_CHECK(split.labels.scalar_type() == torch::kInt64, name, " labels: expected int64, got ",
                split.labels.scalar_type());
  SELFSUP_CHECK(split.features.size(0) == split.labels.size(0), name,
                " split: ", split.features.size(0), " feature rows but ", split.labels.size(0),
                " labels; they must match");
  SELFSUP_CHECK(split.features.size(0) > 0, name, " split is empty; need at least one example");
  const int64_t min_label = split.labels.min().item<int64_t>();
  const int64_t max_label = split.labels.max().item<int64_t>();
  SELFSUP_CHECK(min_label >= 0 && max_label < num_classes, name, " labels: range [", min_label,
                ", ", max_label, "] is outside [0, ", num_classes,
                "); check num_classes or the labels");
}

void check_pair(const FeatureSet& train, const FeatureSet& test, int64_t num_classes) {
  SELFSUP_CHECK(num_classes >= 1, "num_classes must be at least 1, got ", num_classes);
  check_split(train, "train", num_classes);
  check_split(test, "test", num_classes);
  SELFSUP_CHECK(train.features.size(1) == test.features.size(1),
                "feature dimension differs: train ", train.features.size(1), ", test ",
                test.features.size(1), "; both splits must come from the same encoder");
}

// Percentage of rows whose arg-max logit equals the label; `logits_of` maps a [rows, D] chunk of
// features to [rows, C] logits.
template <typename LogitsFn>
double top1_percent(const torch::Tensor& features, const torch::Tensor& labels,
                    LogitsFn logits_of) {
  const int64_t n = features.size(0);
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += kEvalChunk) {
    const int64_t len = std::min(kEvalChunk, n - start);
    const torch::Tensor predicted = logits_of(features.narrow(0, start, len)).argmax(1);
    correct += predicted.eq(labels.narrow(0, start, len)).sum().item<int64_t>();
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

// Linear probe. Uses every field of LinearProbeConfig:
//   epochs        passes over the shuffled training features;
//   batch_size    rows per Adam step (clipped to N_train; the last, partial batch is kept);
//   lr            peak Adam learning rate, cosine-decayed per step to 0 over epochs * steps/epoch;
//   weight_decay  coefficient of the penalty weight_decay * ||W||^2 (weights only, not the bias),
//                 added to the mean cross-entropy.
//
// Only the two matrix products of a step go through LibTorch (BLAS). The row gather, the softmax
// and Adam are plain serial loops: LibTorch 1.13 opens an OpenMP region for element-wise ops such
// as exp and sqrt from 2048 elements, and on cores shared with other processes every such region
// can wait a scheduler time slice for a spinning worker; with ~2000 steps that made the probe 5x
// slower (49 s instead of 9 s for Fashion-MNIST pixels on 2 busy cores).
ProbeResult linear_probe(const FeatureSet& train, const FeatureSet& test, int64_t num_classes,
                         const LinearProbeConfig& config, uint64_t seed) {
  check_pair(train, test, num_classes);
  SELFSUP_CHECK(config.epochs >= 1, "linear probe: epochs must be >= 1, got ", config.epochs);
  SELFSUP_CHECK(config.batch_size >= 1, "linear probe: batch_size must be >= 1, got ",
                config.batch_size);
  torch::NoGradGuard no_grad;

  const auto float_cpu = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  const torch::Tensor train_x = train.features.to(float_cpu);               // [N, D]
  const torch::Tensor train_y = train.labels.to(torch::kCPU).contiguous();  // [N]
  const int64_t n = train_x.size(0);
  const int64_t dim = train_x.size(1);

  // Standardise with the training split's statistics: [D] mean and [D] 1/std (0 for constant
  // features). One standardised copy of the training features makes each step a plain row copy.
  const auto [std_dev, mean] = torch::std_mean(train_x, /*dim=*/{0}, /*unbiased=*/false);
  const double max_std = std_dev.max().item<double>();
  const torch::Tensor inv_std = torch::where(std_dev > kConstantFeatureRatio * max_std,
                                             std_dev.reciprocal(), torch::zeros_like(std_dev));
  const torch::Tensor train_z = (train_x - mean).mul_(inv_std).contiguous();  // [N, D]
  auto standardise = [&](const torch::Tensor& x) { return (x.to(float_cpu) - mean) * inv_std; };

  // Zero initialisation: the problem is convex, so this loses nothing, draws no random numbers, and
  // keeps the weights of dropped (constant) features at exactly 0.
  torch::Tensor weight = torch::zeros({num_classes, dim}, float_cpu);  // [C, D]
  torch::Tensor bias = torch::zeros({num_classes}, float_cpu);         // [C]
  torch::Tensor grad_bias = torch::zeros_like(bias);                   // [C]
  AdamState weight_state(weight), bias_state(bias);

  const int64_t batch_size = std::min(config.batch_size, n);
  const int64_t steps_per_epoch = (n + batch_size - 1) / batch_size;
  const int64_t total_steps = config.epochs * steps_per_epoch;
  torch::Generator generator = at::detail::createCPUGenerator(derive_seed(seed));

  // Batch buffers reused across steps: a fresh [B, D] tensor per step costs page faults (slow under
  // virtualisation), and the copied batch stays in cache for the two products that read it.
  torch::Tensor batch_x = torch::empty({batch_size, dim}, float_cpu);  // [B, D]
  torch::Tensor batch_y = torch::empty({batch_size}, torch::kInt64);   // [B]
  const float* const train_z_data = train_z.data_ptr<float>();
  const int64_t* const train_y_data = train_y.data_ptr<int64_t>();
  float* const batch_x_data = batch_x.data_ptr<float>();
  int64_t* const batch_y_data = batch_y.data_ptr<int64_t>();

  int64_t step = 0;
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    const torch::Tensor order = torch::randperm(n, generator, torch::kInt64);  // [N]
    const int64_t* const order_data = order.data_ptr<int64_t>();
    for (int64_t start = 0; start < n; start += batch_size, ++step) {
      const int64_t len = std::min(batch_size, n - start);
      for (int64_t row = 0; row < len; ++row) {
        const int64_t source = order_data[start + row];
        std::memcpy(batch_x_data + row * dim, train_z_data + source * dim, dim * sizeof(float));
        batch_y_data[row] = train_y_data[source];
      }
      const torch::Tensor x = batch_x.narrow(0, 0, len);  // [len, D]

      // [len, C]: the logits, then overwritten by their gradient.
      torch::Tensor grad_logits = torch::addmm(bias, x, weight.t());
      cross_entropy_grad_(grad_logits, batch_y_data, grad_bias);
      // [C, D]: data term plus the gradient 2 * wd * W of the penalty on the weights.
      const torch::Tensor grad_weight =
          torch::addmm(weight, grad_logits.t(), x, /*beta=*/2.0 * config.weight_decay);

      // The cosine schedule goes from lr at step 0 towards 0 at total_steps.
      const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
      const double lr = 0.5 * config.lr * (1.0 + std::cos(kPi * progress));
      adam_step_(weight, grad_weight, weight_state, lr, step + 1);
      adam_step_(bias, grad_bias, bias_state, lr, step + 1);
    }
  }

  const torch::Tensor weight_t = weight.t().contiguous();  // [D, C]
  ProbeResult result;
  result.train_top1 = top1_percent(
      train_z, train_y, [&](const torch::Tensor& z) { return torch::addmm(bias, z, weight_t); });
  result.top1 = top1_percent(
      test.features, test.labels.to(torch::kCPU),
      [&](const torch::Tensor& x) { return torch::addmm(bias, standardise(x), weight_t); });
  return result;
}

double knn_top1(const FeatureSet& train, const FeatureSet& test, int64_t num_classes,
                const KnnConfig& config) {
  check_pair(train, test, num_classes);
  SELFSUP_CHECK(config.k >= 1, "kNN: k must be >= 1, got ", config.k);
  SELFSUP_CHECK(config.temperature > 0.0, "kNN: temperature must be > 0, got ", config.temperature);
  torch::NoGradGuard no_grad;

  const auto float_cpu = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  // Cosine similarity as a dot product of L2-normalised rows (zero rows stay zero).
  auto normalise = [&](const torch::Tensor& x) {
    const torch::Tensor f = x.to(float_cpu);
    return f / f.norm(2, /*dim=*/{1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  const torch::Tensor train_unit = normalise(train.features);  // [N_train, D], unit rows
  const torch::Tensor train_y = train.labels.to(torch::kCPU);  // [N_train]
  const torch::Tensor test_y = test.labels.to(torch::kCPU);    // [N_test]
  const int64_t k = std::min(config.k, train_y.size(0));
  const int64_t n_test = test.features.size(0);

  int64_t correct = 0;
  for (int64_t start = 0; start < n_test; start += kKnnChunk) {
    const int64_t len = std::min(kKnnChunk, n_test - start);
    const torch::Tensor query = normalise(test.features.narrow(0, start, len));  // [B, D]
    // BLAS reads the transpose in place, as fast as a transposed copy and without its memory.
    const torch::Tensor similarity = query.mm(train_unit.t());               // [B, N_train]
    const auto [top_similarity, top_index] = similarity.topk(k, /*dim=*/1);  // [B, k] each
    const torch::Tensor neighbour_labels =
        train_y.index_select(0, top_index.reshape(-1)).view({len, k});  // [B, k]
    // exp(s / T) relative to the row's nearest neighbour (column 0 of the sorted top-k): the same
    // vote up to a per-row factor, without overflow at small temperatures.
    const torch::Tensor weights =
        ((top_similarity - top_similarity.narrow(1, 0, 1)) / config.temperature).exp_();  // [B, k]
    const torch::Tensor votes =
        torch::zeros({len, num_classes}, float_cpu).scatter_add_(1, neighbour_labels, weights);
    correct += votes.argmax(1).eq(test_y.narrow(0, start, len)).sum().item<int64_t>();
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n_test);
}

}  // namespace selfsup
