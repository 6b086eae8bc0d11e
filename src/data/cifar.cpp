// CIFAR-10 / CIFAR-100 binary files: found, size-checked, read into memory; images are converted
// from the files' planar RGB to interleaved RGB on get().

#include "selfsup/data/cifar.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

struct VariantInfo {
  const char* subfolder;  // the folder the official archive extracts to
  const char* url;        // where to download it
  int label_bytes;        // label bytes before the pixels of each record
  int64_t num_classes;    // labels are in [0, num_classes)
  std::vector<std::string> train_files;
  std::vector<std::string> test_files;
};

const VariantInfo& variant_info(CifarVariant variant) {
  static const VariantInfo cifar10{"cifar-10-batches-bin",
                                   "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                                   1,
                                   10,
                                   {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                    "data_batch_4.bin", "data_batch_5.bin"},
                                   {"test_batch.bin"}};
  static const VariantInfo cifar100{"cifar-100-binary",
                                    "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                                    2,
                                    100,
                                    {"train.bin"},
                                    {"test.bin"}};
  return variant == CifarVariant::kCifar10 ? cifar10 : cifar100;
}

int64_t record_bytes(const VariantInfo& info) {
  return info.label_bytes + CifarDataset::kPixelBytes;
}

}  // namespace

std::vector<std::string> find_cifar_files(const CifarOptions& options) {
  const VariantInfo& info = variant_info(options.variant);
  const auto& names = options.split == Split::kTrain ? info.train_files : info.test_files;
  // The files directly under root, or under the folder the official archive extracts to; the
  // first folder holding the first file wins, and must hold all of them.
  std::error_code ec;
  const fs::path root(options.root);
  fs::path folder;
  for (const fs::path& candidate : {root, root / info.subfolder}) {
    if (fs::is_regular_file(candidate / names.front(), ec)) {
      folder = candidate;
      break;
    }
  }
  if (folder.empty()) {
    throw Error(detail::concat("cannot find ", names.front(), " in ", root.string(), " or ",
                               (root / info.subfolder).string(), "; download and extract ",
                               info.url,
                               " there, or set data.root to the folder holding the .bin files"));
  }
  std::vector<std::string> paths;
  for (const auto& name : names) {
    const fs::path path = folder / name;
    SELFSUP_CHECK(fs::is_regular_file(path, ec), "cannot find ", path.string(), " (",
                  folder.string(), " holds ", names.front(), " but not ", name,
                  "); the download is incomplete: extract ", info.url, " again");
    paths.push_back(path.string());
  }
  return paths;
}

CifarDataset::CifarDataset(const CifarOptions& options) : name_(options.name) {
  SELFSUP_CHECK(options.limit >= 0, "CifarDataset: limit = ", options.limit,
                " must be >= 0 (0 = all samples)");
  const VariantInfo& info = variant_info(options.variant);
  num_classes_ = info.num_classes;
  const int64_t record = record_bytes(info);
  const std::string expected =
      detail::concat("CIFAR-", info.num_classes, " files hold records of ", record, " bytes (",
                     info.label_bytes == 1 ? "1 label byte" : "coarse and fine label bytes",
                     " + 3072 pixel bytes)");
  for (const auto& path : find_cifar_files(options)) {
    if (options.limit > 0 && count_ >= options.limit) break;
    std::error_code ec;
    const auto length = static_cast<int64_t>(fs::file_size(path, ec));
    SELFSUP_CHECK(!ec, "cannot read the size of ", path, ": ", ec.message());
    SELFSUP_CHECK(length > 0 && length % record == 0, path, " has ", length,
                  " bytes, not a positive multiple of ", record, "; ", expected,
                  ". The file is truncated or of another dataset: download ", info.url, " again");
    int64_t records = length / record;
    if (options.limit > 0) records = std::min(records, options.limit - count_);

    std::ifstream in(path, std::ios::binary);
    SELFSUP_CHECK(in, "cannot open ", path, ": ", std::strerror(errno));
    files_.push_back({path, count_});
    pixels_.resize(static_cast<size_t>((count_ + records) * kPixelBytes));
    labels_.resize(static_cast<size_t>(count_ + records));
    std::vector<char> buffer(static_cast<size_t>(record));
    for (int64_t r = 0; r < records; ++r) {
      in.read(buffer.data(), record);
      SELFSUP_CHECK(in, "cannot read record ", r, " of ", path, " (file changed while reading?)");
      // CIFAR-100: byte 0 is the coarse (superclass) label, byte 1 the fine label we use.
      const auto label = static_cast<uint8_t>(buffer[static_cast<size_t>(info.label_bytes - 1)]);
      SELFSUP_CHECK(label < num_classes_, path, ": record ", r, " has label ", int{label},
                    "; CIFAR-", num_classes_, " labels are in [0, ", num_classes_,
                    "). Check data.dataset (cifar10 or cifar100) against the files");
      labels_[static_cast<size_t>(count_ + r)] = label;
      std::memcpy(pixels_.data() + (count_ + r) * kPixelBytes, buffer.data() + info.label_bytes,
                  kPixelBytes);
    }
    count_ += records;
  }
}

Sample CifarDataset::get(int64_t index) const {
  SELFSUP_CHECK(index >= 0 && index < count_, "sample index ", index, " is out of range for ",
                describe());
  // Planar [3, 32, 32] -> interleaved [32, 32, 3]; merge copies, so the caller owns the image.
  const int plane = kSide * kSide;
  auto* base = const_cast<uint8_t*>(pixels_.data() + index * kPixelBytes);
  const cv::Mat planes[3] = {cv::Mat(kSide, kSide, CV_8UC1, base),
                             cv::Mat(kSide, kSide, CV_8UC1, base + plane),
                             cv::Mat(kSide, kSide, CV_8UC1, base + 2 * plane)};
  Sample sample;
  cv::merge(planes, 3, sample.image);
  sample.label = labels_[static_cast<size_t>(index)];
  return sample;
}

std::string CifarDataset::source(int64_t index) const {
  // The last file whose first record is at or before `index`.
  const File* file = &files_.front();
  for (const auto& candidate : files_) {
    if (candidate.first <= index) file = &candidate;
  }
  return detail::concat(file->path, "#", index - file->first);
}

std::string CifarDataset::describe() const {
  return detail::concat(name_, " (", count_, " images, 32x32 RGB, ", num_classes_, " classes)");
}

}  // namespace selfsup
