#include "selfsup/objectives/inpainting.h"

#include <cmath>

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {

int64_t inpainting_hole_side(const InpaintingConfig& inpainting, int64_t side) {
  return int64_t(std::lround(inpainting.size * double(side)));
}

torch::Tensor inpainting_mask(const torch::Tensor& keys, const InpaintingConfig& inpainting,
                              int64_t side, uint64_t seed, int64_t epoch) {
  const int64_t hole = inpainting_hole_side(inpainting, side);
  SELFSUP_CHECK(hole >= 1 && hole < side, "inpainting: pretext.inpainting.size = ", inpainting.size,
                " gives a hole of ", hole, " px in views of ", side,
                " px; choose a size that leaves both a hole and some context");
  const int64_t batch = keys.numel();
  torch::Tensor corners;  // [B, 2] int64: (top, left) of each hole
  if (inpainting.mask == "random") {
    corners = keyed_integers(keys, 2, side - hole + 1, seed, epoch, PretextStream::kInpaintingMask);
  } else {
    SELFSUP_CHECK(inpainting.mask == "center", "inpainting: pretext.inpainting.mask = \"",
                  inpainting.mask, "\" is unknown; use \"center\" or \"random\"");
    corners = torch::full({batch, 2}, (side - hole) / 2, torch::kLong);
  }
  const auto pixels = torch::arange(side, torch::kLong).unsqueeze(0);  // [1, side]
  auto inside = [&](int64_t axis) {                                    // [B, side] bool
    const auto start = corners.select(1, axis).unsqueeze(1);
    return (pixels >= start) & (pixels < start + hole);
  };
  // [B, side, 1] & [B, 1, side] -> [B, 1, side, side]
  return (inside(0).unsqueeze(2) & inside(1).unsqueeze(1)).unsqueeze(1).to(torch::kFloat);
}

torch::Tensor masked_mse(const torch::Tensor& prediction, const torch::Tensor& target,
                         const torch::Tensor& mask) {
  SELFSUP_CHECK(prediction.sizes() == target.sizes() && prediction.dim() == 4,
                "masked_mse: prediction and target must be [B, C, H, W] alike, got ",
                prediction.sizes(), " and ", target.sizes());
  SELFSUP_CHECK(mask.dim() == 4 && mask.size(0) == prediction.size(0) && mask.size(1) == 1 &&
                    mask.size(2) == prediction.size(2) && mask.size(3) == prediction.size(3),
                "masked_mse: expected a mask [", prediction.size(0), ", 1, ", prediction.size(2),
                ", ", prediction.size(3), "], got ", mask.sizes());
  const auto weight = mask.to(prediction.dtype());
  // [B]: squared error summed over the masked pixels and channels, and how many terms it holds.
  const auto squared = ((prediction - target).pow(2) * weight).sum({1, 2, 3});
  const auto terms = weight.sum({1, 2, 3}) * double(prediction.size(1));
  SELFSUP_CHECK(terms.min().item<double>() > 0, "masked_mse: a sample has an empty mask");
  return (squared / terms).mean();
}

InpaintingObjective::InpaintingObjective(const Config& config, PretextShape shape,
                                         std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), shape.channels),
                  norm()));
}

InpaintingBatch InpaintingObjective::prepare(const ObjectiveInput& input) const {
  InpaintingBatch batch;
  batch.target = single_view(input);
  batch.mask = inpainting_mask(input.keys, config_.pretext.inpainting, shape_.side, config_.seed,
                               input.epoch)
                   .to(batch.target.device());
  // The hole at the mean (0 after normalisation); the rest untouched.
  batch.context = batch.target.masked_fill(batch.mask.to(torch::kBool), 0.0);
  return batch;
}

ObjectiveOutput InpaintingObjective::compute(const ObjectiveInput& input) {
  const auto batch = prepare(input);
  const auto reconstruction = decoder_(encoder_->forward(batch.context));  // [B, C, side, side]
  ObjectiveOutput out;
  out.loss = masked_mse(reconstruction, batch.target, batch.mask);
  torch::NoGradGuard no_grad;
  out.metrics["hole_mse"] = out.loss.item<double>();
  out.metrics["context_mse"] =
      masked_mse(reconstruction, batch.target, 1.0 - batch.mask).item<double>();
  return out;
}

std::shared_ptr<Objective> make_inpainting_objective(const Config& config, PretextShape shape,
                                                     std::shared_ptr<Communicator> comm) {
  return std::make_shared<InpaintingObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
