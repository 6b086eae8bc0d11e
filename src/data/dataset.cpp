// open_dataset: the one place that maps `data.dataset` to a Dataset implementation.

#include "selfsup/data/dataset.h"

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"
#include "selfsup/data/cifar.h"
#include "selfsup/data/folder.h"
#include "selfsup/data/idx.h"
#include "selfsup/data/synthetic.h"
#include "selfsup/data/tar.h"

namespace selfsup {

std::unique_ptr<Dataset> open_dataset(const DataConfig& config, Split split) {
  const bool train = split == Split::kTrain;
  const std::string name = config.name + (train ? " train" : " test");
  const int64_t limit = train ? config.limit_train : config.limit_test;
  if (config.dataset == "idx") {
    // The MNIST / Fashion-MNIST file names; each may also be stored gzip-compressed (".gz").
    const std::string images =
        find_idx_file(config.root, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte");
    const std::string labels =
        find_idx_file(config.root, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte");
    return std::make_unique<IdxDataset>(images, labels, name, limit);
  }
  if (config.dataset == "cifar10" || config.dataset == "cifar100") {
    const auto variant =
        config.dataset == "cifar10" ? CifarVariant::kCifar10 : CifarVariant::kCifar100;
    return std::make_unique<CifarDataset>(
        CifarOptions(config.root, variant, split).set_name(name).set_limit(limit));
  }
  // Image folders and tar shards: the split is a sub-folder (or shard prefix) of the root; their
  // indexes fall back to the per-user cache folder when the dataset is read-only.
  const std::string& split_name = train ? config.train_split : config.test_split;
  if (config.dataset == "folder") {
    return std::make_unique<FolderDataset>(
        FolderOptions(config.root, split_name)
            .set_name(config.name)
            .set_limit(limit)
            .set_index_cache(config.index_cache)
            .set_cache_dir(user_cache_dir())
            .set_decode(DecodeOptions().set_min_side(kMinImageSide)));
  }
  if (config.dataset == "tar") {
    return std::make_unique<TarDataset>(
        TarOptions(config.root, split_name)
            .set_name(config.name)
            .set_limit(limit)
            .set_index_cache(config.index_cache)
            .set_cache_dir(user_cache_dir())
            .set_decode(DecodeOptions().set_min_side(kMinImageSide)));
  }
  if (config.dataset == "synthetic") {
    return std::make_unique<SyntheticDataset>(config.synthetic, split, config.name, limit);
  }
  throw Error(detail::concat("data.dataset = \"", config.dataset,
                             "\" is not a known dataset format; use \"idx\", \"cifar10\", "
                             "\"cifar100\", \"folder\", \"tar\" or \"synthetic\""));
}

}  // namespace selfsup
