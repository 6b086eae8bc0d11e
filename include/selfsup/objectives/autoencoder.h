#pragma once
// Autoencoders: the encoder reads a view, plain or corrupted (denoising autoencoder, Vincent et
// al., 2008: additive Gaussian noise or masked pixels), and a decoder reconstructs the clean view
// (L2).

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// The encoder's input for `views` [B, C, H, W] with `keys` [B]: the views themselves for noise
/// "none"; views + sigma * N(0, 1) for "gaussian"; for "mask", every pixel (all its channels
/// together) set to 0 with probability mask_prob. The draws come from (seed, epoch, keys[i]) only
/// (stream kAutoencoderNoise), on the views' device.
torch::Tensor autoencoder_corrupt(const torch::Tensor& views, const torch::Tensor& keys,
                                  const AutoencoderConfig& autoencoder, uint64_t seed,
                                  int64_t epoch);

/// Metrics: "mse" (the loss: reconstruction against the clean view, normalised units) and
/// "input_mse" (the corrupted input against the clean view: 0 for a plain autoencoder, the level a
/// denoiser must beat otherwise).
class AutoencoderObjective : public PretextObjective {
 public:
  AutoencoderObjective(const Config& config, PretextShape shape,
                       std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  /// What the encoder reads: autoencoder_corrupt of the views, keyed by the config's seed and
  /// input.epoch and input.keys.
  torch::Tensor encoder_input(const ObjectiveInput& input) const;

 private:
  ConvDecoder decoder_{nullptr};  // features [B, F] -> the view [B, C, side, side]
};

}  // namespace selfsup
