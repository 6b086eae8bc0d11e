#pragma once
// Rotation prediction (Gidaris et al., 2018): every view is shown to the encoder at 0, 90, 180
// and 270 degrees, and a classifier on its features says which rotation it saw.

#include <torch/torch.h>

#include <memory>

#include "selfsup/models/encoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// The four rotations of a batch and what the classifier must answer.
struct RotatedBatch {
  // [4B, C, H, W]: row 4b + k holds image b rotated by k * 90 degrees counter-clockwise
  // (torch::rot90(image, k, {2, 3}): pixel (i, j) of a W-wide image moves to (W - 1 - j, i)).
  torch::Tensor images;
  torch::Tensor labels;  // [4B] int64: k of every row
};

/// Rotates every image of `images` [B, C, H, W] (H == W) by 0, 90, 180 and 270 degrees. No
/// randomness: all four rotations of every image.
RotatedBatch rotate_batch(const torch::Tensor& images);

/// Rotation prediction: encoder -> ProjectionHead(feature_dim, model.head_hidden, 4) over the 4B
/// rotated views in one batch; the loss is the cross-entropy, mean over the 4B predictions (so
/// over this rank's samples). Metric "accuracy": the fraction of the 4B rotations guessed right.
class RotationObjective : public PretextObjective {
 public:
  RotationObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;

 private:
  ProjectionHead head_{nullptr};
};

}  // namespace selfsup
