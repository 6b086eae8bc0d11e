#pragma once
// Optimizers and the learning-rate schedule.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"

namespace selfsup {

/// Builds the optimizer named by `config.name` ("adam" or "sgd") over `parameters`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const OptimConfig& config, const std::vector<torch::Tensor>& parameters);

/// Learning rate at optimizer step `step` (0-based) of `total_steps`: linear warmup from lr/warmup
/// to lr over `warmup_steps`, then cosine decay to min_lr_ratio*lr at the last step (or constant).
double learning_rate(const OptimConfig& config, int64_t step, int64_t total_steps);

/// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace selfsup
