#pragma once
// A test of tasks that step a network of their own (the GAN's generator, the in-painting
// discriminator): that network's optimizer state goes through a checkpoint.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "../data/temp_dir.h"
#include "selfsup/core/config.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/train/checkpoint.h"
#include "selfsup/train/optim.h"

namespace selfsup {

/// `make` builds the task from the current torch seed; `step(objective, optimizer, index)` takes
/// one full training step (the Trainer's optimizer, then end_step). Two steps, a checkpoint with
/// the task's own optimizers (optimizer.<own>.pt must exist), a restore into a task built from
/// other initial weights, then one more step on both: identical parameters, so the own optimizer's
/// state (e.g. Adam's moments) came back.
inline void expect_own_optimizer_checkpointed(
    const Config& config, const std::function<std::shared_ptr<Objective>()>& make,
    const std::function<void(Objective&, torch::optim::Optimizer&, int64_t)>& step,
    const std::string& own) {
  TempDir dir;
  torch::manual_seed(3);
  auto objective = make();
  auto optimizer = make_optimizer(config.optim, objective->trainable_parameters());
  for (int64_t index = 0; index < 2; ++index) step(*objective, *optimizer, index);
  CheckpointInfo info;
  info.step = 2;
  info.config_json = config_to_json(config);
  const auto path = save_checkpoint(dir / "checkpoints", info, *objective, optimizer.get(), {},
                                    objective->own_optimizers());
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(path) / ("optimizer." + own + ".pt")));

  torch::manual_seed(77);  // other initial weights: everything must come from the checkpoint
  auto restored = make();
  auto restored_optimizer = make_optimizer(config.optim, restored->trainable_parameters());
  load_model(path, *restored);
  load_optimizer(path, *restored_optimizer);
  for (const auto& [name, optimizer_of_own] : restored->own_optimizers())
    load_optimizer(path, *optimizer_of_own, name);
  // One more step on both: identical parameters (Adam's moments of both networks restored).
  step(*objective, *optimizer, 2);
  step(*restored, *restored_optimizer, 2);
  const auto a = objective->named_parameters();
  for (const auto& item : restored->named_parameters()) {
    EXPECT_TRUE(torch::equal(a[item.key()], item.value())) << item.key();
  }
}

}  // namespace selfsup
