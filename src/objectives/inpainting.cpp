#include "selfsup/objectives/inpainting.h"

#include <cmath>

#include "pretext_parts.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/train/optim.h"

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

InpaintingDiscriminatorImpl::InpaintingDiscriminatorImpl(int64_t in_channels, int64_t width) {
  namespace nn = torch::nn;
  auto conv = [](int64_t in, int64_t out) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(2).padding(1));
  };
  conv1_ = register_module("conv1", conv(in_channels, width));
  conv2_ = register_module("conv2", conv(width, 2 * width));
  conv3_ = register_module("conv3", conv(2 * width, 4 * width));
  fc_ = register_module("fc", nn::Linear(4 * width, 1));
}

torch::Tensor InpaintingDiscriminatorImpl::forward(const torch::Tensor& images) {
  namespace F = torch::nn::functional;
  const auto leaky = F::LeakyReLUFuncOptions().negative_slope(0.2);
  auto x = F::leaky_relu(conv1_(images), leaky);  // [B, width, H/2, W/2] (rounded up)
  x = F::leaky_relu(conv2_(x), leaky);            // [B, 2 width, H/4, W/4]
  x = F::leaky_relu(conv3_(x), leaky);            // [B, 4 width, H/8, W/8]
  return fc_(x.mean({2, 3})).squeeze(1);          // [B]
}

InpaintingObjective::InpaintingObjective(const Config& config, PretextShape shape,
                                         std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  decoder_ = register_module(
      "decoder",
      ConvDecoder(image_decoder_options(config, shape, encoder_->feature_dim(), shape.channels),
                  norm()));
  const double weight = config.pretext.inpainting.adversarial_weight;
  SELFSUP_CHECK(weight >= 0.0 && weight <= 1.0,
                "inpainting: pretext.inpainting.adversarial_weight = ", weight,
                " is outside [0, 1]; use 0 for L2 only, or a small weight such as 0.001");
  // Only with the adversarial term: without it the module's tensors and checkpoint files are
  // those of the L2-only task.
  if (weight > 0.0) {
    discriminator_ = register_module(
        "discriminator", InpaintingDiscriminator(shape.channels, config.pretext.decoder_width));
    // Built at config.optim.lr; end_step sets each step's learning rate before stepping.
    discriminator_optimizer_ = make_optimizer(config.optim, discriminator_->parameters());
    discriminator_reducer_ =
        std::make_unique<GradientReducer>(discriminator_->parameters(), *comm_);
  }
}

std::vector<torch::Tensor> InpaintingObjective::trainable_parameters() {
  // The default's selection and order (registration order, those that require gradients) without
  // the discriminator: the Trainer's optimizer.pt of an L2-only run keeps its parameter indices.
  std::vector<torch::Tensor> trainable;
  auto add = [&](const std::vector<torch::Tensor>& parameters) {
    for (const auto& p : parameters)
      if (p.requires_grad()) trainable.push_back(p);
  };
  add(encoder_->parameters());
  add(decoder_->parameters());
  return trainable;
}

std::map<std::string, torch::optim::Optimizer*> InpaintingObjective::own_optimizers() {
  if (discriminator_.is_empty()) return {};
  return {{"discriminator", discriminator_optimizer_.get()}};
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
  namespace F = torch::nn::functional;
  const auto batch = prepare(input);
  const auto reconstruction = decoder_(encoder_->forward(batch.context));  // [B, C, side, side]
  const auto hole_mse = masked_mse(reconstruction, batch.target, batch.mask);
  ObjectiveOutput out;
  torch::Tensor fake_logits;  // [B], with the adversarial term only
  if (discriminator_.is_empty()) {
    out.loss = hole_mse;
  } else {
    const double weight = config_.pretext.inpainting.adversarial_weight;
    // What the discriminator judges is a whole view: the decoder's output in the hole, the
    // context (the real pixels) around it, so that only the filling can give it away.
    const auto fake = batch.context * (1.0 - batch.mask) + reconstruction * batch.mask;
    fake_logits = discriminator_(fake);
    // -log sigmoid(D(fake)): non-saturating, strong gradients while D still rejects the fakes.
    // Its backward also leaves gradients in D, which end_step zeroes before D's own backward.
    out.loss = (1.0 - weight) * hole_mse + weight * F::softplus(-fake_logits).mean();
    pending_real_ = batch.target.detach();
    pending_fake_ = fake.detach();
    pending_lr_ = input.lr;
  }
  torch::NoGradGuard no_grad;
  out.metrics["hole_mse"] = hole_mse.item<double>();
  out.metrics["context_mse"] =
      masked_mse(reconstruction, batch.target, 1.0 - batch.mask).item<double>();
  if (fake_logits.defined()) {
    out.metrics["adversarial"] = F::softplus(-fake_logits).mean().item<double>();
    out.metrics["d_fake"] = torch::sigmoid(fake_logits).mean().item<double>();
    out.metrics["d_real"] = torch::sigmoid(discriminator_(batch.target)).mean().item<double>();
  }
  return out;
}

void InpaintingObjective::end_step(bool applied) {
  auto real = std::move(pending_real_);
  auto fake = std::move(pending_fake_);
  pending_real_ = torch::Tensor();
  pending_fake_ = torch::Tensor();
  if (!applied || discriminator_.is_empty() || !fake.defined()) return;
  namespace F = torch::nn::functional;
  // 1. Drop what the generator term's backward left in D: D learns from L_D alone.
  discriminator_optimizer_->zero_grad();
  // 2. -log sigmoid(D(real)) - log(1 - sigmoid(D(fake))), each a mean over this rank's samples;
  //    the fakes are detached, so nothing reaches the encoder or decoder.
  const auto loss =
      F::softplus(-discriminator_(real)).mean() + F::softplus(discriminator_(fake)).mean();
  loss.backward();
  // 3. The mean over ranks (the gradient of the global batch's L_D), then the step at the
  //    learning rate of the step the Trainer just took.
  if (step_own_network(*discriminator_reducer_, discriminator_->parameters(),
                       *discriminator_optimizer_, pending_lr_, "inpainting: the discriminator"))
    ++discriminator_steps_;
}

std::shared_ptr<Objective> make_inpainting_objective(const Config& config, PretextShape shape,
                                                     std::shared_ptr<Communicator> comm) {
  return std::make_shared<InpaintingObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
