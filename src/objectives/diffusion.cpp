#include "selfsup/objectives/diffusion.h"

#include <cmath>

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {

torch::Tensor diffusion_alpha_bar(const DiffusionConfig& diffusion) {
  const int64_t steps = diffusion.timesteps;
  SELFSUP_CHECK(steps >= 1, "diffusion: pretext.diffusion.timesteps = ", steps,
                " must be at least 1");
  SELFSUP_CHECK(diffusion.beta_start > 0 && diffusion.beta_end < 1,
                "diffusion: the betas must lie in (0, 1), got pretext.diffusion.beta_start = ",
                diffusion.beta_start, " and beta_end = ", diffusion.beta_end);
  const auto betas =  // [T], float64
      steps == 1 ? torch::full({1}, diffusion.beta_start, torch::kDouble)
                 : torch::linspace(diffusion.beta_start, diffusion.beta_end, steps,
                                   torch::TensorOptions().dtype(torch::kDouble));
  return torch::cumprod(1.0 - betas, /*dim=*/0);
}

torch::Tensor diffuse(const torch::Tensor& x0, const torch::Tensor& eps,
                      const torch::Tensor& alpha_bar) {
  SELFSUP_CHECK(x0.dim() == 4 && eps.sizes() == x0.sizes() && alpha_bar.dim() == 1 &&
                    alpha_bar.size(0) == x0.size(0),
                "diffuse: expected x0 and eps [B, C, H, W] alike and abar [B], got ", x0.sizes(),
                ", ", eps.sizes(), " and ", alpha_bar.sizes());
  const auto abar = alpha_bar.view({-1, 1, 1, 1});  // [B, 1, 1, 1]
  return abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps;
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  SELFSUP_CHECK(t.dim() == 1 && dim >= 2,
                "timestep_embedding: expected steps [B] and a width of 2 or more, got ", t.sizes(),
                " and ", dim);
  const int64_t half = dim / 2;
  const auto options = torch::TensorOptions().dtype(torch::kDouble).device(t.device());
  // w_k = 10000^(-k / half), k = 0 .. half - 1: [half]; angles t w_k: [B, half], in float64 so
  // that steps in the thousands keep their phase.
  const auto frequencies = torch::exp(torch::arange(half, options) * (-std::log(10000.0) / half));
  const auto angles = t.to(torch::kDouble).unsqueeze(1) * frequencies.unsqueeze(0);
  auto embedding = torch::cat({angles.sin(), angles.cos()}, /*dim=*/1);
  if (dim % 2 == 1) embedding = torch::cat({embedding, torch::zeros({t.size(0), 1}, options)}, 1);
  return embedding.to(torch::kFloat);  // [B, dim]
}

TimeEmbeddingImpl::TimeEmbeddingImpl(int64_t time_dim, int64_t out_dim) : time_dim_(time_dim) {
  fc1 = register_module("fc1", torch::nn::Linear(time_dim, out_dim));
  fc2 = register_module("fc2", torch::nn::Linear(out_dim, out_dim));
}

torch::Tensor TimeEmbeddingImpl::forward(const torch::Tensor& t) {
  return fc2(torch::silu(fc1(timestep_embedding(t, time_dim_))));
}

DiffusionObjective::DiffusionObjective(const Config& config, PretextShape shape,
                                       std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  const auto& diffusion = config.pretext.diffusion;
  alpha_bar_ = register_buffer("alpha_bar", diffusion_alpha_bar(diffusion).to(torch::kFloat));
  const int64_t embedding_dim = 4 * int64_t(config.pretext.decoder_width);
  time_embedding_ =
      register_module("time_embedding", TimeEmbedding(diffusion.time_dim, embedding_dim));
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), shape.channels)
                      .cond_dim(embedding_dim),
                  norm()));
}

DiffusionBatch DiffusionObjective::prepare(const ObjectiveInput& input) const {
  const auto x0 = single_view(input);  // [B, C, side, side]
  const int64_t steps = alpha_bar_.size(0);
  DiffusionBatch batch;
  // Keyed by (seed, epoch, key) only: [B] int64 in [0, T) and [B, C, side, side].
  batch.t =
      keyed_integers(input.keys, 1, steps, config_.seed, input.epoch, PretextStream::kDiffusionTime)
          .squeeze(1)
          .to(x0.device());
  batch.eps = keyed_normal(input.keys, {shape_.channels, shape_.side, shape_.side}, config_.seed,
                           input.epoch, PretextStream::kDiffusionNoise)
                  .to(x0.device(), x0.scalar_type());
  batch.noisy = diffuse(x0, batch.eps, alpha_bar_.index_select(0, batch.t).to(x0.scalar_type()));
  return batch;
}

ObjectiveOutput DiffusionObjective::compute(const ObjectiveInput& input) {
  const auto batch = prepare(input);
  // [B, C, side, side]: the noise predicted from x_t and t.
  const auto predicted = decoder_(encoder_->forward(batch.noisy), time_embedding_(batch.t));
  ObjectiveOutput out;
  out.loss = (predicted - batch.eps).pow(2).mean();  // equal per-sample sizes: mean of means
  out.metrics["eps_mse"] = out.loss.item<double>();
  return out;
}

std::shared_ptr<Objective> make_diffusion_objective(const Config& config, PretextShape shape,
                                                    std::shared_ptr<Communicator> comm) {
  return std::make_shared<DiffusionObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
