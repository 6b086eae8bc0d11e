#pragma once
// Super-resolution: each view is downsampled by an integer factor (area average) and brought back
// to full size (bilinear), so that the encoder reads full-size but blurred images, as it will read
// full-size images at transfer; a decoder reconstructs the full-resolution view (L2).

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// Area downsampling: each factor x factor block of `images` [B, C, H, W] becomes its mean,
/// [B, C, H / factor, W / factor]. `factor` must divide H and W.
torch::Tensor area_downsample(const torch::Tensor& images, int64_t factor);

/// Bilinear resize of `images` [B, C, h, w] to [B, C, side, side] with half-pixel centres
/// (align_corners = false: output pixel x samples input coordinate (x + 0.5) h / side - 0.5,
/// clamped at the border).
torch::Tensor bilinear_upsample(const torch::Tensor& images, int64_t side);

/// Peak signal-to-noise ratio of `prediction` against `target` [B, C, H, W], both normalised by
/// (pixel - mean[c]) / std[c] with pixels in [0, 1]: the error is brought back to pixel units
/// (times std[c]) and PSNR = 10 log10(1 / mse) dB per sample (mse clamped at 1e-10, so at most
/// 100 dB), averaged over samples. `pixel_std` (augment.std) holds one value or one per channel.
double psnr_db(const torch::Tensor& prediction, const torch::Tensor& target,
               const std::vector<double>& pixel_std);

/// Metrics: "mse" (the loss, normalised units), "psnr" (of the reconstruction, psnr_db) and the
/// baseline of the blurred input itself, "bilinear_mse" and "bilinear_psnr": a decoder that
/// learns something beats them.
class SuperResolutionObjective : public PretextObjective {
 public:
  SuperResolutionObjective(const Config& config, PretextShape shape,
                           std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  /// What the encoder reads: the views area-downsampled by the factor and bilinearly upsampled
  /// back, [B, C, side, side].
  torch::Tensor encoder_input(const ObjectiveInput& input) const;

 private:
  ConvDecoder decoder_{nullptr};  // features [B, F] -> the view [B, C, side, side]
};

}  // namespace selfsup
