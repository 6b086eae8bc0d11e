// selfsup_bench_loader: the C++ side of the loader benchmark (issue 6). bench/loader.sh runs it
// and bench/loader_reference.py (torchvision) on the same JPEG files and prints the table.
//
// --mode loader: selfsup's threaded Loader over the image-folder dataset (data.dataset = "folder",
//   root/train/<class>/*.jpg): read, decode (cv::imdecode), then the full RGB recipe of the CPU
//   augmentation (SimClrAugment) for 2 views, in --workers threads. Images/s over --epochs timed
//   epochs (more until --min-seconds are measured) after one warm-up epoch.
// --mode device: DeviceAugment alone (augment.backend = "device") on the CPU, on the decoded images
//   of the same folder held as one uint8 batch per step, --workers intra-op threads: the cost of
//   the batched tensor path when no GPU is there to take it. (JpegFolder below decodes and resizes
//   them once, up front.)

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/data/augment.h"
#include "selfsup/data/dataset.h"
#include "selfsup/data/device_augment.h"
#include "selfsup/data/loader.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// root/<class>/<file>.jpg, classes and files in name order, decoded to `side` x `side`, grayscale
// (`channels` 1) or RGB (3): the device mode's images, decoded once before timing.
class JpegFolder : public selfsup::Dataset {
 public:
  JpegFolder(const fs::path& root, int side, int channels) : side_(side), channels_(channels) {
    SELFSUP_CHECK(fs::is_directory(root), root.string(), " is not a folder of class folders");
    std::vector<fs::path> classes;
    for (const auto& entry : fs::directory_iterator(root))
      if (entry.is_directory()) classes.push_back(entry.path());
    std::sort(classes.begin(), classes.end());
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(classes[c]))
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      for (const auto& file : files) {
        files_.push_back(file.string());
        labels_.push_back(static_cast<int64_t>(c));
      }
    }
    classes_ = static_cast<int64_t>(classes.size());
    SELFSUP_CHECK(!files_.empty(), "no images under ", root.string());
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  selfsup::Sample get(int64_t index) const override {
    const std::string& path = files_[static_cast<size_t>(index)];
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    cv::Mat image = cv::imdecode(bytes, cv::IMREAD_COLOR);  // BGR
    if (image.empty()) throw selfsup::BadSampleError(path, "not a decodable image");
    cv::cvtColor(image, image, channels_ == 1 ? cv::COLOR_BGR2GRAY : cv::COLOR_BGR2RGB);
    if (image.rows != side_ || image.cols != side_) {
      cv::resize(image, image, cv::Size(side_, side_), 0, 0, cv::INTER_LINEAR);
    }
    return {image, labels_[static_cast<size_t>(index)]};
  }
  std::string source(int64_t index) const override { return files_[static_cast<size_t>(index)]; }
  int64_t num_classes() const override { return classes_; }
  int channels() const override { return channels_; }
  int height() const override { return side_; }
  int width() const override { return side_; }
  std::string describe() const override {
    return "bench folder (" + std::to_string(files_.size()) + " images)";
  }

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  int64_t classes_ = 0;
  int side_;
  int channels_;
};

struct BenchOptions {
  std::string mode = "loader";  // loader | device
  std::string root;             // image folder: root/<class>/*.jpg
  int size = 32;                // view side, pixels
  int workers = 1;              // loader threads (loader) or intra-op threads (device)
  int batch = 64;               // images per batch
  int epochs = 2;               // timed epochs (after one warm-up epoch) ...
  double min_seconds = 2.0;     // ... and more until this much time has been measured
  double blur_prob = 0.0;       // Gaussian blur probability (SimCLR: 0.5 at 224)
};

// The SimCLR recipe of the benchmark (both implementations use the same numbers).
selfsup::AugmentConfig recipe(const BenchOptions& opt) {
  selfsup::AugmentConfig config;
  config.views = 2;
  config.size = opt.size;
  config.crop_scale = {0.2, 1.0};
  config.flip_prob = 0.5;
  config.jitter_prob = 0.8;
  config.brightness = config.contrast = config.saturation = 0.4;
  config.hue = 0.1;
  config.grayscale_prob = 0.2;
  config.blur_prob = opt.blur_prob;
  config.mean = {0.5};
  config.std = {0.25};
  return config;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<std::vector<int64_t>> epoch_plan(int64_t size, int64_t batch, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(static_cast<uint64_t>(epoch)));
  std::vector<std::vector<int64_t>> plan;
  for (int64_t first = 0; first < size; first += batch) {
    const int64_t last = std::min(size, first + batch);
    plan.emplace_back(order.begin() + first, order.begin() + last);
  }
  return plan;
}

