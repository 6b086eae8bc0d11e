#pragma once
// The Objective interface: what a pretext task computes from a batch of views. Every objective owns
// an encoder (the part that transfers) and its own pretext head (dropped at transfer). One source
// file per objective.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"

namespace selfsup {

class Communicator;

struct ObjectiveOutput {
  torch::Tensor loss;                     // scalar: mean over this rank's samples (for backward)
  int64_t candidates_per_anchor = 0;      // contrastive objectives: N of the MI bound; else 0
  std::map<std::string, double> metrics;  // extra per-step metrics (rank-local)
};

class Objective : public torch::nn::Module {
 public:
  /// views: [V, B_local, C, H, W]; this rank's slice of the global batch.
  virtual ObjectiveOutput compute(const torch::Tensor& views) = 0;
  /// The encoder that the transfer stage uses.
  virtual std::shared_ptr<Encoder> encoder() const = 0;
  virtual std::string name() const = 0;
};

/// SimCLR: encoder -> projection head -> L2 normalise -> all_gather_with_grad -> sharded NT-Xent
/// (dense, or tiled over column blocks when `loss.tiled`).
class SimClrObjective : public Objective {
 public:
  SimClrObjective(std::shared_ptr<Encoder> encoder, const ModelConfig& model,
                  const LossConfig& loss, std::shared_ptr<Communicator> comm);
  ObjectiveOutput compute(const torch::Tensor& views) override;
  std::shared_ptr<Encoder> encoder() const override { return encoder_; }
  std::string name() const override { return "simclr"; }

 private:
  std::shared_ptr<Encoder> encoder_;
  ProjectionHead head_{nullptr};
  LossConfig loss_;
  std::shared_ptr<Communicator> comm_;
};

/// The normalisation layers for `model.batch_norm`: "sync" gives SyncBatchNorm (statistics over
/// all ranks), "local" torch's BatchNorm (this rank's slice).
NormFactory make_norm_factory(const ModelConfig& model, std::shared_ptr<Communicator> comm);

/// Builds the objective for `config` (today: SimCLR) on images with `in_channels` channels.
std::shared_ptr<Objective> make_objective(const Config& config, int64_t in_channels,
                                          std::shared_ptr<Communicator> comm);

}  // namespace selfsup
