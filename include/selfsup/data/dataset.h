#pragma once
// The Dataset interface: random access to decoded images and labels. One implementation per format
// (one source file each); the loader and the transfer stage only see this interface.

#include <cstdint>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {

struct DataConfig;

/// One decoded sample.
struct Sample {
  cv::Mat image;       // HxW (CV_8UC1) or HxWx3 (CV_8UC3), uint8
  int64_t label = -1;  // class index, or -1 when the dataset has no labels
};

/// Images smaller than this on a side are bad samples: too small to crop into a view. The decoders
/// of the file formats reject them (so validate-data lists them), and the loader checks again.
constexpr int kMinImageSide = 8;

/// A sample that cannot be used: a zero-byte, truncated, non-image or unreadable file, or an image
/// smaller than the crop. Datasets throw it from get(); the loader replaces the sample by a
/// deterministic substitute, logs `source` once and counts it (data.max_bad_fraction).
class BadSampleError : public Error {
 public:
  BadSampleError(std::string source, std::string reason)
      : Error(source + ": " + reason), source_(std::move(source)), reason_(std::move(reason)) {}
  const std::string& source() const { return source_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string source_;
  std::string reason_;
};

/// Random-access, thread-safe (const) image dataset.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of samples.
  virtual int64_t size() const = 0;
  /// Decodes sample `index` (0 <= index < size()). Must be safe to call from several threads.
  /// Throws BadSampleError when that one sample cannot be used (other errors stop the run).
  virtual Sample get(int64_t index) const = 0;
  /// The label of sample `index` (-1 when unknown), without decoding where the format allows it:
  /// what the transfer stage reads to pick class-balanced subsets, bad samples included.
  virtual int64_t label(int64_t index) const {
    try {
      return get(index).label;
    } catch (const BadSampleError&) {
      return -1;
    }
  }
  /// Where sample `index` comes from, for logs: a file path, "shard.tar:member" or "file#index".
  virtual std::string source(int64_t index) const = 0;
  /// Number of classes (labels are in [0, num_classes)).
  virtual int64_t num_classes() const = 0;
  /// Channels of every image (1 or 3; decoded colour images are RGB).
  virtual int channels() const = 0;
  /// Height and width of every image; 0 when the images vary in size (folders, tar shards), in
  /// which case augment.size must be set.
  virtual int height() const = 0;
  virtual int width() const = 0;
  /// The files the dataset reads one after another (tar shards): shard s holds samples
  /// [offsets[s], offsets[s + 1]). Empty for datasets without shards.
  virtual std::vector<int64_t> shard_offsets() const { return {}; }
  /// A short description for logs and reports, e.g. "fashion-mnist train (60000 images)".
  virtual std::string describe() const = 0;
};

enum class Split { kTrain, kTest };

/// Opens the dataset named by `config.dataset` under `config.root`; throws Error with the path and
/// what to do when files are missing, truncated or malformed.
std::unique_ptr<Dataset> open_dataset(const DataConfig& config, Split split);

}  // namespace selfsup
