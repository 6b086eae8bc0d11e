#include "selfsup/objectives/pretext.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <random>

#include "pretext_parts.h"
#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/models/encoder_file.h"
#include "selfsup/train/optim.h"

namespace selfsup {

PretextObjective::PretextObjective(const Config& config, PretextShape shape,
                                   std::shared_ptr<Communicator> comm)
    : config_(config),
      shape_(shape),
      comm_(std::move(comm)),
      norm_(make_norm_factory(config.model, comm_)) {
  const auto& model = config.model;
  encoder_ = register_module("encoder", make_encoder(model, shape.channels, norm_));
  if (!model.init.empty()) {
    load_encoder_file(*encoder_, model.init, {model, shape.channels, "model.init"});
    spdlog::info("model.init: encoder weights from {}", model.init);
  }
}

torch::Tensor PretextObjective::single_view(const ObjectiveInput& input) const {
  const auto& views = input.views;
  SELFSUP_CHECK(views.dim() == 5 && views.size(0) == 1 && views.size(2) == shape_.channels &&
                    views.size(3) == shape_.side && views.size(4) == shape_.side,
                name(), ": expected views [1, B, ", shape_.channels, ", ", shape_.side, ", ",
                shape_.side, "] (augment.views = 1), got ", views.sizes());
  SELFSUP_CHECK(!input.local_views.defined(), name(),
                ": local views (augment.local_views) are for the contrastive task");
  SELFSUP_CHECK(input.keys.defined() && input.keys.numel() == views.size(1), name(),
                ": expected one key per sample (", views.size(1), "), got ",
                input.keys.defined() ? input.keys.numel() : 0);
  return views[0];
}

namespace {

// Fills [B, per_sample] from one KeyedRng per key, with `draw` giving each element.
template <typename T, typename Draw>
torch::Tensor keyed_fill(const torch::Tensor& keys, std::vector<int64_t> shape, uint64_t seed,
                         int64_t epoch, PretextStream stream, torch::ScalarType dtype, Draw draw) {
  const auto cpu_keys = keys.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t batch = cpu_keys.numel();
  int64_t per_sample = 1;
  for (const auto d : shape) per_sample *= d;
  shape.insert(shape.begin(), batch);
  auto out = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  T* data = out.data_ptr<T>();
  const int64_t* key = cpu_keys.data_ptr<int64_t>();
  for (int64_t i = 0; i < batch; ++i) {
    KeyedRng rng(seed, uint64_t(epoch), uint64_t(key[i]), uint64_t(stream));
    for (int64_t j = 0; j < per_sample; ++j) data[i * per_sample + j] = draw(rng);
  }
  return out;
}

}  // namespace

torch::Tensor keyed_normal(const torch::Tensor& keys, std::vector<int64_t> shape, uint64_t seed,
                           int64_t epoch, PretextStream stream) {
  return keyed_fill<float>(keys, std::move(shape), seed, epoch, stream, torch::kFloat,
                           [](KeyedRng& rng) {
                             return float(std::normal_distribution<double>(0.0, 1.0)(rng.engine()));
                           });
}

torch::Tensor keyed_uniform(const torch::Tensor& keys, std::vector<int64_t> shape, uint64_t seed,
                            int64_t epoch, PretextStream stream) {
  return keyed_fill<float>(keys, std::move(shape), seed, epoch, stream, torch::kFloat,
                           [](KeyedRng& rng) {
                             // [0, 1) in double may round up to 1 in float.
                             const float u = float(rng.uniform());
                             return u < 1.0f ? u : std::nextafter(1.0f, 0.0f);
                           });
}

torch::Tensor keyed_integers(const torch::Tensor& keys, int64_t count, int64_t high, uint64_t seed,
                             int64_t epoch, PretextStream stream) {
  SELFSUP_CHECK(high >= 1, "keyed_integers: high must be positive, got ", high);
  return keyed_fill<int64_t>(keys, {count}, seed, epoch, stream, torch::kLong,
                             [high](KeyedRng& rng) { return rng.integer(0, high - 1); });
}

ConvDecoderOptions image_decoder_options(const Config& config, const PretextShape& shape,
                                         int64_t feature_dim, int64_t out_channels) {
  return ConvDecoderOptions(feature_dim, out_channels, shape.side)
      .width(config.pretext.decoder_width);
}

ObjectiveOutput classification_output(const torch::Tensor& logits, const torch::Tensor& labels) {
  ObjectiveOutput out;
  out.loss = torch::nn::functional::cross_entropy(logits, labels);
  const auto correct = logits.detach().argmax(1).eq(labels);
  out.metrics["accuracy"] = correct.to(torch::kDouble).mean().item<double>();
  return out;
}

bool step_own_network(GradientReducer& reducer, const std::vector<torch::Tensor>& parameters,
                      torch::optim::Optimizer& optimizer, double lr, const std::string& who) {
  reducer.reduce();
  std::vector<torch::Tensor> sums;
  for (const auto& p : parameters)
    if (p.grad().defined()) sums.push_back(p.grad().sum());
  const bool finite = sums.empty() || std::isfinite(torch::stack(sums).sum().item<double>());
  if (!finite) {
    spdlog::warn("{}'s gradient is not finite; its step is skipped", who);
    return false;
  }
  set_learning_rate(optimizer, lr);
  optimizer.step();
  return true;
}

}  // namespace selfsup
