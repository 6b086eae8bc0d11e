#pragma once
// Optimizers (Adam, AdamW, SGD, LARS), learning-rate scaling with the batch, and the schedule.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"

namespace selfsup {

/// LARS (You et al. 2017, as SimCLR uses it): SGD with momentum in which each weight tensor's
/// gradient, weight decay added, is scaled by its trust ratio
///   trust_coefficient x |w| / |g + weight_decay x w|   (1 when either norm is 0),
/// so every layer moves by about the same fraction of its norm whatever its gradient's scale.
/// Batch-norm and bias parameters (the tensors of one dimension) get neither the ratio nor weight
/// decay. Written here because LibTorch has no LARS; it is torch::optim::SGD (weight_decay 0)
/// after that gradient rescaling, so its state (the momentum buffers) saves and loads as SGD's.
class Lars : public torch::optim::SGD {
 public:
  Lars(const std::vector<torch::Tensor>& parameters, double lr, double momentum,
       double weight_decay, double trust_coefficient);
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  double weight_decay_;
  double trust_coefficient_;
};

/// Builds the optimizer named by `config.name` over `parameters`, at learning rate config.lr.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const OptimConfig& config, const std::vector<torch::Tensor>& parameters);

/// The peak learning rate for a global batch of `global_batch` images per step:
/// config.lr x (global_batch / base_batch) ("linear"), x sqrt(global_batch / base_batch) ("sqrt"),
/// or config.lr ("none").
double scaled_learning_rate(const OptimConfig& config, int64_t global_batch);

/// Learning rate at optimizer step `step` (0-based) of `total_steps`: linear warmup from lr/warmup
/// to lr over `warmup_steps`, then cosine decay to min_lr_ratio*lr at the last step (or constant).
double learning_rate(const OptimConfig& config, int64_t step, int64_t total_steps);

/// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace selfsup
