// Tests of the transfer stage's parts on one rank: class-balanced label subsets, feature
// extraction (sharded form in a world of one), fine-tuning, the kNN monitor, the config keys and
// the results table. The multi-rank forms are in transfer_mpi_test.cpp.

#include "selfsup/transfer/transfer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "pattern_dataset.h"
#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/transfer/features.h"
#include "selfsup/transfer/finetune.h"
#include "selfsup/transfer/monitor.h"

namespace selfsup {
namespace {

std::map<int64_t, int64_t> class_counts(const torch::Tensor& labels,
                                        const std::vector<int64_t>& subset) {
  std::map<int64_t, int64_t> counts;
  for (const int64_t i : subset) ++counts[labels[i].item<int64_t>()];
  return counts;
}

// 10 classes of 600 samples each, in a shuffled order.
torch::Tensor balanced_labels() {
  torch::Generator generator = at::detail::createCPUGenerator(5);
  const auto labels = torch::arange(6000, torch::kLong).remainder(10);
  return labels.index_select(0, torch::randperm(6000, generator, torch::kLong));
}

TEST(ClassBalancedSubset, EqualCountsPerClass) {
  const auto labels = balanced_labels();
  for (const double fraction : {0.01, 0.1, 0.5}) {
    const auto subset = class_balanced_subset(labels, 10, fraction, /*seed=*/3);
    const auto per_class = std::llround(fraction * 600);
    EXPECT_EQ(subset.size(), size_t(10 * per_class)) << fraction;
    const auto counts = class_counts(labels, subset);
    ASSERT_EQ(counts.size(), 10u) << fraction;
    for (const auto& [label, count] : counts) EXPECT_EQ(count, per_class) << label;
    EXPECT_TRUE(std::is_sorted(subset.begin(), subset.end()));
    EXPECT_EQ(std::set<int64_t>(subset.begin(), subset.end()).size(), subset.size());
  }
}

TEST(ClassBalancedSubset, DeterministicForSeedAndDifferentAcrossSeeds) {
  const auto labels = balanced_labels();
  EXPECT_EQ(class_balanced_subset(labels, 10, 0.1, 7), class_balanced_subset(labels, 10, 0.1, 7));
  EXPECT_NE(class_balanced_subset(labels, 10, 0.1, 7), class_balanced_subset(labels, 10, 0.1, 8));
}

TEST(ClassBalancedSubset, SmallerFractionsAreNested) {
  const auto labels = balanced_labels();
  const auto one = class_balanced_subset(labels, 10, 0.01, 11);
  const auto ten = class_balanced_subset(labels, 10, 0.1, 11);
  const auto all = class_balanced_subset(labels, 10, 1.0, 11);
  EXPECT_TRUE(std::includes(ten.begin(), ten.end(), one.begin(), one.end()));
  EXPECT_TRUE(std::includes(all.begin(), all.end(), ten.begin(), ten.end()));
  EXPECT_EQ(all.size(), 6000u);
}

TEST(ClassBalancedSubset, SmallClassGivesAllItHasAndEveryClassGetsOne) {
  // Class 2 has only 3 samples; 20 % of 100 over 3 classes asks for 7 of each.
  std::vector<int64_t> values(100, 0);
  for (int i = 0; i < 50; ++i) values[i] = 1;
  values[97] = values[98] = values[99] = 2;
  const auto labels = torch::tensor(values, torch::kLong);
  const auto counts = class_counts(labels, class_balanced_subset(labels, 3, 0.2, 1));
  EXPECT_EQ(counts.at(0), 7);
  EXPECT_EQ(counts.at(1), 7);
  EXPECT_EQ(counts.at(2), 3);
  // A tiny fraction still labels one sample of every class.
  const auto tiny = class_counts(labels, class_balanced_subset(labels, 3, 1e-4, 1));
  EXPECT_EQ(tiny.size(), 3u);
  EXPECT_THROW(class_balanced_subset(labels, 3, 0.0, 1), Error);
  EXPECT_THROW(class_balanced_subset(labels, 2, 0.5, 1), Error);  // label 2 out of range
}

TEST(Features, ShardedInAWorldOfOneEqualsLocalAndKeepsOrder) {
  PatternDataset dataset(37);
  const Config config = tiny_transfer_config();
  torch::manual_seed(1);
  auto encoder = make_encoder(config.model, 1);
  ExtractOptions options(config.augment);
  options.batch_size = 8;
  options.indices = {30, 2, 17, 5};
  LocalCommunicator comm;
  const auto local = extract_features(*encoder, dataset, options);
  const auto sharded = extract_features_distributed(*encoder, dataset, options, comm);
  ASSERT_EQ(local.features.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_TRUE(torch::equal(local.features, sharded.features));
  EXPECT_TRUE(torch::equal(local.labels, sharded.labels));
  for (int64_t row = 0; row < 4; ++row) {
    EXPECT_EQ(local.labels[row].item<int64_t>(), dataset.get(options.indices[row]).label);
  }
  // The row of sample 17 does not depend on the batch it was computed in.
  ExtractOptions single(config.augment);
  single.indices = {17};
  EXPECT_TRUE(torch::allclose(extract_features(*encoder, dataset, single).features[0],
                              local.features[2], 1e-5, 1e-6));
}

TEST(Finetune, LearnsThePatternAndLeavesThePretrainedEncoderAlone) {
  PatternDataset train(240), test(60, 4, /*seed=*/9);
  Config config = tiny_transfer_config();
  config.transfer.finetune.max_steps = 40;
  config.transfer.finetune.epochs = 100;
  config.transfer.finetune.batch_size = 24;
  torch::manual_seed(2);
  auto pretrained = make_encoder(config.model, 1);
  const auto before = pretrained->parameters().front().clone();
  LocalCommunicator comm;
  FinetuneData data{&train, class_balanced_subset(dataset_labels(train), 4, 1.0, 0), &test};
  const auto result = finetune(config, data, pretrained.get(), comm);
  EXPECT_EQ(result.steps, 40);
  EXPECT_EQ(result.global_batch, 24);
  EXPECT_DOUBLE_EQ(result.epochs, 40.0 * 24.0 / 240.0);
  ASSERT_EQ(result.losses.size(), 40u);
  EXPECT_LT(result.losses.back(), result.losses.front());
  EXPECT_GT(result.top1, 60.0);  // chance is 25 %
  EXPECT_TRUE(torch::equal(before, pretrained->parameters().front()));
  // The weights were copied from the pretrained encoder, then trained: they moved.
  EXPECT_FALSE(torch::equal(before, result.encoder->parameters().front()));
}

TEST(Finetune, SmallSubsetClipsTheBatchAndFollowsTheEpochBudget) {
  PatternDataset train(100), test(20);
  Config config = tiny_transfer_config();
  config.transfer.finetune.max_steps = 0;  // no cap: epochs decide
  config.transfer.finetune.epochs = 3;
  config.transfer.finetune.batch_size = 256;
  LocalCommunicator comm;
  // 10 % of 100 over 4 classes: round(2.5) = 3 per class (llround rounds halves away from 0).
  FinetuneData data{&train, class_balanced_subset(dataset_labels(train), 4, 0.1, 0), &test};
  ASSERT_EQ(data.labelled.size(), 12u);
  const auto result = finetune(config, data, nullptr, comm);
  EXPECT_EQ(result.global_batch, 12);
  EXPECT_EQ(result.steps, 3);
  EXPECT_GE(result.top1, 0.0);
  EXPECT_LE(result.top1, 100.0);
}

TEST(KnnMonitor, ScoresFixedSubsetsWithoutChangingTheEncoder) {
  auto train = std::make_shared<PatternDataset>(200);
  auto test = std::make_shared<PatternDataset>(50, 4, /*seed=*/4);
  const Config config = tiny_transfer_config();
  torch::manual_seed(3);
  auto encoder = make_encoder(config.model, 1);
  encoder->train();
  LocalCommunicator comm;
  const KnnMonitor monitor(config, train, test);
  EXPECT_EQ(monitor.train_samples(), 40);  // 10 of each of 4 classes
  EXPECT_EQ(monitor.test_samples(), 16);   // round(17 / 4) = 4 of each
  const double first = monitor.score(*encoder, comm);
  EXPECT_TRUE(encoder->is_training());
  EXPECT_GE(first, 0.0);
  EXPECT_LE(first, 100.0);
  EXPECT_EQ(first, monitor.score(*encoder, comm));
}

TEST(TransferConfig, FinetuneAndMonitorKeys) {
  const auto config = parse_config(
      R"({"transfer": {"finetune": {"fractions": [0.05, 1.0], "max_steps": 7, "optimizer": "sgd",
          "augment": false}}, "monitor": {"every_epochs": 2, "train_samples": 100}})",
      "test.json");
  EXPECT_EQ(config.transfer.finetune.fractions, (std::vector<double>{0.05, 1.0}));
  EXPECT_EQ(config.transfer.finetune.max_steps, 7);
  EXPECT_EQ(config.transfer.finetune.optimizer, "sgd");
  EXPECT_FALSE(config.transfer.finetune.augment);
  EXPECT_EQ(config.monitor.every_epochs, 2);
  EXPECT_EQ(config.monitor.train_samples, 100);
  EXPECT_THROW(parse_config(R"({"transfer": {"finetune": {"fractions": [0.0]}}})", "t.json"),
               ConfigError);
  EXPECT_THROW(parse_config(R"({"transfer": {"finetune": {"fractions": [1.5]}}})", "t.json"),
               ConfigError);
  EXPECT_THROW(parse_config(R"({"transfer": {"finetune": {"fractions": []}}})", "t.json"),
               ConfigError);
  // Off: an empty list is fine.
  EXPECT_NO_THROW(
      parse_config(R"({"transfer": {"finetune": {"enabled": false, "fractions": []}}})", "t.json"));
  EXPECT_THROW(parse_config(R"({"monitor": {"every_epoch": 1}})", "t.json"), ConfigError);
}

