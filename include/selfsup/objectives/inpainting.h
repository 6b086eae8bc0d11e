#pragma once
// In-painting (the context encoder of Pathak et al., 2016): a square hole of each view is set to 0
// (the mean after normalisation), the encoder reads what is left, a decoder reconstructs the whole
// view, and the loss is L2 on the hole's pixels only. With pretext.inpainting.adversarial_weight
// w > 0 it is the paper's joint loss, (1 - w) x L2 + w x an adversarial term: a discriminator of
// its own, stepped in end_step, tells the real views from the views with their hole filled in.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/gradient_reducer.h"
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

/// The adversarial term's discriminator: three 3x3 convolutions of stride 2 (width, 2 x width and
/// 4 x width channels), each followed by LeakyReLU(0.2), a global average pool and a linear layer
/// to one logit. No batch norm: each sample's logit depends on that sample only, so N ranks
/// compute what one rank computes on the global batch without synchronised statistics.
class InpaintingDiscriminatorImpl : public torch::nn::Module {
 public:
  /// `in_channels`: C of the views; `width`: channels of the first convolution.
  InpaintingDiscriminatorImpl(int64_t in_channels, int64_t width);
  /// images [B, C, H, W] -> logits [B] (> 0: "a real view").
  torch::Tensor forward(const torch::Tensor& images);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(InpaintingDiscriminator);

/// One step's tensors.
struct InpaintingBatch {
  torch::Tensor mask;  // [B, 1, side, side] float: 1 in the hole
  torch::Tensor
      context;           // [B, C, side, side]: the views with the hole at 0, what the encoder reads
  torch::Tensor target;  // [B, C, side, side]: the views, what the decoder reconstructs
};

/// Metrics: "hole_mse" (the L2 term) and "context_mse" (the same error outside the hole, not in
/// the loss: how well the decoder copies what the encoder saw); with the adversarial term also
/// "adversarial" (the generator term below), "d_real" and "d_fake" (the discriminator's mean
/// probability of "real" for the real views and for the filled ones, before its step).
///
/// With w = pretext.inpainting.adversarial_weight > 0, alternating updates as in the GAN task:
///   1. compute(): fake = context x (1 - mask) + prediction x mask (the decoder's output in the
///      hole, the context around it); loss = (1 - w) x hole_mse + w x mean softplus(-D(fake)), the
///      non-saturating generator term, whose gradient reaches the encoder and decoder through the
///      prediction. The Trainer steps the encoder and decoder (trainable_parameters()).
///   2. end_step(applied), on applied steps only: the discriminator's loss
///      L_D = mean softplus(-D(target)) + mean softplus(D(fake, detached)) back-propagates into D
///      alone; D's gradients are averaged over ranks by a reducer of its own and its own optimizer
///      (the optim config, at the step's learning rate) steps; a non-finite averaged gradient skips
///      D's step on every rank alike.
/// The discriminator is registered as "discriminator" and its optimizer state is checkpointed as
/// optimizer.discriminator.pt; with w = 0 neither exists (checkpoints keep their tensor names).
class InpaintingObjective : public PretextObjective {
 public:
  InpaintingObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  /// Steps the discriminator on the views of the step `compute` began (adversarial term only).
  void end_step(bool applied) override;
  /// The encoder and the decoder: the discriminator is stepped in end_step.
  std::vector<torch::Tensor> trainable_parameters() override;
  /// {"discriminator": its optimizer} with the adversarial term, else none.
  std::map<std::string, torch::optim::Optimizer*> own_optimizers() override;
  /// The holes of `input` (keyed by config seed, input.epoch and input.keys) and the encoder's
  /// input, as compute makes them.
  InpaintingBatch prepare(const ObjectiveInput& input) const;
  /// The decoder, for tests: features [B, F] -> the view [B, C, side, side].
  ConvDecoder decoder() const { return decoder_; }
  /// The discriminator, for tests; empty (nullptr) when adversarial_weight is 0.
  InpaintingDiscriminator discriminator() const { return discriminator_; }
  /// Steps the discriminator has taken (skipped ones not counted).
  int64_t discriminator_steps() const { return discriminator_steps_; }

 private:
  ConvDecoder decoder_{nullptr};  // features [B, F] -> the view [B, C, side, side]
  InpaintingDiscriminator discriminator_{nullptr};  // only when adversarial_weight > 0
  std::unique_ptr<torch::optim::Optimizer> discriminator_optimizer_;
  std::unique_ptr<GradientReducer> discriminator_reducer_;
  torch::Tensor pending_real_;  // [B, C, side, side] the step's views, for end_step
  torch::Tensor pending_fake_;  // [B, C, side, side] the filled views, detached, for end_step
  double pending_lr_ = 0.0;     // the step's learning rate, for the discriminator's step
  int64_t discriminator_steps_ = 0;
};

}  // namespace selfsup
