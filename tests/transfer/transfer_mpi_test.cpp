// The transfer stage on N ranks (N = 2, 3, 4 under mpirun) against one process: sharded feature
// extraction equals single-rank extraction (uneven shards, empty shards), fine-tuning follows the
// same trajectory as one process with the same global batch, and the kNN monitor gives the same
// value on every rank.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "pattern_dataset.h"
#include "selfsup/core/config.h"
#include "selfsup/transfer/features.h"
#include "selfsup/transfer/finetune.h"
#include "selfsup/transfer/monitor.h"
#include "tests/dist/mpi_test_comm.h"

namespace selfsup {
namespace {

// Rank 0's copy of `x` on every rank (to compare a rank's value with rank 0's).
torch::Tensor from_rank0(const torch::Tensor& x) {
  auto copy = x.to(torch::kDouble).contiguous().clone();
  test_comm().broadcast_(copy, 0);
  return copy;
}

TEST(MpiTransfer, ShardedFeaturesEqualSingleRankFeatures) {
  auto& comm = test_comm();
  PatternDataset dataset(37);  // 37 = 2*19-1 = 3*13-2 = 4*10-3: uneven shards at every size
  const Config config = tiny_transfer_config();
  torch::manual_seed(1);  // the same encoder on every rank
  auto encoder = make_encoder(config.model, 1);
  ExtractOptions options(config.augment);
  options.batch_size = 5;  // several batches per shard, a short last one
  for (const auto& indices : std::vector<std::vector<int64_t>>{
           {}, {36, 0, 11, 7, 20}, {13}, {4, 5}}) {  // all; 5 out of order; fewer than ranks
    options.indices = indices;
    const auto expected = extract_features(*encoder, dataset, options);
    const auto got = extract_features_distributed(*encoder, dataset, options, comm);
    const int64_t n = indices.empty() ? 37 : int64_t(indices.size());
    ASSERT_EQ(got.features.sizes(), (std::vector<int64_t>{n, 16}));
    EXPECT_TRUE(torch::equal(got.labels, expected.labels)) << n << " samples";
    // Batch composition may change the kernels' rounding, nothing more.
    EXPECT_TRUE(torch::allclose(got.features, expected.features, 1e-5, 1e-6))
        << n << " samples, max difference "
        << (got.features - expected.features).abs().max().item<double>();
    // Every rank receives the same tensor.
    EXPECT_TRUE(torch::equal(got.features.to(torch::kDouble), from_rank0(got.features)));
  }
}

TEST(MpiTransfer, FinetuneMatchesOneProcessOnTheSameGlobalBatch) {
  auto& comm = test_comm();
  const int world = comm.size();
  PatternDataset train(120), test(30, 4, /*seed=*/5);
  Config config = tiny_transfer_config();
  config.model.batch_norm = "sync";
  // SGD: the update is linear in the gradient (Adam would blow rounding noise of a zero gradient up
  // to full-size steps; see tests/train/trainer_mpi_test.cpp).
  config.transfer.finetune.optimizer = "sgd";
  config.transfer.finetune.max_steps = 4;
  config.transfer.finetune.batch_size = 24;  // divisible by 1, 2, 3 and 4
  torch::manual_seed(7);
  auto pretrained = make_encoder(config.model, 1);
  FinetuneData data{&train, class_balanced_subset(dataset_labels(train), 4, 0.5, config.seed),
                    &test};
  ASSERT_EQ(data.labelled.size(), 60u);

  const auto distributed = finetune(config, data, pretrained.get(), comm);
  EXPECT_EQ(distributed.steps, 4);
  EXPECT_EQ(distributed.global_batch, 24);
  // Every rank ends with the same losses, accuracy and weights.
  EXPECT_TRUE(torch::equal(torch::tensor(distributed.losses, torch::kDouble),
                           from_rank0(torch::tensor(distributed.losses, torch::kDouble))));
  EXPECT_EQ(distributed.top1,
            from_rank0(torch::tensor({distributed.top1}, torch::kDouble)).item<double>());
  for (const auto& p : distributed.encoder->parameters()) {
    EXPECT_TRUE(torch::equal(p.to(torch::kDouble), from_rank0(p)));
  }

  LocalCommunicator local;
  const auto single = finetune(config, data, pretrained.get(), local);
  ASSERT_EQ(single.losses.size(), distributed.losses.size());
  for (size_t step = 0; step < single.losses.size(); ++step) {
    EXPECT_NEAR(distributed.losses[step], single.losses[step], 1e-5 * single.losses[step])
        << "step " << step << " on " << world << " ranks";
  }
  double squared_difference = 0, squared_norm = 0;
  auto ours = distributed.encoder->named_parameters();
  for (const auto& item : single.encoder->named_parameters()) {
    const auto reference = item.value().to(torch::kDouble);
    squared_difference +=
        (ours[item.key()].to(torch::kDouble) - reference).pow(2).sum().item<double>();
    squared_norm += reference.pow(2).sum().item<double>();
  }
  for (const auto& item : single.classifier->named_parameters()) {
    const auto reference = item.value().to(torch::kDouble);
    const auto mine = distributed.classifier->named_parameters()[item.key()].to(torch::kDouble);
    squared_difference += (mine - reference).pow(2).sum().item<double>();
    squared_norm += reference.pow(2).sum().item<double>();
  }
  const double relative = std::sqrt(squared_difference / squared_norm);
  EXPECT_LT(relative, 1e-5) << world << " ranks";
  EXPECT_NEAR(distributed.top1, single.top1, 100.0 / 30.0 + 1e-9);  // at most one test image
  if (comm.rank() == 0) {
    std::printf("fine-tuning on %d ranks: parameters within %.2e relative of one process\n", world,
                relative);
  }
}

TEST(MpiTransfer, KnnMonitorIsTheSameOnEveryRank) {
  auto& comm = test_comm();
  auto train = std::make_shared<PatternDataset>(90);
  auto test = std::make_shared<PatternDataset>(31, 4, /*seed=*/2);
  const Config config = tiny_transfer_config();
  torch::manual_seed(11);
  auto encoder = make_encoder(config.model, 1);
  const KnnMonitor monitor(config, train, test);
  const double value = monitor.score(*encoder, comm);
  EXPECT_EQ(value, from_rank0(torch::tensor({value}, torch::kDouble)).item<double>());
  LocalCommunicator local;
  EXPECT_EQ(value, monitor.score(*encoder, local));
}

}  // namespace
}  // namespace selfsup