nlohmann::json sample_results() {
  auto run = [](double top1) {
    return nlohmann::json{{"top1", top1}, {"steps", 60}, {"epochs", 25.6}, {"seconds", 1.0}};
  };
  nlohmann::json results = {
      {"dataset", "fashion-mnist"},
      {"test_samples", 10000},
      {"encoder", "convnet"},
      {"linear_probe", {{"top1", 85.5}}},
      {"knn", {{"top1", 84.25}, {"k", 200}}},
      {"baselines", {{"raw_pixels", {{"top1", 84.0}}}, {"random_encoder", {{"top1", 79.0}}}}},
      {"wall_seconds", 12.0}};
  results["finetune"]["settings"] = {{"optimizer", "adam"},
                                     {"lr", 0.001},
                                     {"batch_size", 256},
                                     {"augment", "crop+flip"},
                                     {"max_steps", 60}};
  for (const double fraction : {0.01, 0.1, 1.0}) {
    results["finetune"]["fractions"].push_back({{"fraction", fraction},
                                                {"pretrained", run(70.0 + 10 * fraction)},
                                                {"random_init", run(60.0)},
                                                {"raw_pixels", {{"top1", 55.0}}},
                                                {"linear_probe", {{"top1", 71.0}}}});
  }
  return results;
}

