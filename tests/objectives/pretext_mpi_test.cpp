// Every pretext task on N ranks computes what it computes on one rank with the whole global batch:
// different images on each rank, synchronised batch norm, per-sample randomness keyed by the
// sample. Two full steps (loss and gradients, the optimizer step, end_step: the GAN's generator
// update and the adversarial in-painting's discriminator update, each with its own gradient
// reduction), each compared: loss, reduced gradients, parameters and running statistics.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/train/optim.h"
#include "tests/dist/mpi_test_comm.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kPerRank = 3;

// `variant`: a pretext.task, or TASK_VARIANT for another setting of the task: the in-painting's
// adversarial term and centred hole, the colorization's regression, super-resolution by 4, the
// masking autoencoder.
Config task_config(const std::string& variant) {
  const std::string task = variant.substr(0, variant.find('_'));
  Config config;
  config.seed = 21;
  config.data.dataset = "synthetic";
  config.data.synthetic.channels = 3;
  config.augment.views = 1;
  config.augment.size = kSide;
  config.augment.mean = {0.5, 0.4, 0.3};
  config.augment.std = {0.25, 0.2, 0.3};
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.pretext.task = task;
  config.pretext.decoder_width = 8;
  config.pretext.jigsaw.permutations = 12;
  // The random variants, so that their keyed draws are compared too.
  config.pretext.inpainting.mask = "random";
  // Far above the paper's 0.001, so that the adversarial term weighs in the compared loss and
  // gradients.
  if (variant == "inpainting_adversarial") config.pretext.inpainting.adversarial_weight = 0.3;
  if (variant == "inpainting_center") config.pretext.inpainting.mask = "center";
  if (variant == "colorization_regression") config.pretext.colorization.target = "regression";
  if (variant == "superres_x4") config.pretext.superres.factor = 4;
  config.pretext.autoencoder.noise = variant == "autoencoder_mask" ? "mask" : "gaussian";
  // At width 4 with 30 % of the pixels masked, 3 ranks' first-step decoder gradients differed from
  // one process by up to 1.5e-4 (on 2 and 4 ranks, at width 8, or with 10 % masked: below 1e-5).
  // Most likely a nearly constant channel of so narrow a network amplifies the rounding of the
  // partitioned batch-norm sums; not a wrong draw: the masks are keyed by the sample, and a wrong
  // one would show at every width and rate.
  if (variant == "autoencoder_mask") config.model.width = 8;
  config.pretext.gan.latent_dim = 5;
  config.pretext.diffusion.timesteps = 50;
  // Plain SGD: Adam's first step divides by |g|, so it would turn 1e-9 of rounding in a
  // near-zero gradient into a full step of either sign. A small step: a large one drives batch-norm
  // channels of the diffusion decoder towards zero variance, where the next step's rounding is
  // amplified up to 1/sqrt(eps) (1.7e-5 at lr 0.05 against 2.5e-6 here).
  config.optim.name = "sgd";
  config.optim.lr = 0.01;
  config.optim.momentum = 0.9;
  return config;
}

struct Run {
  std::shared_ptr<Objective> objective;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<GradientReducer> reducer;
  std::map<std::string, torch::Tensor> reduced;  // the last step's reduced gradients, by name
};

Run make_run(const Config& config, std::shared_ptr<Communicator> comm) {
  torch::manual_seed(5);  // the same initial weights on every rank and in the reference
  Run run;
  run.objective = make_objective(config, 3, comm, kSide);
  run.optimizer = make_optimizer(config.optim, run.objective->trainable_parameters());
  run.reducer = std::make_unique<GradientReducer>(run.objective->trainable_parameters(), *comm);
  return run;
}

// One training step as the Trainer takes it; returns the loss (this rank's mean) and keeps the
// gradients the optimizer steps with (before end_step: the GAN's generator update back-propagates
// through the discriminator).
double step(Run& run, const torch::Tensor& images, const torch::Tensor& keys, int64_t index) {
  ObjectiveInput input;
  input.views = images.unsqueeze(0);
  input.keys = keys;
  input.epoch = index;
  input.step = index;
  input.lr = 0.01;
  run.optimizer->zero_grad();
  const auto out = run.objective->compute(input);
  out.loss.backward();
  run.reducer->reduce();
  run.reduced.clear();
  const auto trainable = run.objective->trainable_parameters();
  for (const auto& item : run.objective->named_parameters()) {
    const bool stepped =
        std::any_of(trainable.begin(), trainable.end(),
                    [&](const torch::Tensor& p) { return p.is_same(item.value()); });
    if (stepped && item.value().grad().defined())
      run.reduced[item.key()] = item.value().grad().clone();
  }
  run.optimizer->step();
  run.objective->end_step(/*applied=*/true);
  return out.loss.item<double>();
}

