#include "selfsup/transfer/transfer.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/files.h"
#include "selfsup/data/augment.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Un-augmented, normalised images [count, C, H, W] of samples [first, first+count), and their
// labels.
std::pair<torch::Tensor, torch::Tensor> plain_images(const Dataset& dataset,
                                                     const SimClrAugment& augment, int64_t first,
                                                     int64_t count) {
  const int64_t c = dataset.channels(), h = dataset.height(), w = dataset.width();
  auto images = torch::empty({count, c, h, w}, torch::kFloat);
  auto labels = torch::empty({count}, torch::kLong);
  float* pixels = images.data_ptr<float>();
  int64_t* label_ptr = labels.data_ptr<int64_t>();
  at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto sample = dataset.get(first + i);
      augment.plain(sample.image, pixels + i * c * h * w);
      label_ptr[i] = sample.label;
    }
  });
  return {images, labels};
}

}  // namespace

FeatureSet extract_features(Encoder& encoder, const Dataset& dataset, const AugmentConfig& augment,
                            int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = encoder.is_training();
  encoder.eval();  // batch norm uses its running statistics; no augmentation
  const SimClrAugment plain(augment);
  const auto parameters = encoder.parameters();
  const torch::Device device = parameters.empty() ? torch::kCPU : parameters.front().device();
  std::vector<torch::Tensor> features, labels;
  for (int64_t first = 0; first < dataset.size(); first += batch_size) {
    const int64_t count = std::min(batch_size, dataset.size() - first);
    auto [images, batch_labels] = plain_images(dataset, plain, first, count);
    // [count, feature_dim], back on the CPU where the probes run
    features.push_back(encoder.forward(images.to(device)).to(torch::kCPU).contiguous());
    labels.push_back(batch_labels);
  }
  encoder.train(was_training);
  return {torch::cat(features), torch::cat(labels)};
}

FeatureSet pixel_features(const Dataset& dataset, const AugmentConfig& augment) {
  auto [images, labels] = plain_images(dataset, SimClrAugment(augment), 0, dataset.size());
  return {images.flatten(1), labels};
}

nlohmann::json run_transfer(const Config& config, Encoder& encoder, const std::string& out_dir,
                            Communicator& comm) {
  nlohmann::json results;
  if (comm.rank() == 0) {
    const auto start = Clock::now();
    auto seconds = [](Clock::time_point t) {
      return std::chrono::duration<double>(Clock::now() - t).count();
    };
    auto train = open_dataset(config.data, Split::kTrain);
    auto test = open_dataset(config.data, Split::kTest);
    SELFSUP_CHECK(train->num_classes() >= 2, "the transfer stage needs labels; ", train->describe(),
                  " has ", train->num_classes(), " classes");
    const int64_t classes = std::max(train->num_classes(), test->num_classes());
    spdlog::info("transfer: {} -> {}", train->describe(), test->describe());

    auto t = Clock::now();
    const auto train_features =
        extract_features(encoder, *train, config.augment, config.transfer.batch_size);
    const auto test_features =
        extract_features(encoder, *test, config.augment, config.transfer.batch_size);
    const double extract_s = seconds(t);
    t = Clock::now();
    const auto linear =
        linear_probe(train_features, test_features, classes, config.transfer.linear, config.seed);
    const double linear_s = seconds(t);
    t = Clock::now();
    const double knn = knn_top1(train_features, test_features, classes, config.transfer.knn);
    const double knn_s = seconds(t);
    spdlog::info(
        "transfer: linear probe {:.2f}% ({:.1f} s), kNN {:.2f}% ({:.1f} s), features {:.1f} s",
        linear.top1, linear_s, knn, knn_s, extract_s);

    results["dataset"] = config.data.name;
    results["train_samples"] = train->size();
    results["test_samples"] = test->size();
    results["encoder"] = config.model.encoder;
    results["feature_dim"] = train_features.features.size(1);
    results["linear_probe"] = {
        {"top1", linear.top1}, {"train_top1", linear.train_top1}, {"seconds", linear_s}};
    results["knn"] = {{"top1", knn},
                      {"k", config.transfer.knn.k},
                      {"temperature", config.transfer.knn.temperature},
                      {"seconds", knn_s}};

    if (config.transfer.baselines) {
      t = Clock::now();
      const auto raw = linear_probe(pixel_features(*train, config.augment),
                                    pixel_features(*test, config.augment), classes,
                                    config.transfer.linear, config.seed);
      results["baselines"]["raw_pixels"] = {{"top1", raw.top1}, {"seconds", seconds(t)}};
      spdlog::info("transfer: baseline raw pixels {:.2f}%", raw.top1);

      t = Clock::now();
      // Same architecture, random initialisation from a seed of its own (never trained).
      torch::manual_seed(config.seed + 0x9E3779B9ull);
      auto random_encoder = make_encoder(config.model, train->channels());
      random_encoder->to(resolve_device(config.device, comm.local_rank()));
      const auto random_train =
          extract_features(*random_encoder, *train, config.augment, config.transfer.batch_size);
      const auto random_test =
          extract_features(*random_encoder, *test, config.augment, config.transfer.batch_size);
      const auto random =
          linear_probe(random_train, random_test, classes, config.transfer.linear, config.seed);
      results["baselines"]["random_encoder"] = {{"top1", random.top1}, {"seconds", seconds(t)}};
      spdlog::info("transfer: baseline random {} {:.2f}%", config.model.encoder, random.top1);
    }
    results["wall_seconds"] = seconds(start);

    fs::create_directories(out_dir);
    write_file_atomic((fs::path(out_dir) / "results.json").string(), results.dump(2) + "\n");
  }
  // No barrier: the other ranks would wait in it for the whole transfer stage and trip the
  // collective timeout. They go on to exit; MPI_Finalize holds them until rank 0 is done, and a
  // failure on rank 0 still ends them (MPI_Abort).
  return results;
}

std::string format_results_table(const nlohmann::json& results) {
  std::ostringstream out;
  auto row = [&](const std::string& name, const nlohmann::json& entry) {
    out << "  " << std::left << std::setw(40) << name << std::right << std::setw(8) << std::fixed
        << std::setprecision(2) << entry.at("top1").get<double>() << " %\n";
  };
  out << "Transfer results on " << results.value("dataset", "?") << " test ("
      << results.value("test_samples", 0) << " images), encoder " << results.value("encoder", "?")
      << "\n";
  out << "  " << std::left << std::setw(40) << "method" << std::right << std::setw(10) << "top-1"
      << "\n";
  row("SimCLR encoder, linear probe", results.at("linear_probe"));
  row("SimCLR encoder, kNN (k=" + std::to_string(results.at("knn").value("k", 0)) + ")",
      results.at("knn"));
  if (results.contains("baselines")) {
    row("baseline: raw pixels, linear probe", results["baselines"].at("raw_pixels"));
    row("baseline: random encoder, linear probe", results["baselines"].at("random_encoder"));
  }
  out << "  wall time " << std::setprecision(1) << results.value("wall_seconds", 0.0) << " s\n";
  return out.str();
}

}  // namespace selfsup