TEST(ResultsReport, TableHasEveryMethodAndFraction) {
  const std::string table = format_results_table(sample_results());
  for (const char* text : {"linear probe", "kNN (k=200)", "raw pixels", "random encoder", "1%",
                           "10%", "100%", "fine-tuned", "random init", "80.00 %", "84.25 %"}) {
    EXPECT_NE(table.find(text), std::string::npos) << text << "\n" << table;
  }
  // Without fine-tuning the table is the frozen-encoder part alone.
  auto frozen_only = sample_results();
  frozen_only.erase("finetune");
  EXPECT_EQ(format_results_table(frozen_only).find("fine-tuned"), std::string::npos);
}

TEST(ResultsReport, PlotsWhenGnuplotIsInstalled) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "no gnuplot";
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("selfsup_report_" + std::to_string(::getpid()));
  fs::create_directories(dir / "transfer");
  {
    std::ofstream csv(dir / "monitor.csv");
    csv << "step,epoch,knn_top1\n100,0,60.5\n200,1,70.25\n300,2,74\n";
  }
  EXPECT_TRUE(write_results_plots(sample_results(), (dir / "transfer").string(),
                                  (dir / "monitor.csv").string()));
  EXPECT_GT(fs::file_size(dir / "transfer" / "results.png"), 1000u);
  EXPECT_GT(fs::file_size(dir / "transfer" / "monitor.png"), 1000u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace selfsup
