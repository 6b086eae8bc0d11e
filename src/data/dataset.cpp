// open_dataset: the one place that maps `data.dataset` to a Dataset implementation.

#include "selfsup/data/dataset.h"

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/data/idx.h"

namespace selfsup {

std::unique_ptr<Dataset> open_dataset(const DataConfig& config, Split split) {
  if (config.dataset == "idx") {
    const bool train = split == Split::kTrain;
    // The MNIST / Fashion-MNIST file names; each may also be stored gzip-compressed (".gz").
    const std::string images =
        find_idx_file(config.root, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte");
    const std::string labels =
        find_idx_file(config.root, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte");
    return std::make_unique<IdxDataset>(images, labels, config.name + (train ? " train" : " test"),
                                        train ? config.limit_train : config.limit_test);
  }
  throw Error(detail::concat("data.dataset = \"", config.dataset,
                             "\" is not a known dataset format; use \"idx\""));
}

}  // namespace selfsup
