#include <spdlog/spdlog.h>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder_file.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/objectives/tiled_info_nce.h"

namespace selfsup {

SimClrObjective::SimClrObjective(const Config& config, int64_t in_channels,
                                 std::shared_ptr<Communicator> comm)
    : loss_(config.loss),
      negatives_(config.negatives),
      comm_(std::move(comm)),
      bf16_(resolved_precision(config) == "bf16") {
  const auto& model = config.model;
  encoder_ =
      register_module("encoder", make_encoder(model, in_channels, make_norm_factory(model, comm_)));
  head_ = register_module("head",
                          ProjectionHead(encoder_->feature_dim(), model.head_hidden, model.proj_dim,
                                         make_norm_factory(model, comm_), model.head_layers));
  if (!model.init.empty()) {
    // Before the key encoder copies it; every rank reads the same file (the Trainer's broadcast
    // from rank 0 follows anyway).
    load_encoder_file(*encoder_, model.init, {model, in_channels, "model.init"});
    spdlog::info("model.init: encoder weights from {}", model.init);
  }
  if (negatives_.momentum > 0.0) {
    // The key encoder starts as a copy of the encoder and then only follows it (end_step).
    key_encoder_ = register_module(
        "key_encoder", make_encoder(model, in_channels, make_norm_factory(model, comm_)));
    key_head_ = register_module(
        "key_head", ProjectionHead(encoder_->feature_dim(), model.head_hidden, model.proj_dim,
                                   make_norm_factory(model, comm_), model.head_layers));
    torch::NoGradGuard no_grad;
    auto copy = [](torch::nn::Module& from, torch::nn::Module& to) {
      const auto source = from.parameters();
      const auto target = to.parameters();
      for (size_t i = 0; i < source.size(); ++i) {
        target[i].copy_(source[i]);
        target[i].set_requires_grad(false);
      }
      const auto source_buffers = from.buffers();
      const auto target_buffers = to.buffers();
      for (size_t i = 0; i < source_buffers.size(); ++i) target_buffers[i].copy_(source_buffers[i]);
    };
    copy(*encoder_, *key_encoder_);
    copy(*head_, *key_head_);
  }
  if (negatives_.queue_size > 0) {
    queue_ = register_module("queue", NegativeQueue(negatives_.queue_size, model.proj_dim));
  }
}

torch::Tensor SimClrObjective::project(Encoder& encoder, ProjectionHeadImpl& head,
                                       const torch::Tensor& views,
                                       const torch::Tensor& local_views) {
  // Views of one size go through the encoder in one batch: [V*B, C, H, W] -> [B, V, D].
  auto embed = [&](const torch::Tensor& group) {
    const int64_t count = group.size(0);
    torch::Tensor z;
    {
      // train.precision bf16: the encoder and head under autocast, the loss in fp32 from here on.
      AutocastGuard autocast(group.device().type(), bf16_);
      z = head.forward(encoder.forward(group.flatten(0, 1)));
    }
    z = torch::nn::functional::normalize(z.to(torch::kFloat),
                                         torch::nn::functional::NormalizeFuncOptions().dim(1));
    return z.view({count, -1, z.size(1)}).transpose(0, 1);  // [B, count, D]
  };
  if (!local_views.defined()) return embed(views).contiguous();
  // The local crops are smaller, so they form a second batch (with its own batch statistics).
  return torch::cat({embed(views), embed(local_views)}, /*dim=*/1);  // [B, V + L, D]
}

ObjectiveOutput SimClrObjective::compute(const ObjectiveInput& input) {
  const auto& views = input.views;
  const auto& local_views = input.local_views;
  const int64_t b_local = views.size(1);
  SELFSUP_CHECK(
      !local_views.defined() || (local_views.dim() == 5 && local_views.size(1) == b_local),
      "simclr: local views must be [L, ", b_local, ", C, h, w], got ", local_views.sizes());
  const auto local = project(*encoder_, *head_, views, local_views);  // [B_local, V + L, D]
  torch::Tensor columns;                                              // [B_global, V + L, D]
  if (key_encoder_) {
    // Keys from the momentum encoder: no gradient, so a plain all-gather.
    torch::NoGradGuard no_grad;
    columns = comm_->all_gather(project(*key_encoder_, *key_head_, views, local_views));
  } else {
    columns = all_gather_with_grad(local, *comm_);
  }
  const int64_t offset = int64_t(comm_->rank()) * b_local;
  auto options = InfoNceOptions(loss_.temperature)
                     .block_size(loss_.block_size)
                     .batch_negatives(negatives_.source != "queue");
  if (queue_) {
    options.queue(queue_->keys());
    pending_keys_.push_back(columns.detach().reshape({-1, columns.size(2)}));
  }
  // Tiled: the same loss and gradients with memory O(B_local*V x block_size) instead of
  // O(B_local*V x (B_global*V + K)).
  const auto nce = loss_.tiled ? info_nce_tiled(local, columns, offset, options)
                               : info_nce(local, columns, offset, options);
  ObjectiveOutput out;
  out.loss = nce.loss;
  out.candidates_per_anchor = nce.candidates_per_anchor;
  out.metrics = {{"pos_sim", nce.pos_sim},
                 {"neg_sim", nce.neg_sim},
                 {"alignment", nce.alignment},
                 {"uniformity", nce.uniformity}};
  if (queue_) out.metrics["queue_fill"] = double(queue_->size()) / double(queue_->capacity());
  return out;
}

void SimClrObjective::end_step(bool applied) {
  if (applied) {
    torch::NoGradGuard no_grad;
    if (key_encoder_) {
      const double m = negatives_.momentum;
      auto follow = [m](torch::nn::Module& online, torch::nn::Module& key) {
        const auto source = online.parameters();
        const auto target = key.parameters();
        for (size_t i = 0; i < source.size(); ++i) target[i].mul_(m).add_(source[i], 1.0 - m);
      };
      follow(*encoder_, *key_encoder_);
      follow(*head_, *key_head_);
    }
    // The keys are the gathered ones, the same on every rank, so every rank decides alike.
    if (queue_ && !pending_keys_.empty()) {
      // One push per micro-batch: the queue's size is a multiple of one micro-batch's keys.
      if (torch::isfinite(torch::cat(pending_keys_)).all().item<bool>()) {
        for (const auto& keys : pending_keys_) queue_->push(keys);
      } else {
        spdlog::warn("non-finite keys not enqueued (the queue keeps its older keys)");
      }
    }
  }
  pending_keys_.clear();
}

}  // namespace selfsup