// Largest |a - b| relative to the largest |b| (at least 1).
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}

class MpiPretext : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiPretext, NRanksEqualOneRankOnTheGlobalBatch) {
  auto& comm = test_comm();
  const int rank = comm.rank(), world = comm.size();
  const int64_t global = kPerRank * world;
  const auto config = task_config(GetParam());
  torch::manual_seed(17);
  // [B_global, 3, side, side]: smooth-ish images (so the tasks have something to learn), and keys
  // that are not positions (dataset indices of a shuffled epoch).
  const auto images =
      torch::nn::functional::avg_pool2d(torch::randn({global, 3, kSide + 2, kSide + 2}),
                                        torch::nn::functional::AvgPool2dFuncOptions(3).stride(1));
  const auto keys = torch::randperm(1000, torch::kLong).narrow(0, 0, global);

  auto reference = make_run(config, std::make_shared<LocalCommunicator>());
  std::shared_ptr<Communicator> shared(&comm, [](Communicator*) {});  // non-owning
  auto distributed = make_run(config, shared);
  // The adversarial variant really has a discriminator, stepped by end_step (so that comparing its
  // parameters compares something).
  const bool adversarial = GetParam() == "inpainting_adversarial";
  torch::Tensor discriminator_start;
  if (adversarial) {
    ASSERT_EQ(reference.objective->own_optimizers().count("discriminator"), 1u);
    discriminator_start =
        reference.objective->named_parameters()["discriminator.fc.weight"].detach().clone();
  }

  for (int64_t index = 0; index < 2; ++index) {
    const std::string where =
        GetParam() + " step " + std::to_string(index) + " on rank " + std::to_string(rank) + ": ";
    const double expected = step(reference, images, keys, index);
    auto loss = torch::tensor({step(distributed, images.narrow(0, rank * kPerRank, kPerRank),
                                    keys.narrow(0, rank * kPerRank, kPerRank), index)},
                              torch::kDouble);
    comm.all_reduce_(loss, ReduceOp::kAvg);
    EXPECT_NEAR(loss.item<double>(), expected, 1e-5 * std::max(1.0, std::abs(expected))) << where;
    // The gradients the optimizer stepped with: the average over ranks equals the gradient of the
    // global batch.
    ASSERT_EQ(distributed.reduced.size(), reference.reduced.size()) << where;
    for (const auto& [name, expected_grad] : reference.reduced)
      EXPECT_LT(relative_error(distributed.reduced.at(name), expected_grad), 1e-5)
          << where << "gradient of " << name;
    // Then every parameter (the GAN's generator and the in-painting discriminator too) and
    // running statistic.
    auto ours = distributed.objective->named_parameters();
    for (const auto& item : reference.objective->named_parameters())
      EXPECT_LT(relative_error(ours[item.key()], item.value()), 1e-5) << where << item.key();
    auto our_buffers = distributed.objective->named_buffers();
    for (const auto& item : reference.objective->named_buffers()) {
      if (!item.value().is_floating_point()) {
        EXPECT_TRUE(torch::equal(our_buffers[item.key()], item.value())) << where << item.key();
        continue;
      }
      EXPECT_LT(relative_error(our_buffers[item.key()], item.value()), 1e-5) << where << item.key();
    }
    // The next step starts from the reference's weights, so that it measures that step's
    // agreement, not the first step's 1e-7 of rounding amplified by the network (a batch-norm
    // channel of small variance multiplies it by up to 1/sqrt(eps)).
    torch::NoGradGuard no_grad;
    for (const auto& item : reference.objective->named_parameters())
      ours[item.key()].copy_(item.value());
    for (const auto& item : reference.objective->named_buffers())
      our_buffers[item.key()].copy_(item.value());
  }
  if (adversarial) {
    EXPECT_FALSE(torch::equal(reference.objective->named_parameters()["discriminator.fc.weight"],
                              discriminator_start));
  }
}

INSTANTIATE_TEST_SUITE_P(Tasks, MpiPretext,
                         ::testing::Values("rotation", "jigsaw", "colorization",
                                           "colorization_regression", "inpainting",
                                           "inpainting_center", "inpainting_adversarial",
                                           "superres", "superres_x4", "autoencoder",
                                           "autoencoder_mask", "gan", "diffusion"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace selfsup
