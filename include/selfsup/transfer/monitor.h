#pragma once
// The online kNN monitor: how well the current encoder's features separate the classes, cheap
// enough to run at the end of every pretraining epoch. Weighted kNN (transfer.knn's k and
// temperature) of `monitor.test_samples` test images against `monitor.train_samples` training
// images, both fixed class-balanced subsets (drawn from the run seed), features sharded over the
// ranks.

#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/data/dataset.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder.h"

namespace selfsup {

class KnnMonitor {
 public:
  /// Opens the train and test splits of `config.data` and fixes the subsets (no collective).
  explicit KnnMonitor(const Config& config);
  /// The same on given splits (tests, or a caller that already holds them).
  KnnMonitor(const Config& config, std::shared_ptr<const Dataset> train,
             std::shared_ptr<const Dataset> test);

  /// Collective: kNN top-1 (percent) of `encoder` on the subsets, the same value on every rank.
  /// Leaves the encoder's training mode as it found it, and draws no random numbers.
  double score(Encoder& encoder, Communicator& comm) const;

  int64_t train_samples() const { return static_cast<int64_t>(train_indices_.size()); }
  int64_t test_samples() const { return static_cast<int64_t>(test_indices_.size()); }

 private:
  Config config_;
  std::shared_ptr<const Dataset> train_, test_;
  std::vector<int64_t> train_indices_, test_indices_;  // the fixed subsets, dataset indices
};

/// One-off form of KnnMonitor(config).score(encoder, comm) (opens the datasets on every call; keep
/// a KnnMonitor to score repeatedly). Collective: call it on every rank.
double knn_monitor(const Config& config, Encoder& encoder, Communicator& comm);

}  // namespace selfsup
