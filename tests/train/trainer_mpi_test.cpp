// World-size invariance end to end (DESIGN.md invariant 3): five steps of the real trainer with
// synchronized batch norm on N ranks (N = 2, 3, 4 under mpirun) follow the same trajectory as one
// process with the same global batch: the same per-step losses and the same final parameters and
// buffers, within 1e-5 relative; also with a queue of recycled keys and a momentum key encoder,
// with the local views of multi-crop, and with gradient accumulation. And accumulation against
// the ranks it stands for: K micro-batches on one process take the steps of K ranks.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "selfsup/core/config.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/train/trainer.h"
#include "tests/dist/mpi_test_comm.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;

Config tiny_config() {
  Config config;
  config.seed = 3;
  config.data.limit_train = 96;
  config.data.workers = 1;
  config.model.width = 4;
  config.model.head_hidden = 32;
  config.model.proj_dim = 16;
  config.model.batch_norm = "sync";
  config.train.batch_size = 24;  // divisible by 1, 2, 3 and 4
  config.train.max_steps = 5;
  config.train.epochs = 2;
  config.train.log_every = 1;
  // SGD keeps the update linear in the gradient. (Adam divides by the gradient's running RMS, so a
  // parameter whose exact gradient is 0, like a bias before batch norm, would turn rounding noise
  // into full-size steps and the comparison would measure noise.)
  config.optim.name = "sgd";
  config.optim.lr = 0.1;
  config.optim.warmup_steps = 0;
  return config;
}

std::vector<double> losses(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  }
  return out;
}

// Runs `config` on every rank of the test world and, on rank 0, alone; expects the same per-step
// losses and final parameters and buffers (the queue and the momentum encoder included).
// `check`, when given, runs on rank 0 with the distributed run's directory.
void expect_same_run_on_one_rank(const Config& config, const std::string& tag,
                                 const std::function<void(const fs::path&)>& check = {}) {
  auto& comm = test_comm();
  const int rank = comm.rank(), world = comm.size();
  // Ranks share a host: rank 0's process id names the directory for all of them.
  auto id = torch::full({1}, int64_t(::getpid()), torch::kLong);
  comm.broadcast_(id, 0);
  const fs::path root = fs::temp_directory_path() /
                        ("selfsup_trainer_mpi_" + tag + "_" + std::to_string(id.item<int64_t>()));
  const auto distributed_dir = root / ("world" + std::to_string(world));
  if (rank == 0) prepare_run_dir(distributed_dir.string(), config, "trainer_mpi_test");
  comm.barrier();

  std::shared_ptr<Communicator> shared(&comm, [](Communicator*) {});
  Trainer distributed(config, distributed_dir.string(), shared);
  const auto result = distributed.run();
  EXPECT_EQ(result.steps, 5);
  int64_t synchronized = 0;
  for (const auto& module : distributed.objective()->modules()) {
    synchronized += std::dynamic_pointer_cast<SyncBatchNormImpl>(module) != nullptr;
  }
  EXPECT_EQ(synchronized, config.negatives.momentum > 0 ? 8 : 4);  // the key encoder's too

  // Every rank holds the same buffers: the queue (and its write position) bit for bit, since
  // every rank pushes the same gathered keys; the batch-norm statistics too, since every rank
  // receives the same all-reduced sums.
  for (const auto& item : distributed.objective()->named_buffers()) {
    auto mine = item.value().to(torch::kDouble).flatten();
    auto reference = mine.clone();
    comm.broadcast_(reference, 0);
    EXPECT_TRUE(torch::equal(mine, reference)) << item.key() << " on rank " << rank;
  }

  if (rank == 0) {
    // The same run in one process (rank 0 alone, no collective).
    const auto single_dir = root / "world1";
    prepare_run_dir(single_dir.string(), config, "trainer_mpi_test");
    Trainer single(config, single_dir.string(), std::make_shared<LocalCommunicator>());
    const auto single_result = single.run();
    EXPECT_EQ(result.candidates_per_anchor, single_result.candidates_per_anchor);

    const auto expected = losses(single_dir), got = losses(distributed_dir);
    ASSERT_EQ(expected.size(), 5u);
    ASSERT_EQ(got.size(), 5u);
    for (size_t step = 0; step < expected.size(); ++step) {
      EXPECT_NEAR(got[step], expected[step], 1e-5 * std::abs(expected[step]))
          << "step " << step + 1 << " on " << world << " ranks";
    }
    // Parameters and buffers: the whole vector within 1e-5 relative (||a - b|| / ||b||), and every
    // tensor within 5e-4 of its own scale, so that a wrong update of one small tensor still shows
    // (it would be off by its whole update, O(1) of its scale). A batch-norm bias is a difference
    // of sums over 10^4 activations, and different partitions of those sums round differently:
    // measured up to 2.9e-4 of the bias (about 3e-7 absolute) after five steps of the queue and
    // momentum run on 2 to 4 ranks with the full colour recipe's views, 1.6e-6 for the whole
    // vector.
    auto ours = distributed.objective()->named_parameters();
    auto ours_buffers = distributed.objective()->named_buffers();
    double squared_difference = 0, squared_norm = 0;
    auto compare = [&](const std::string& name, const torch::Tensor& theirs,
                       const torch::Tensor& mine) {
      const auto reference = theirs.to(torch::kDouble);
      const auto difference = mine.to(torch::kDouble) - reference;
      squared_difference += difference.pow(2).sum().item<double>();
      squared_norm += reference.pow(2).sum().item<double>();
      const double scale = std::max(1e-3, reference.abs().max().item<double>());
      EXPECT_LT(difference.abs().max().item<double>() / scale, 5e-4)
          << name << " on " << world << " ranks";
    };
    for (const auto& item : single.objective()->named_parameters())
      compare(item.key(), item.value(), ours[item.key()]);
    for (const auto& item : single.objective()->named_buffers())
      compare(item.key(), item.value(), ours_buffers[item.key()]);
    const double relative = std::sqrt(squared_difference / squared_norm);
    EXPECT_LT(relative, 1e-5) << "all parameters on " << world << " ranks";
    std::printf("%s, world %d: parameters and buffers within %.2e relative of one process\n",
                tag.c_str(), world, relative);
    if (check) check(distributed_dir);
    fs::remove_all(root);
  }
  comm.barrier();
}

