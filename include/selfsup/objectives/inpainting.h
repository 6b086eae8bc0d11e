#pragma once
// In-painting (the context encoder of Pathak et al., 2016, without its adversarial term): a square
// hole of each view is set to 0 (the mean after normalisation), the encoder reads what is left, a
// decoder reconstructs the whole view, and the loss is L2 on the hole's pixels only.

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// Side of the square hole, pixels: round(size * side), as check_pretext_fit counts it.
int64_t inpainting_hole_side(const InpaintingConfig& inpainting, int64_t side);

/// The holes of a batch: [B, 1, side, side] float, 1 inside the hole of sample i and 0 elsewhere.
/// "center": the hole's top-left corner is at ((side - hole) / 2, (side - hole) / 2), rounded
/// down; "random": anywhere inside the view, drawn from (seed, epoch, keys[i]) only.
torch::Tensor inpainting_mask(const torch::Tensor& keys, const InpaintingConfig& inpainting,
                              int64_t side, uint64_t seed, int64_t epoch);

/// The loss: per sample, the mean of (prediction - target)^2 over the hole's pixels and all
/// channels; then the mean over samples. prediction, target [B, C, H, W]; mask [B, 1, H, W] (1 in
/// the hole). Pixels outside the hole get no gradient.
torch::Tensor masked_mse(const torch::Tensor& prediction, const torch::Tensor& target,
                         const torch::Tensor& mask);

/// One step's tensors.
struct InpaintingBatch {
  torch::Tensor mask;  // [B, 1, side, side] float: 1 in the hole
  torch::Tensor
      context;           // [B, C, side, side]: the views with the hole at 0, what the encoder reads
  torch::Tensor target;  // [B, C, side, side]: the views, what the decoder reconstructs
};

/// Metrics: "hole_mse" (the loss) and "context_mse" (the same error outside the hole, not in the
/// loss: how well the decoder copies what the encoder saw).
class InpaintingObjective : public PretextObjective {
 public:
  InpaintingObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  /// The holes of `input` (keyed by config seed, input.epoch and input.keys) and the encoder's
  /// input, as compute makes them.
  InpaintingBatch prepare(const ObjectiveInput& input) const;

 private:
  ConvDecoder decoder_{nullptr};  // features [B, F] -> the view [B, C, side, side]
};

}  // namespace selfsup
