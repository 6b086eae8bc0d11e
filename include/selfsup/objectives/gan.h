#pragma once
// The GAN pretext task: the encoder is the trunk of the discriminator, whose features transfer.

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// Keeps the running statistics of every batch-norm layer of a module as they were when the guard
/// was made: the discriminator's statistics then describe real images only (the transfer stage
/// evaluates the encoder with them), although it also sees generated ones.
class RunningStatsGuard {
 public:
  explicit RunningStatsGuard(torch::nn::Module& module);
  ~RunningStatsGuard();
  RunningStatsGuard(const RunningStatsGuard&) = delete;
  RunningStatsGuard& operator=(const RunningStatsGuard&) = delete;

 private:
  torch::nn::Module& module_;
  std::vector<torch::Tensor> saved_;  // clones of module_.buffers(), in order
};

/// Non-saturating GAN (Goodfellow et al. 2014, section 3) in alternating updates:
///   1. compute(): z ~ N(0, I) keyed per sample; fake = G(z); the discriminator D = head o encoder
///      gives logits for the real views and for fake (detached); the Trainer's optimizer steps D
///      on  L_D = mean softplus(-D(x)) + mean softplus(D(G(z))), with D's gradients averaged over
///      ranks like any objective's.
///   2. end_step(applied): with the updated D, L_G = mean softplus(-D(G(z))) (the non-saturating
///      loss) back-propagates into G; G's gradients are averaged over ranks (its own reducer) and
///      its own optimizer (same optim config and learning rate as D) steps. A non-finite G
///      gradient skips G's step on every rank alike (the averaged gradient is the same on all).
/// The generator is a ConvDecoder from the latent vector; its optimizer state is checkpointed as
/// optimizer.generator.pt.
class GanObjective : public PretextObjective {
 public:
  GanObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  void end_step(bool applied) override;
  /// The discriminator (encoder and head): the generator is stepped in end_step.
  std::vector<torch::Tensor> trainable_parameters() override;
  std::map<std::string, torch::optim::Optimizer*> own_optimizers() override;
  /// The generator, for tests and sampling: [B, latent_dim] -> [B, C, side, side].
  ConvDecoder generator() const { return generator_; }
  /// Steps the generator has taken (skipped ones not counted).
  int64_t generator_steps() const { return generator_steps_; }

 private:
  torch::Tensor discriminate(const torch::Tensor& images);  // [B, C, H, W] -> logits [B]

  torch::nn::Linear head_{nullptr};  // features -> real/fake logit
  ConvDecoder generator_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> generator_optimizer_;
  std::unique_ptr<GradientReducer> generator_reducer_;
  torch::Tensor pending_fake_;  // G(z) of the current step, with G's graph, for end_step
  double pending_lr_ = 0.0;
  int64_t generator_steps_ = 0;
};

}  // namespace selfsup
