#pragma once
// The decoder of the encoder-decoder pretext tasks (in-painting, super-resolution, autoencoders,
// colorization, diffusion) and the GAN's generator: a feature vector back to an image-sized map.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "selfsup/models/encoder.h"

namespace selfsup {

struct ConvDecoderOptions {
  ConvDecoderOptions(int64_t in_dim, int64_t out_channels, int64_t side)
      : in_dim_(in_dim), out_channels_(out_channels), side_(side) {}
  TORCH_ARG(int64_t, in_dim);        // features in: [B, in_dim]
  TORCH_ARG(int64_t, out_channels);  // channels out: [B, out_channels, side, side]
  TORCH_ARG(int64_t, side);          // output side, pixels
  TORCH_ARG(int64_t, width) = 64;    // channels of every stage
  TORCH_ARG(int64_t, cond_dim) = 0;  // conditioning vector [B, cond_dim], projected and added to
                                     // every stage after its norm
                                     // (diffusion's timestep embedding); 0 = none
};

/// Linear -> [width, s0, s0] -> norm, ReLU -> k stages of (nearest 2x upsampling, 3x3 conv, norm,
/// + condition, ReLU) -> bilinear resize to `side` when 2^k s0 differs -> 3x3 conv to
/// `out_channels` (no activation: targets are normalised pixels, noise or logits). k >= 2 is the
/// smallest with s0 = ceil(side / 2^k) <= 8.
class ConvDecoderImpl : public torch::nn::Module {
 public:
  ConvDecoderImpl(const ConvDecoderOptions& options, const NormFactory& norm);
  /// x [B, in_dim] (and cond [B, cond_dim] when cond_dim > 0) -> [B, out_channels, side, side].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cond = {});

 private:
  ConvDecoderOptions options_;
  int64_t start_side_ = 0;
  torch::nn::Linear fc{nullptr};
  torch::nn::AnyModule fc_norm;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::AnyModule> norms_;
  std::vector<torch::nn::Linear> conds_;
  torch::nn::Conv2d out{nullptr};
};
TORCH_MODULE(ConvDecoder);

}  // namespace selfsup
