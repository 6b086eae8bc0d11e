#include "selfsup/objectives/rotation.h"

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {

RotatedBatch rotate_batch(const torch::Tensor& images) {
  SELFSUP_CHECK(images.dim() == 4 && images.size(2) == images.size(3),
                "rotation: expected square images [B, C, H, H], got ", images.sizes());
  const int64_t batch = images.size(0);
  std::vector<torch::Tensor> rotations;
  for (int64_t k = 0; k < 4; ++k) rotations.push_back(torch::rot90(images, k, {2, 3}));
  RotatedBatch out;
  // [B, 4, C, H, W] -> [4B, C, H, W]: the four rotations of an image are neighbours.
  out.images = torch::stack(rotations, /*dim=*/1).flatten(0, 1);
  out.labels = torch::arange(4, torch::TensorOptions().dtype(torch::kLong).device(images.device()))
                   .repeat({batch});
  return out;
}

RotationObjective::RotationObjective(const Config& config, PretextShape shape,
                                     std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  head_ = register_module("head", ProjectionHead(encoder_->feature_dim(), config.model.head_hidden,
                                                 /*out_dim=*/4, norm()));
}

ObjectiveOutput RotationObjective::compute(const ObjectiveInput& input) {
  const auto images = single_view(input);  // [B, C, S, S]
  const auto rotated = rotate_batch(images);
  const auto logits = head_->forward(encoder_->forward(rotated.images));  // [4B, 4]
  return classification_output(logits, rotated.labels);
}

std::shared_ptr<Objective> make_rotation_objective(const Config& config, PretextShape shape,
                                                   std::shared_ptr<Communicator> comm) {
  return std::make_shared<RotationObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
