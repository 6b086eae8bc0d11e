#include "selfsup/train/optim.h"

#include <algorithm>
#include <cmath>

#include "selfsup/core/error.h"

namespace selfsup {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const OptimConfig& config, const std::vector<torch::Tensor>& parameters) {
  if (config.name == "adam") {
    return std::make_unique<torch::optim::Adam>(
        parameters, torch::optim::AdamOptions(config.lr).weight_decay(config.weight_decay));
  }
  if (config.name == "sgd") {
    return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(config.lr)
                                                               .momentum(config.momentum)
                                                               .nesterov(config.nesterov)
                                                               .weight_decay(config.weight_decay));
  }
  throw ConfigError("optim.name = \"" + config.name + "\" is unknown; use adam or sgd");
}

double learning_rate(const OptimConfig& config, int64_t step, int64_t total_steps) {
  const int64_t warmup = std::min(config.warmup_steps, total_steps);
  if (step < warmup) return config.lr * double(step + 1) / double(warmup);
  if (config.schedule == "constant") return config.lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup - 1);
  const double progress = std::min(1.0, double(step - warmup) / double(decay_steps));
  const double floor = config.min_lr_ratio * config.lr;
  return floor + (config.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace selfsup
