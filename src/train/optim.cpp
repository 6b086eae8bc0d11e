#include "selfsup/train/optim.h"

#include <algorithm>
#include <cmath>

#include "selfsup/core/error.h"

namespace selfsup {

namespace {

// LARS's two groups: the adapted weights (more than one dimension) first, then batch-norm and
// bias parameters; an empty group is left out.
std::vector<torch::optim::OptimizerParamGroup> lars_groups(
    const std::vector<torch::Tensor>& parameters, double lr, double momentum) {
  std::vector<torch::Tensor> adapted, plain;
  for (const auto& p : parameters) (p.dim() > 1 ? adapted : plain).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto* list : {&adapted, &plain}) {
    if (list->empty()) continue;
    groups.emplace_back(*list, std::make_unique<torch::optim::SGDOptions>(
                                   torch::optim::SGDOptions(lr).momentum(momentum)));
  }
  return groups;
}

}  // namespace

Lars::Lars(const std::vector<torch::Tensor>& parameters, double lr, double momentum,
           double weight_decay, double trust_coefficient)
    : torch::optim::SGD(lars_groups(parameters, lr, momentum),
                        torch::optim::SGDOptions(lr).momentum(momentum)),
      weight_decay_(weight_decay),
      trust_coefficient_(trust_coefficient) {
  SELFSUP_CHECK(trust_coefficient > 0, "optim.trust_coefficient = ", trust_coefficient,
                " must be > 0 for LARS (use 0.001)");
}

torch::Tensor Lars::step(LossClosure closure) {
  {
    torch::NoGradGuard no_grad;
    for (auto& group : param_groups()) {
      for (auto& p : group.params()) {
        if (!p.grad().defined() || p.dim() <= 1) continue;  // batch norm, bias: plain SGD
        auto& grad = p.mutable_grad();
        if (weight_decay_ != 0) grad.add_(p, weight_decay_);
        const auto weight_norm = p.norm();
        const auto grad_norm = grad.norm();
        const auto ratio = torch::where((weight_norm > 0).logical_and(grad_norm > 0),
                                        trust_coefficient_ * weight_norm / grad_norm,
                                        torch::ones_like(weight_norm));
        grad.mul_(ratio);
      }
    }
  }
  return torch::optim::SGD::step(std::move(closure));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const OptimConfig& config, const std::vector<torch::Tensor>& parameters) {
  if (config.name == "adam") {
    return std::make_unique<torch::optim::Adam>(
        parameters, torch::optim::AdamOptions(config.lr).weight_decay(config.weight_decay));
  }
  if (config.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        parameters, torch::optim::AdamWOptions(config.lr).weight_decay(config.weight_decay));
  }
  if (config.name == "sgd") {
    return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(config.lr)
                                                               .momentum(config.momentum)
                                                               .nesterov(config.nesterov)
                                                               .weight_decay(config.weight_decay));
  }
  if (config.name == "lars") {
    return std::make_unique<Lars>(parameters, config.lr, config.momentum, config.weight_decay,
                                  config.trust_coefficient);
  }
  throw ConfigError("optim.name = \"" + config.name +
                    "\" is unknown; use adam, adamw, sgd or lars");
}

double scaled_learning_rate(const OptimConfig& config, int64_t global_batch) {
  const double ratio = double(global_batch) / double(config.base_batch);
  if (config.lr_scaling == "linear") return config.lr * ratio;
  if (config.lr_scaling == "sqrt") return config.lr * std::sqrt(ratio);
  SELFSUP_CHECK(config.lr_scaling == "none", "optim.lr_scaling = \"", config.lr_scaling,
                "\" is unknown; use none, linear or sqrt");
  return config.lr;
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
