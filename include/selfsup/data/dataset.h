#pragma once
// The Dataset interface: random access to decoded images and labels. One implementation per format
// (one source file each); the loader and the transfer stage only see this interface.

#include <cstdint>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <string>

namespace selfsup {

struct DataConfig;

/// One decoded sample.
struct Sample {
  cv::Mat image;       // HxW (CV_8UC1) or HxWx3 (CV_8UC3), uint8
  int64_t label = -1;  // class index, or -1 when the dataset has no labels
};

/// Random-access, thread-safe (const) image dataset.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of samples.
  virtual int64_t size() const = 0;
  /// Decodes sample `index` (0 <= index < size()). Must be safe to call from several threads.
  virtual Sample get(int64_t index) const = 0;
  /// Number of classes (labels are in [0, num_classes)).
  virtual int64_t num_classes() const = 0;
  /// Channels, height and width of every image.
  virtual int channels() const = 0;
  virtual int height() const = 0;
  virtual int width() const = 0;
  /// A short description for logs and reports, e.g. "fashion-mnist train (60000 images)".
  virtual std::string describe() const = 0;
};

enum class Split { kTrain, kTest };

/// Opens the dataset named by `config.dataset` under `config.root`; throws Error with the path and
/// what to do when files are missing, truncated or malformed.
std::unique_ptr<Dataset> open_dataset(const DataConfig& config, Split split);

}  // namespace selfsup
