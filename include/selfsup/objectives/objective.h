#pragma once
// The Objective interface: what a pretext task computes from a batch of views. Every objective owns
// an encoder (the part that transfers) and its own pretext head (dropped at transfer). One source
// file per objective.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"
#include "selfsup/objectives/negative_queue.h"

namespace selfsup {

class Communicator;

struct ObjectiveOutput {
  torch::Tensor loss;                     // scalar: mean over this rank's samples (for backward)
  int64_t candidates_per_anchor = 0;      // contrastive objectives: N of the MI bound; else 0
  std::map<std::string, double> metrics;  // extra per-step metrics (rank-local)
};

/// One step's input: this rank's slice of the global batch and what keys its randomness.
struct ObjectiveInput {
  torch::Tensor views;        // [V, B_local, C, H, W] normalised views
  torch::Tensor local_views;  // [L, B_local, C, h, w] multi-crop small views, or undefined
  // [B_local] int64 (CPU): the dataset index of each sample. Objectives that draw randomness
  // (noise, masks, permutations) key it by (seed, epoch, key), never by rank or position, so that
  // N ranks compute what one rank computes on the same global batch (DESIGN.md, invariant 3).
  torch::Tensor keys;
  int64_t epoch = 0;  // epoch of the step
  int64_t step = 0;   // optimizer steps done before this one
  double lr = 0.0;    // learning rate of this step (objectives with an optimizer of their own)
};

class Objective : public torch::nn::Module {
 public:
  /// Computes the loss of one step (the Trainer calls backward on it).
  virtual ObjectiveOutput compute(const ObjectiveInput& input) = 0;
  /// Convenience for tests and tools: `views` [V, B_local, C, H, W] and optional `local_views`
  /// [L, B_local, C, h, w], keyed 0 .. B_local-1, epoch 0, step 0.
  ObjectiveOutput compute(const torch::Tensor& views, const torch::Tensor& local_views = {});
  /// Called on every rank after the step that `compute` began: `applied` when the optimizer
  /// stepped, false when the ranks agreed to skip it (a non-finite loss). Objectives with state
  /// beyond the weights (a queue, a momentum encoder, a second network with its own optimizer)
  /// update it here, and only for applied steps. It may run collectives: every rank calls it.
  virtual void end_step(bool applied) { (void)applied; }
  /// The parameters the Trainer's optimizer updates with the gradients of `compute`'s loss
  /// (default: all that require gradients). An objective that updates some parameters itself
  /// (the GAN's generator, in end_step) leaves them out.
  virtual std::vector<torch::Tensor> trainable_parameters();
  /// Optimizers the objective owns, by name: their state is saved in and restored from
  /// checkpoints (as optimizer.<name>.pt) next to the Trainer's.
  virtual std::map<std::string, torch::optim::Optimizer*> own_optimizers() { return {}; }
  /// The encoder that the transfer stage uses.
  virtual std::shared_ptr<Encoder> encoder() const = 0;
  virtual std::string name() const = 0;
};

/// SimCLR: encoder -> projection head -> L2 normalise -> all_gather_with_grad -> sharded NT-Xent
/// (dense, or tiled over column blocks when `loss.tiled`), with the negatives of `negatives`:
///   - a queue (`negatives.queue_size` K): the gathered keys of every applied step are enqueued
///     after the loss used the queue as it was, so all ranks hold the same queue;
///   - a momentum encoder (`negatives.momentum` m > 0): keys come from an exponential moving
///     average of the encoder and head (updated after each applied step: k = m k + (1 - m) q),
///     without gradient; anchors still come from the encoder. The key encoder is a submodule whose
///     parameters do not require gradients, so it is broadcast, saved and restored with the rest.
class SimClrObjective : public Objective {
 public:
  SimClrObjective(const Config& config, int64_t in_channels, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  /// Multi-crop: the L local views of an image are further positives of its V global views (and
  /// of each other), and negatives of every other image: the loss sees V + L views per image.
  ObjectiveOutput compute(const ObjectiveInput& input) override;
  void end_step(bool applied) override;
  std::shared_ptr<Encoder> encoder() const override { return encoder_; }
  std::string name() const override { return "simclr"; }
  /// The queue of recycled keys; empty (nullptr) without one.
  NegativeQueue queue() const { return queue_; }

 private:
  // [V, B, C, H, W] (+ [L, B, C, h, w]) -> L2-normalised projections [B, V + L, D] of `encoder`
  // and `head`.
  torch::Tensor project(Encoder& encoder, ProjectionHeadImpl& head, const torch::Tensor& views,
                        const torch::Tensor& local_views);

  std::shared_ptr<Encoder> encoder_;
  ProjectionHead head_{nullptr};
  std::shared_ptr<Encoder> key_encoder_;  // momentum encoder, nullptr without one
  ProjectionHead key_head_{nullptr};
  NegativeQueue queue_{nullptr};
  LossConfig loss_;
  NegativesConfig negatives_;
  std::shared_ptr<Communicator> comm_;
  // [B_global*V, D] keys of each micro-batch of the current step (train.accumulate_steps), all
  // enqueued by end_step: the micro-batches of one step all see the queue as the step found it.
  std::vector<torch::Tensor> pending_keys_;
  bool bf16_ = false;  // encoder and head under bfloat16 autocast (train.precision)
};

/// The normalisation layers for `model.batch_norm`: "sync" gives SyncBatchNorm (statistics over
/// all ranks), "local" torch's BatchNorm (this rank's slice).
NormFactory make_norm_factory(const ModelConfig& model, std::shared_ptr<Communicator> comm);

/// Bytes the contrastive loss of `config` holds at its peak on one of `world` ranks (the [rows,
/// columns] matrices of the dense loss, or one block of them when tiled; rows = B_local*V, columns
/// = B_global*V + K). A double: a pool of 2^40 keys must not overflow the estimate.
double contrastive_loss_bytes(const Config& config, int world);

/// Throws ConfigError, saying what to change (loss.tiled, loss.block_size, negatives.queue_size,
/// train.batch_size), when the contrastive loss or the queue of `config` would need more than half
/// of `memory_bytes`, the memory one of `world` ranks may use. The Trainer calls it on CPUs with
/// the smallest share of RAM per rank over all ranks, so that every rank stops together.
void check_loss_memory(const Config& config, int world, double memory_bytes);

/// Builds the objective of `config.pretext.task` for images with `in_channels` channels seen as
/// views of side `view_side` pixels (the decoders of encoder-decoder tasks and the generator are
/// sized by it; 0 = augment.size). Throws ConfigError when the task does not fit them
/// (check_pretext_fit).
std::shared_ptr<Objective> make_objective(const Config& config, int64_t in_channels,
                                          std::shared_ptr<Communicator> comm,
                                          int64_t view_side = 0);

/// The side of the views that training on `dataset` makes: augment.size, or the images' own side
/// (`image_side`, 0 when the images vary in size: then augment.size must be set).
int64_t view_side(const Config& config, int64_t image_side);

}  // namespace selfsup
