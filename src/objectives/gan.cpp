#include "selfsup/objectives/gan.h"

#include "pretext_parts.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/train/optim.h"

namespace selfsup {

RunningStatsGuard::RunningStatsGuard(torch::nn::Module& module) : module_(module) {
  torch::NoGradGuard no_grad;
  for (const auto& buffer : module_.buffers()) saved_.push_back(buffer.clone());
}

RunningStatsGuard::~RunningStatsGuard() {
  torch::NoGradGuard no_grad;
  const auto buffers = module_.buffers();
  for (size_t i = 0; i < buffers.size() && i < saved_.size(); ++i) buffers[i].copy_(saved_[i]);
  // SyncBatchNorm counts its batches on the host too; it re-reads the restored count.
  for (const auto& child : module_.modules())
    if (auto* sync = child->as<SyncBatchNormImpl>()) sync->reload_counter();
}

GanObjective::GanObjective(const Config& config, PretextShape shape,
                           std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)) {
  head_ = register_module("head", torch::nn::Linear(encoder_->feature_dim(), 1));
  generator_ = register_module(
      "generator",
      ConvDecoder(ConvDecoderOptions(config.pretext.gan.latent_dim, shape.channels, shape.side)
                      .width(config.pretext.decoder_width),
                  norm()));
  generator_optimizer_ = make_optimizer(config.optim, generator_->parameters());
  generator_reducer_ = std::make_unique<GradientReducer>(generator_->parameters(), *comm_);
}

std::vector<torch::Tensor> GanObjective::trainable_parameters() {
  auto trainable = encoder_->parameters();
  for (const auto& p : head_->parameters()) trainable.push_back(p);
  return trainable;
}

std::map<std::string, torch::optim::Optimizer*> GanObjective::own_optimizers() {
  return {{"generator", generator_optimizer_.get()}};
}

torch::Tensor GanObjective::discriminate(const torch::Tensor& images) {
  return head_(encoder_->forward(images)).squeeze(1);  // [B]
}

ObjectiveOutput GanObjective::compute(const ObjectiveInput& input) {
  const auto real = single_view(input);  // [B, C, H, W]
  // z keyed by (seed, epoch, sample): the same fake images whatever the world size.
  const auto z = keyed_normal(input.keys, {config_.pretext.gan.latent_dim}, config_.seed,
                              input.epoch, PretextStream::kGanLatent)
                     .to(real.device());
  pending_fake_ = generator_(z);  // [B, C, H, W], G's graph kept for end_step
  pending_lr_ = input.lr;
  const auto real_logits = discriminate(real);
  torch::Tensor fake_logits;
  {
    RunningStatsGuard keep(*encoder_);
    fake_logits = discriminate(pending_fake_.detach());
  }
  namespace F = torch::nn::functional;
  // -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), per sample, then the mean over the batch.
  ObjectiveOutput out;
  out.loss = F::softplus(-real_logits).mean() + F::softplus(fake_logits).mean();
  torch::NoGradGuard no_grad;
  out.metrics = {{"d_real", torch::sigmoid(real_logits).mean().item<double>()},
                 {"d_fake", torch::sigmoid(fake_logits).mean().item<double>()},
                 // The non-saturating generator loss against the discriminator before its step.
                 {"generator_loss", F::softplus(-fake_logits).mean().item<double>()}};
  return out;
}

void GanObjective::end_step(bool applied) {
  auto fake = std::move(pending_fake_);
  pending_fake_ = torch::Tensor();
  if (!applied || !fake.defined()) return;
  generator_optimizer_->zero_grad();
  torch::Tensor logits;
  {
    RunningStatsGuard keep(*encoder_);
    logits = discriminate(fake);  // with the discriminator just stepped
  }
  const auto generator_loss = torch::nn::functional::softplus(-logits).mean();
  // Also leaves gradients in the discriminator; the Trainer zeroes them before its next step.
  generator_loss.backward();
  if (step_own_network(*generator_reducer_, generator_->parameters(), *generator_optimizer_,
                       pending_lr_, "gan: the generator"))
    ++generator_steps_;
}

std::shared_ptr<Objective> make_gan_objective(const Config& config, PretextShape shape,
                                              std::shared_ptr<Communicator> comm) {
  return std::make_shared<GanObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
