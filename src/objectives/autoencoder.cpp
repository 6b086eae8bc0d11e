#include "selfsup/objectives/autoencoder.h"

#include "pretext_parts.h"
#include "selfsup/core/error.h"

namespace selfsup {

torch::Tensor autoencoder_corrupt(const torch::Tensor& views, const torch::Tensor& keys,
                                  const AutoencoderConfig& autoencoder, uint64_t seed,
                                  int64_t epoch) {
  SELFSUP_CHECK(views.dim() == 4 && keys.numel() == views.size(0),
                "autoencoder: expected views [B, C, H, W] and B keys, got ", views.sizes(), " and ",
                keys.numel(), " keys");
  const int64_t channels = views.size(1), height = views.size(2), width = views.size(3);
  if (autoencoder.noise == "gaussian") {
    const auto noise =  // [B, C, H, W]
        keyed_normal(keys, {channels, height, width}, seed, epoch,
                     PretextStream::kAutoencoderNoise);
    return views + autoencoder.sigma * noise.to(views.device(), views.scalar_type());
  }
  if (autoencoder.noise == "mask") {
    // [B, 1, H, W]: one draw per pixel, shared by its channels.
    const auto uniform =
        keyed_uniform(keys, {1, height, width}, seed, epoch, PretextStream::kAutoencoderNoise);
    const auto keep = (uniform >= autoencoder.mask_prob).to(views.device(), views.scalar_type());
    return views * keep;
  }
  SELFSUP_CHECK(autoencoder.noise == "none", "autoencoder: pretext.autoencoder.noise = \"",
                autoencoder.noise, "\" is unknown; use \"none\", \"gaussian\" or \"mask\"");
  return views;
}

AutoencoderObjective::AutoencoderObjective(const Config& config, PretextShape shape,
                                           std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), shape.channels),
                  norm()));
}

torch::Tensor AutoencoderObjective::encoder_input(const ObjectiveInput& input) const {
  return autoencoder_corrupt(single_view(input), input.keys, config_.pretext.autoencoder,
                             config_.seed, input.epoch);
}

ObjectiveOutput AutoencoderObjective::compute(const ObjectiveInput& input) {
  const auto views = single_view(input);  // [B, C, side, side], the clean target
  const auto corrupted = encoder_input(input);
  const auto reconstruction = decoder_(encoder_->forward(corrupted));  // [B, C, side, side]
  ObjectiveOutput out;
  out.loss = (reconstruction - views).pow(2).mean();  // equal per-sample sizes: mean of means
  torch::NoGradGuard no_grad;
  out.metrics["mse"] = out.loss.item<double>();
  out.metrics["input_mse"] = (corrupted - views).pow(2).mean().item<double>();
  return out;
}

std::shared_ptr<Objective> make_autoencoder_objective(const Config& config, PretextShape shape,
                                                      std::shared_ptr<Communicator> comm) {
  return std::make_shared<AutoencoderObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