TEST(MpiTrainer, SyncBatchNormRunIsIndependentOfTheWorldSize) {
  expect_same_run_on_one_rank(tiny_config(), "sync_bn");
}

TEST(MpiTrainer, QueueAndMomentumEncoderRunIsIndependentOfTheWorldSize) {
  // At lr 0.1 this run left one process from step 4 on, on 4 ranks only (local batch 6): 1e-4 of
  // the loss, 2.4e-4 of the parameters. It is the amplified rounding of an unstable trajectory, not
  // a wrong computation: it does not need the queue (5e-5 without it), it grows as the momentum
  // encoder follows faster (2.5e-3 at m = 0.5, 2e-5 at m = 0.99), it shrinks with a wider encoder,
  // and it vanishes below a step size (lr 0.05: 4.6e-7; 0.03: 5.5e-8) where a wrong term would
  // shrink only in proportion. Steps of 0.03 keep 4 ranks in the comparison with a margin.
  // Negatives from the batch and a queue of two steps' keys (filled after step 2, then recycled),
  // keys from a momentum encoder, tiled loss: every rank enqueues the same gathered keys.
  Config config = tiny_config();
  config.negatives.source = "batch+queue";
  config.negatives.queue_size = 2 * config.train.batch_size * config.augment.views;
  config.negatives.momentum = 0.9;
  config.loss.tiled = true;
  config.loss.block_size = 20;
  config.optim.lr = 0.03;
  expect_same_run_on_one_rank(config, "queue_momentum");
}

TEST(MpiTrainer, MultiCropRunIsIndependentOfTheWorldSize) {
  // Two global views of 28x28 and three local views of 12x12 per image: every view of an image is
  // a positive of every other, the local views forming their own encoder batch.
  Config config = tiny_config();
  config.augment.local_views = 3;
  config.augment.local_size = 12;
  config.augment.local_crop_scale = {0.05, 0.4};
  expect_same_run_on_one_rank(config, "multi_crop");
}

