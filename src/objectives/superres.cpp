#include "selfsup/objectives/superres.h"

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {

namespace F = torch::nn::functional;

torch::Tensor area_downsample(const torch::Tensor& images, int64_t factor) {
  SELFSUP_CHECK(images.dim() == 4 && factor >= 1 && images.size(2) % factor == 0 &&
                    images.size(3) % factor == 0,
                "area_downsample: expected [B, C, H, W] with H and W multiples of the factor ",
                factor, ", got ", images.sizes());
  return F::avg_pool2d(images, F::AvgPool2dFuncOptions(factor).stride(factor));
}

torch::Tensor bilinear_upsample(const torch::Tensor& images, int64_t side) {
  SELFSUP_CHECK(images.dim() == 4 && side >= 1, "bilinear_upsample: expected [B, C, h, w], got ",
                images.sizes());
  return F::interpolate(images, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{side, side})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

double psnr_db(const torch::Tensor& prediction, const torch::Tensor& target,
               const std::vector<double>& pixel_std) {
  const int64_t channels = prediction.size(1);
  SELFSUP_CHECK(prediction.sizes() == target.sizes() && prediction.dim() == 4,
                "psnr_db: prediction and target must be [B, C, H, W] alike, got ",
                prediction.sizes(), " and ", target.sizes());
  SELFSUP_CHECK(pixel_std.size() == 1 || int64_t(pixel_std.size()) == channels,
                "psnr_db: ", pixel_std.size(), " standard deviations (augment.std) for ", channels,
                " channels; give one, or one per channel");
  torch::NoGradGuard no_grad;
  // [1, C, 1, 1]: normalised units -> pixel units.
  auto scale = torch::tensor(pixel_std, torch::kDouble).to(prediction.device());
  scale = (pixel_std.size() == 1 ? scale.expand({channels}) : scale).reshape({1, channels, 1, 1});
  const auto error = (prediction.detach().to(torch::kDouble) - target.to(torch::kDouble)) * scale;
  const auto mse = error.pow(2).mean({1, 2, 3}).clamp_min(1e-10);  // [B]
  return (-10.0 * mse.log10()).mean().item<double>();
}

SuperResolutionObjective::SuperResolutionObjective(const Config& config, PretextShape shape,
                                                   std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  const int64_t factor = config.pretext.superres.factor;
  SELFSUP_CHECK(factor >= 2 && shape.side % factor == 0,
                "superres: pretext.superres.factor = ", factor,
                " must divide the side of the views (", shape.side,
                " px); set augment.size to a multiple of it");
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), shape.channels),
                  norm()));
}

torch::Tensor SuperResolutionObjective::encoder_input(const ObjectiveInput& input) const {
  // [B, C, side, side] -> [B, C, side / factor, side / factor] -> [B, C, side, side], blurred.
  // No randomness.
  return bilinear_upsample(area_downsample(single_view(input), config_.pretext.superres.factor),
                           shape_.side);
}

ObjectiveOutput SuperResolutionObjective::compute(const ObjectiveInput& input) {
  const auto views = single_view(input);  // [B, C, side, side]
  const auto blurred = encoder_input(input);
  const auto reconstruction = decoder_(encoder_->forward(blurred));  // [B, C, side, side]
  ObjectiveOutput out;
  out.loss = (reconstruction - views).pow(2).mean();  // equal per-sample sizes: mean of means
  torch::NoGradGuard no_grad;
  const auto& pixel_std = config_.augment.std;
  out.metrics["mse"] = out.loss.item<double>();
  out.metrics["psnr"] = psnr_db(reconstruction, views, pixel_std);
  out.metrics["bilinear_mse"] = (blurred - views).pow(2).mean().item<double>();
  out.metrics["bilinear_psnr"] = psnr_db(blurred, views, pixel_std);
  return out;
}

std::shared_ptr<Objective> make_superres_objective(const Config& config, PretextShape shape,
                                                   std::shared_ptr<Communicator> comm) {
  return std::make_shared<SuperResolutionObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
