#pragma once
// Colorization (Zhang et al., 2016; Larsson et al., 2016): the encoder sees the luminance of an
// RGB view as a gray image, and a decoder predicts the view's colours as the a and b channels of
// CIE Lab, per pixel.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// Half the side of the (a, b) square that colorization predicts in: a, b in [-kAbRange,
/// kAbRange] (the sRGB gamut spans about a in [-86, 98], b in [-108, 95]).
constexpr double kAbRange = 110.0;

/// sRGB in [0, 1] (values outside are clamped) -> CIE Lab under the D65 white: sRGB companding
/// undone, linear RGB -> XYZ (the sRGB primaries' matrix), XYZ / white -> Lab. L in [0, 100].
/// [B, 3, H, W] floating -> [B, 3, H, W] (L, a, b) of the same dtype.
torch::Tensor rgb_to_lab(const torch::Tensor& rgb);

/// The class of each pixel's colour: a and b each quantised into `bins` equal cells of
/// [-kAbRange, kAbRange] (values outside go to the edge cells), class = a_cell * bins + b_cell.
/// ab [B, 2, H, W] -> [B, H, W] int64 in [0, bins^2).
torch::Tensor ab_to_bins(const torch::Tensor& ab, int64_t bins);

/// What colorization trains on.
struct ColorizationBatch {
  // [B, 3, H, W]: the encoder's input, L / 100 as a gray image (the same in the three channels)
  // normalised with augment.mean and augment.std like the views.
  torch::Tensor input;
  torch::Tensor lab;  // [B, 3, H, W]: the views' CIE Lab colours (targets: channels 1 and 2)
};

/// The encoder input and the targets of `views` [B, 3, H, W], RGB normalised with `augment`.mean
/// and .std (1 or 3 values each): de-normalised to [0, 1], converted to Lab.
ColorizationBatch colorization_batch(const torch::Tensor& views, const AugmentConfig& augment);

/// Colorization: gray input -> encoder -> ConvDecoder(feature_dim, out, side).width(
/// pretext.decoder_width) -> per pixel, with pretext.colorization.target =
///   "bins": logits over bins x bins (a, b) cells; cross-entropy, mean over pixels and samples;
///           metric "accuracy" (pixels whose most likely cell is right);
///   "regression": (a, b) / kAbRange; squared error, mean; metric "ab_rmse" (in Lab units).
/// RGB views only. The encoder keeps 3 input channels, so the transfer stage can feed it colour.
class ColorizationObjective : public PretextObjective {
 public:
  ColorizationObjective(const Config& config, PretextShape shape,
                        std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;

 private:
  ColorizationConfig colorization_;
  ConvDecoder decoder_{nullptr};
};

}  // namespace selfsup
