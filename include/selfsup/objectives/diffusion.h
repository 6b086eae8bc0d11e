#pragma once
// Denoising diffusion (DDPM, Ho et al., 2020) as a pretext task: a view x_0 is noised to
// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at a random step t, the encoder reads x_t (the
// part that transfers), and a decoder conditioned on an embedding of t predicts eps (L2).

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// The linear schedule's cumulative products, float64 [T]: beta_t runs linearly from beta_start
/// (index 0, the step t = 1 of the paper) to beta_end (index T - 1), and abar[i] = prod_{s <= i}
/// (1 - beta_s). With one step, beta = beta_start.
torch::Tensor diffusion_alpha_bar(const DiffusionConfig& diffusion);

/// The forward process: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, with x_0 and eps [B, C, H, W]
/// and abar [B] (one step per sample).
torch::Tensor diffuse(const torch::Tensor& x0, const torch::Tensor& eps,
                      const torch::Tensor& alpha_bar);

/// Sinusoidal embedding of the steps t [B] (any numeric type) of width `dim`, as in the
/// Transformer's positional encoding, laid out in halves as in DDPM: column k < dim / 2 holds
/// sin(t w_k) and column dim / 2 + k holds cos(t w_k), w_k = 10000^(-k / (dim / 2)); an odd
/// `dim` ends with a column of zeros. float32 [B, dim].
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

/// The timestep MLP: sinusoidal embedding of width time_dim -> Linear -> SiLU -> Linear to
/// out_dim, which conditions the decoder (ConvDecoderOptions::cond_dim).
class TimeEmbeddingImpl : public torch::nn::Module {
 public:
  TimeEmbeddingImpl(int64_t time_dim, int64_t out_dim);
  /// t [B] -> [B, out_dim].
  torch::Tensor forward(const torch::Tensor& t);

 private:
  int64_t time_dim_;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(TimeEmbedding);

/// One step's draws and the encoder's input.
struct DiffusionBatch {
  torch::Tensor t;      // [B] int64 in [0, T): the step of each sample
  torch::Tensor eps;    // [B, C, side, side]: the noise, what the decoder predicts
  torch::Tensor noisy;  // [B, C, side, side]: x_t, what the encoder reads
};

/// Per sample, t uniform in [0, T) (stream kDiffusionTime) and eps ~ N(0, I) (kDiffusionNoise),
/// both keyed by (seed, epoch, key). Submodules: "encoder", "time_embedding" (width 4 x
/// decoder_width, as DDPM's 4 x base channels), "decoder"; buffer "alpha_bar" [T] (float32,
/// computed in float64). Metric "eps_mse" (the loss).
class DiffusionObjective : public PretextObjective {
 public:
  DiffusionObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  /// The draws of `input` (keyed by the config's seed, input.epoch and input.keys) and x_t, as
  /// compute makes them.
  DiffusionBatch prepare(const ObjectiveInput& input) const;
  /// abar of every step, float32 [T].
  const torch::Tensor& alpha_bar() const { return alpha_bar_; }

 private:
  torch::Tensor alpha_bar_;
  TimeEmbedding time_embedding_{nullptr};
  ConvDecoder decoder_{nullptr};  // features [B, F] + time [B, E] -> eps [B, C, side, side]
};

}  // namespace selfsup
