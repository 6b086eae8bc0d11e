#include "selfsup/transfer/monitor.h"

#include <algorithm>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/transfer/features.h"
#include "selfsup/transfer/probes.h"

namespace selfsup {
namespace {

// The monitor's subsets come from a stream of their own, apart from fine-tuning's label subsets.
constexpr uint64_t kMonitorStream = 0x6D6F6E69746F72ULL;  // "monitor"

// A fixed class-balanced subset of about `samples` samples of `dataset` (all when it has fewer).
std::vector<int64_t> monitor_subset(const Dataset& dataset, int64_t samples, uint64_t seed) {
  const int64_t n = dataset.size();
  SELFSUP_CHECK(n > 0, "kNN monitor: ", dataset.describe(), " is empty");
  SELFSUP_CHECK(dataset.num_classes() >= 2, "kNN monitor: needs labels; ", dataset.describe(),
                " has ", dataset.num_classes(), " classes");
  const double fraction = std::min(1.0, double(samples) / double(n));
  return class_balanced_subset(dataset_labels(dataset), dataset.num_classes(), fraction,
                               mix_key(seed, kMonitorStream));
}

}  // namespace

KnnMonitor::KnnMonitor(const Config& config)
    : KnnMonitor(config, open_dataset(config.data, Split::kTrain),
                 open_dataset(config.data, Split::kTest)) {}

KnnMonitor::KnnMonitor(const Config& config, std::shared_ptr<const Dataset> train,
                       std::shared_ptr<const Dataset> test)
    : config_(config), train_(std::move(train)), test_(std::move(test)) {
  SELFSUP_CHECK(train_ && test_, "kNN monitor: needs a training and a test dataset");
  train_indices_ = monitor_subset(*train_, config_.monitor.train_samples, config_.seed);
  test_indices_ = monitor_subset(*test_, config_.monitor.test_samples, config_.seed);
}

double KnnMonitor::score(Encoder& encoder, Communicator& comm) const {
  ExtractOptions options(config_.augment);
  options.batch_size = config_.transfer.batch_size;
  options.indices = train_indices_;
  const FeatureSet bank = extract_features_distributed(encoder, *train_, options, comm);
  options.indices = test_indices_;
  const FeatureSet queries = extract_features_distributed(encoder, *test_, options, comm);
  const int64_t classes = std::max(train_->num_classes(), test_->num_classes());
  // Every rank holds the same gathered features and votes alike; rank 0's value is broadcast so
  // that a difference in threading between hosts cannot split the ranks on a tie.
  const double top1 = knn_top1(bank, queries, classes, config_.transfer.knn);
  const auto parameters = encoder.parameters();
  const torch::Device device = comm.backend() == "nccl" && !parameters.empty()
                                   ? parameters.front().device()
                                   : torch::Device(torch::kCPU);
  auto value = torch::tensor({top1}, torch::kDouble).to(device);
  comm.broadcast_(value, 0);
  return value.to(torch::kCPU).item<double>();
}

double knn_monitor(const Config& config, Encoder& encoder, Communicator& comm) {
  return KnnMonitor(config).score(encoder, comm);
}

}  // namespace selfsup
