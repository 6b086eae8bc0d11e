#include "selfsup/objectives/colorization.h"

#include <cmath>
#include <vector>

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// sRGB: below this (companded) value the transfer curve is linear.
constexpr double kSrgbLinearLimit = 0.04045;
// The D65 reference white, XYZ with Y = 1.
constexpr double kWhiteX = 0.95047;
constexpr double kWhiteY = 1.0;
constexpr double kWhiteZ = 1.08883;
// Lab's f(t): cube root above (6/29)^3, a line below.
constexpr double kLabDelta = 6.0 / 29.0;

// augment.mean or .std as [1, 3, 1, 1] on `like`'s device and dtype.
torch::Tensor per_channel(const std::vector<double>& values, const char* name,
                          const torch::Tensor& like) {
  SELFSUP_CHECK(values.size() == 1 || values.size() == 3, "colorization: augment.", name,
                " needs 1 value or 3 (one per RGB channel), got ", values.size());
  return torch::tensor(values, torch::kDouble)
      .to(like.device(), like.scalar_type())
      .view({1, -1, 1, 1})
      .expand({1, 3, 1, 1});
}

}  // namespace

torch::Tensor rgb_to_lab(const torch::Tensor& rgb) {
  SELFSUP_CHECK(rgb.dim() == 4 && rgb.size(1) == 3 && rgb.is_floating_point(),
                "rgb_to_lab: expected floating RGB [B, 3, H, W], got ", rgb.sizes(), " ",
                rgb.scalar_type());
  const auto companded = rgb.clamp(0.0, 1.0);
  const auto linear = torch::where(companded > kSrgbLinearLimit,
                                   ((companded + 0.055) / 1.055).pow(2.4), companded / 12.92);
  // Linear sRGB -> XYZ (IEC 61966-2-1 primaries, D65), each row divided by the white's X, Y, Z.
  const auto to_xyz = torch::tensor({0.4124564 / kWhiteX, 0.3575761 / kWhiteX, 0.1804375 / kWhiteX,
                                     0.2126729 / kWhiteY, 0.7151522 / kWhiteY, 0.0721750 / kWhiteY,
                                     0.0193339 / kWhiteZ, 0.1191920 / kWhiteZ, 0.9503041 / kWhiteZ},
                                    torch::kDouble)
                          .view({3, 3})
                          .to(rgb.device(), rgb.scalar_type());
  const auto xyz = torch::einsum("ij,bjhw->bihw", {to_xyz, linear});  // [B, 3, H, W], / white
  const double cube = kLabDelta * kLabDelta * kLabDelta;
  const auto f = torch::where(xyz > cube, xyz.clamp_min(cube).pow(1.0 / 3.0),
                              xyz / (3.0 * kLabDelta * kLabDelta) + 4.0 / 29.0);
  const auto fx = f.select(1, 0);
  const auto fy = f.select(1, 1);
  const auto fz = f.select(1, 2);
  return torch::stack({116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)}, /*dim=*/1);
}

torch::Tensor ab_to_bins(const torch::Tensor& ab, int64_t bins) {
  SELFSUP_CHECK(ab.dim() == 4 && ab.size(1) == 2, "ab_to_bins: expected (a, b) [B, 2, H, W], got ",
                ab.sizes());
  SELFSUP_CHECK(bins >= 1, "ab_to_bins: bins must be positive, got ", bins);
  const double width = 2.0 * kAbRange / double(bins);
  // [B, 2, H, W] cell of a and of b, each in [0, bins).
  const auto cell =
      torch::floor((ab + kAbRange) / width).clamp(0, double(bins - 1)).to(torch::kLong);
  return cell.select(1, 0) * bins + cell.select(1, 1);
}

ColorizationBatch colorization_batch(const torch::Tensor& views, const AugmentConfig& augment) {
  SELFSUP_CHECK(views.dim() == 4 && views.size(1) == 3,
                "colorization: expected RGB views [B, 3, H, W], got ", views.sizes());
  const auto mean = per_channel(augment.mean, "mean", views);
  const auto std = per_channel(augment.std, "std", views);
  ColorizationBatch batch;
  batch.lab = rgb_to_lab(views * std + mean);
  const auto gray = (batch.lab.narrow(1, 0, 1) / 100.0).expand_as(views);  // [B, 3, H, W]
  batch.input = (gray - mean) / std;
  return batch;
}

ColorizationObjective::ColorizationObjective(const Config& config, PretextShape shape,
                                             std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)), colorization_(config.pretext.colorization) {
  SELFSUP_CHECK(shape.channels == 3,
                "colorization predicts colour from luminance and needs RGB "
                "images, got ",
                shape.channels, " channel(s); use an RGB dataset or another task");
  SELFSUP_CHECK(colorization_.target == "bins" || colorization_.target == "regression",
                "pretext.colorization.target = \"", colorization_.target,
                "\" is not known: use \"bins\" or \"regression\"");
  // Fail at construction, not at the first step, on a mean or std of the wrong length.
  per_channel(config.augment.mean, "mean", torch::zeros({1}));
  per_channel(config.augment.std, "std", torch::zeros({1}));
  const int64_t bins = colorization_.bins;
  const int64_t out_channels = colorization_.target == "bins" ? bins * bins : 2;
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), out_channels),
                  norm()));
}

ObjectiveOutput ColorizationObjective::compute(const ObjectiveInput& input) {
  const auto views = single_view(input);  // [B, 3, S, S]
  ColorizationBatch batch;
  {
    torch::NoGradGuard no_grad;
    batch = colorization_batch(views, config_.augment);
  }
  const auto ab = batch.lab.narrow(1, 1, 2);                                  // [B, 2, S, S]
  const auto prediction = decoder_->forward(encoder_->forward(batch.input));  // [B, out, S, S]
  namespace F = torch::nn::functional;
  ObjectiveOutput out;
  if (colorization_.target == "bins") {
    const auto target = ab_to_bins(ab, colorization_.bins);  // [B, S, S]
    // Every sample has S*S pixels, so the mean over pixels of all samples is the mean over
    // samples of their per-sample mean.
    out.loss = F::cross_entropy(prediction, target);
    const auto correct = prediction.detach().argmax(1).eq(target);
    out.metrics["accuracy"] = correct.to(torch::kDouble).mean().item<double>();
  } else {
    out.loss = F::mse_loss(prediction, ab / kAbRange);
    const auto error = prediction.detach().to(torch::kDouble) * kAbRange - ab.to(torch::kDouble);
    out.metrics["ab_rmse"] = error.square().mean().sqrt().item<double>();
  }
  return out;
}

std::shared_ptr<Objective> make_colorization_objective(const Config& config, PretextShape shape,
                                                       std::shared_ptr<Communicator> comm) {
  return std::make_shared<ColorizationObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
