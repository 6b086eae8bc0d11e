#pragma once
// CIFAR-10 and CIFAR-100, the binary versions (https://www.cs.toronto.edu/~kriz/cifar.html).
//
// Format: fixed-size records, no header. CIFAR-10: 1 label byte + 3072 pixel bytes per record, in
// data_batch_1.bin .. data_batch_5.bin (train) and test_batch.bin (test). CIFAR-100: a coarse and
// a fine label byte + 3072 pixel bytes, in train.bin and test.bin. Pixels are three 32x32 planes,
// red, green, blue, each row-major.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/data/dataset.h"

namespace selfsup {

/// Which of the two CIFAR datasets a folder holds.
enum class CifarVariant { kCifar10, kCifar100 };

/// Where a CIFAR split lives and how much of it to use.
struct CifarOptions {
  CifarOptions(std::string root, CifarVariant variant, Split split)
      : root(std::move(root)), variant(variant), split(split) {}
  std::string root;      // folder with the .bin files, or their parent (cifar-10-batches-bin/...)
  CifarVariant variant;  // CIFAR-10 (10 classes) or CIFAR-100 (its 100 fine labels)
  Split split;           // train or test files
  std::string name = "cifar";  // dataset name, for describe()
  int64_t limit = 0;           // > 0: keep only the first `limit` samples

  CifarOptions& set_name(std::string value) {
    name = std::move(value);
    return *this;
  }
  CifarOptions& set_limit(int64_t value) {
    limit = value;
    return *this;
  }
};

/// The files of a CIFAR split, found under `options.root` or its standard sub-folder
/// (cifar-10-batches-bin/ or cifar-100-binary/); throws Error saying what was looked for and
/// where to download it when a file is missing.
std::vector<std::string> find_cifar_files(const CifarOptions& options);

/// A CIFAR split held in memory (3 KiB per image; 150 MiB for the training set). Images are
/// RGB CV_8UC3 32x32; labels are CIFAR-100's fine labels.
class CifarDataset : public Dataset {
 public:
  static constexpr int kSide = 32;
  static constexpr int kPixelBytes = 3 * kSide * kSide;

  explicit CifarDataset(const CifarOptions& options);

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override;
  std::string source(int64_t index) const override;
  int64_t num_classes() const override { return num_classes_; }
  int channels() const override { return 3; }
  int height() const override { return kSide; }
  int width() const override { return kSide; }
  std::string describe() const override;

 private:
  struct File {
    std::string path;
    int64_t first = 0;  // index of its first record in the dataset
  };
  std::string name_;
  std::vector<File> files_;
  std::vector<uint8_t> pixels_;  // [count, 3, 32, 32], planar as in the files
  std::vector<uint8_t> labels_;  // [count]
  int64_t count_ = 0;
  int64_t num_classes_ = 0;
};

}  // namespace selfsup