TEST(MpiTrainer, AccumulatedRunIsIndependentOfTheWorldSize) {
  // Two micro-batches per optimizer step with a queue of four micro-batches' keys: every rank
  // accumulates its slices, the reduction averages once per step, and both micro-batches' keys
  // are enqueued after the step.
  Config config = tiny_config();
  config.train.accumulate_steps = 2;
  config.train.epochs = 3;  // 96 images: 4 batches of 24, 2 optimizer steps per epoch
  const int64_t keys_per_batch = config.train.batch_size * config.augment.views;
  config.negatives.source = "batch+queue";
  config.negatives.queue_size = 4 * keys_per_batch;
  expect_same_run_on_one_rank(config, "accumulate", [](const fs::path& run_dir) {
    std::ifstream in(run_dir / "metrics.jsonl");
    std::vector<double> fill;
    for (std::string line; std::getline(in, line);)
      fill.push_back(nlohmann::json::parse(line).at("queue_fill").get<double>());
    ASSERT_GE(fill.size(), 3u);
    // The queue as each step found it: empty, then two micro-batches' keys, then four (full).
    EXPECT_EQ(fill[0], 0.0);
    EXPECT_EQ(fill[1], 0.5);
    EXPECT_EQ(fill[2], 1.0);
    std::ifstream summary_file(run_dir / "summary.json");
    const auto summary = nlohmann::json::parse(summary_file);
    EXPECT_EQ(summary.at("optimizer_batch").get<int64_t>(), 48);
    EXPECT_EQ(summary.at("images_seen").get<int64_t>(), 5 * 48);
  });
}

TEST(MpiTrainer, AccumulatedMicroBatchesTakeTheStepsOfTheRanksTheyReplace) {
  // Gradient accumulation against data parallelism: K micro-batches of b images on one process
  // take the same steps as K ranks with b images each (global batch K x b), since both average the
  // same K gradients of per-sample mean losses, batch statistics taken over b images (local batch
  // norm) in both. Rotation prediction couples the samples of a batch in nothing else. The
  // sampler makes micro-batch m of step s the slice that rank m takes of global batch s.
  auto& comm = test_comm();
  const int rank = comm.rank(), world = comm.size();
  Config config = tiny_config();
  config.pretext.task = "rotation";
  config.augment.views = 1;
  config.model.batch_norm = "local";
  config.train.batch_size = 12 * world;
  config.train.epochs = 3;  // at least 2 steps per epoch on 2, 3 and 4 ranks: 5 steps in all
  auto id = torch::full({1}, int64_t(::getpid()), torch::kLong);
  comm.broadcast_(id, 0);
  const fs::path root = fs::temp_directory_path() /
                        ("selfsup_trainer_accumulate_" + std::to_string(id.item<int64_t>()));
  const auto ranks_dir = root / "ranks";
  if (rank == 0) prepare_run_dir(ranks_dir.string(), config, "trainer_mpi_test");
  comm.barrier();
  std::shared_ptr<Communicator> shared(&comm, [](Communicator*) {});
  Trainer ranks(config, ranks_dir.string(), shared);
  EXPECT_EQ(ranks.run().steps, 5);

  if (rank == 0) {
    Config accumulated = config;
    accumulated.train.batch_size = 12;
    accumulated.train.accumulate_steps = world;
    const auto accumulated_dir = root / "accumulated";
    prepare_run_dir(accumulated_dir.string(), accumulated, "trainer_mpi_test");
    Trainer single(accumulated, accumulated_dir.string(), std::make_shared<LocalCommunicator>());
    EXPECT_EQ(single.run().steps, 5);

    const auto expected = losses(ranks_dir), got = losses(accumulated_dir);
    ASSERT_EQ(expected.size(), 5u);
    ASSERT_EQ(got.size(), 5u);
    for (size_t step = 0; step < expected.size(); ++step) {
      EXPECT_NEAR(got[step], expected[step], 1e-5 * std::abs(expected[step]))
          << "step " << step + 1 << ": " << world << " micro-batches against " << world << " ranks";
    }
    // The parameters (the running statistics differ: each rank keeps its own with local batch
    // norm, the accumulating process updates its own once per micro-batch).
    auto ours = single.objective()->named_parameters();
    double squared_difference = 0, squared_norm = 0;
    for (const auto& item : ranks.objective()->named_parameters()) {
      const auto reference = item.value().to(torch::kDouble);
      const auto difference = ours[item.key()].to(torch::kDouble) - reference;
      squared_difference += difference.pow(2).sum().item<double>();
      squared_norm += reference.pow(2).sum().item<double>();
      const double scale = std::max(1e-3, reference.abs().max().item<double>());
      EXPECT_LT(difference.abs().max().item<double>() / scale, 5e-4) << item.key();
    }
    const double relative = std::sqrt(squared_difference / squared_norm);
    EXPECT_LT(relative, 1e-5) << world << " micro-batches against " << world << " ranks";
    std::printf("%d micro-batches on one process against %d ranks: parameters within %.2e\n", world,
                world, relative);
    fs::remove_all(root);
  }
  comm.barrier();
}

}  // namespace
}  // namespace selfsup