nlohmann::json run_loader(const BenchOptions& opt) {
  cv::setNumThreads(0);  // one thread per worker, as torchvision's workers (no OpenCV pool)
  torch::set_num_threads(1);
  // The image-folder dataset as training reads it (data.dataset = "folder"): RGB, native sizes,
  // the crop resized to the view side by the augmentation.
  selfsup::DataConfig data;
  data.dataset = "folder";
  data.root = opt.root;
  data.train_split = "train";
  data.index_cache = false;
  const auto dataset_owner = selfsup::open_dataset(data, selfsup::Split::kTrain);
  const selfsup::Dataset& dataset = *dataset_owner;
  selfsup::LoaderOptions options;
  options.seed = 1;
  options.workers = opt.workers;
  options.prefetch = 2 * opt.workers;
  options.views = 2;
  selfsup::Loader loader(dataset, selfsup::SimClrAugment::for_dataset(recipe(opt), dataset),
                         options);
  int64_t images = 0;
  double checksum = 0;
  Clock::time_point start = Clock::now();
  for (int epoch = 0; epoch <= opt.epochs || seconds_since(start) < opt.min_seconds; ++epoch) {
    if (epoch == 1) start = Clock::now();  // epoch 0 warms up
    loader.start_epoch(epoch, epoch_plan(dataset.size(), opt.batch, epoch));
    while (auto batch = loader.next()) {
      if (epoch > 0) images += batch->indices.size(0);
      checksum += batch->views[0][0][0][0][0].item<double>();
    }
  }
  const double seconds = seconds_since(start);
  return {{"recipe", "RGB: crop, flip, colour jitter (random order), grayscale, blur (CPU path)"},
          {"channels", 3},
          {"images", images},
          {"seconds", seconds},
          {"checksum", checksum}};
}

nlohmann::json run_device(const BenchOptions& opt) {
  torch::set_num_threads(opt.workers);
  const JpegFolder dataset(fs::path(opt.root) / "train", opt.size, /*channels=*/3);
  // The decoded images, [N, 3, S, S] uint8, as the loader hands them over with backend "device".
  std::vector<torch::Tensor> decoded;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const cv::Mat image = dataset.get(i).image;
    decoded.push_back(torch::from_blob(image.data, {opt.size, opt.size, 3}, torch::kUInt8)
                          .permute({2, 0, 1})
                          .clone());
  }
  const torch::Tensor all = torch::stack(decoded);
  selfsup::AugmentConfig config = recipe(opt);
  config.mean = {0.5, 0.5, 0.5};
  config.std = {0.25, 0.25, 0.25};
  const selfsup::DeviceAugment augment(config, 3);
  int64_t images = 0;
  double checksum = 0;
  Clock::time_point start = Clock::now();
  for (int epoch = 0; epoch <= opt.epochs || seconds_since(start) < opt.min_seconds; ++epoch) {
    if (epoch == 1) start = Clock::now();
    for (const auto& indices : epoch_plan(dataset.size(), opt.batch, epoch)) {
      const torch::Tensor index = torch::tensor(indices, torch::kInt64);
      const selfsup::DeviceViews views =
          augment.forward(all.index_select(0, index), 1, epoch, index);
      if (epoch > 0) images += index.size(0);
      checksum += views.global[0][0][0][0][0].item<double>();
    }
  }
  const double seconds = seconds_since(start);
  return {{"recipe", "RGB: full recipe, augmentation only (decode excluded)"},
          {"channels", 3},
          {"images", images},
          {"seconds", seconds},
          {"checksum", checksum}};
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opt;
  CLI::App app{
      "The C++ side of bench/loader.sh: images/s of selfsup's loader (decode + SimCLR "
      "augmentation, 2 views) or of DeviceAugment on the CPU; prints one JSON line"};
  app.add_option("--mode", opt.mode, "loader | device")->check(CLI::IsMember({"loader", "device"}));
  app.add_option("--root", opt.root, "image folder with a train/<class>/*.jpg tree")->required();
  app.add_option("--size", opt.size, "view side in pixels");
  app.add_option("--workers", opt.workers, "loader threads (loader) or intra-op threads (device)");
  app.add_option("--batch", opt.batch, "images per batch");
  app.add_option("--epochs", opt.epochs, "timed epochs, after one warm-up epoch");
  app.add_option("--min-seconds", opt.min_seconds,
                 "more timed epochs until this many seconds are measured");
  app.add_option("--blur-prob", opt.blur_prob, "Gaussian blur probability");
  CLI11_PARSE(app, argc, argv);
  try {
    nlohmann::json out = opt.mode == "loader" ? run_loader(opt) : run_device(opt);
    out["impl"] = opt.mode == "loader" ? "selfsup" : "selfsup-device-augment";
    out["size"] = opt.size;
    out["workers"] = opt.workers;
    out["images_per_s"] = out["images"].get<double>() / out["seconds"].get<double>();
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "selfsup_bench_loader: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
