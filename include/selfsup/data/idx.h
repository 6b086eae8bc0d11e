#pragma once
// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
// Format: big-endian magic 0x0000TTDD (TT = element type, 0x08 = uint8; DD = number of dimensions),
// DD big-endian uint32 sizes, then the elements in row-major order.

#include <cstdint>
#include <string>
#include <vector>

#include "selfsup/data/dataset.h"

namespace selfsup {

/// The contents of one uint8 IDX file.
struct IdxArray {
  std::vector<int64_t> shape;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;   // row-major, product(shape) bytes
};

/// Reads an IDX file; a path ending in ".gz" is decompressed with zlib. Checks the magic, the
/// element type, the header and that the file holds exactly the declared number of bytes; throws
/// Error naming the path otherwise.
IdxArray read_idx(const std::string& path);

/// Writes a uint8 IDX file (gzip-compressed when the path ends in ".gz"). Used by tests and tools.
void write_idx(const std::string& path, const IdxArray& array);

/// Images and labels from a pair of IDX files, e.g. Fashion-MNIST's train split.
class IdxDataset : public Dataset {
 public:
  /// `limit` > 0 keeps only the first `limit` samples.
  IdxDataset(const std::string& images_path, const std::string& labels_path, std::string name,
             int64_t limit = 0);

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override;
  int64_t num_classes() const override { return num_classes_; }
  int channels() const override { return 1; }
  int height() const override { return height_; }
  int width() const override { return width_; }
  std::string describe() const override;
  std::string source(int64_t index) const override;

 private:
  std::string images_path_;
  std::vector<uint8_t> pixels_;  // [count, height, width]
  std::vector<uint8_t> labels_;  // [count]
  std::string name_;
  int64_t count_ = 0;
  int height_ = 0;
  int width_ = 0;
  int64_t num_classes_ = 0;
};

/// Finds `<stem>` or `<stem>.gz` under `root` (e.g. "train-images-idx3-ubyte"); throws Error
/// listing what was looked for when neither exists.
std::string find_idx_file(const std::string& root, const std::string& stem);

}  // namespace selfsup
