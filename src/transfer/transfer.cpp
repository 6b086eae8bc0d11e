#include "selfsup/transfer/transfer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/files.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The rows of `set` at `indices` (sorted dataset indices, as class_balanced_subset returns).
FeatureSet rows_of(const FeatureSet& set, const std::vector<int64_t>& indices) {
  const auto index = torch::tensor(indices, torch::kLong);
  return {set.features.index_select(0, index), set.labels.index_select(0, index)};
}

// A linear probe on a labelled subset runs as many optimizer steps as the probe on the whole
// split (more epochs over fewer rows), so that few labels are not also few steps.
LinearProbeConfig subset_probe_config(const LinearProbeConfig& full, int64_t full_rows,
                                      int64_t subset_rows) {
  auto steps_per_epoch = [&](int64_t rows) {
    const int64_t batch = std::min(full.batch_size, rows);
    return (rows + batch - 1) / batch;
  };
  LinearProbeConfig config = full;
  const int64_t total_steps = full.epochs * steps_per_epoch(full_rows);
  config.epochs = std::max<int64_t>(
      1, (total_steps + steps_per_epoch(subset_rows) - 1) / steps_per_epoch(subset_rows));
  return config;
}

nlohmann::json finetune_json(const FinetuneResult& r) {
  return {{"top1", r.top1},
          {"steps", r.steps},
          {"epochs", r.epochs},
          {"global_batch", r.global_batch},
          {"final_loss", r.losses.empty() ? 0.0 : r.losses.back()},
          {"seconds", r.seconds}};
}

std::string percent_label(double fraction) {
  const double percent = 100.0 * fraction;
  return percent == std::round(percent) ? fmt::format("{:.0f}%", percent)
                                        : fmt::format("{:g}%", percent);
}

}  // namespace

nlohmann::json run_transfer(const Config& config, Encoder& encoder, const std::string& out_dir,
                            Communicator& comm) {
  const auto start = Clock::now();
  const bool root = comm.rank() == 0;
  const auto train = open_dataset(config.data, Split::kTrain);
  const auto test = open_dataset(config.data, Split::kTest);
  SELFSUP_CHECK(train->num_classes() >= 2, "the transfer stage needs labels; ", train->describe(),
                " has ", train->num_classes(), " classes");
  const int64_t classes = std::max(train->num_classes(), test->num_classes());
  spdlog::info("transfer: {} -> {} on {} rank(s)", train->describe(), test->describe(),
               comm.size());
  ExtractOptions extract(config.augment);
  extract.batch_size = config.transfer.batch_size;
  nlohmann::json timings;

  // 1. Features, sharded over the ranks and gathered on all of them.
  auto t = Clock::now();
  const FeatureSet train_features = extract_features_distributed(encoder, *train, extract, comm);
  const FeatureSet test_features = extract_features_distributed(encoder, *test, extract, comm);
  timings["features_s"] = seconds_since(t);
  std::optional<FeatureSet> random_train, random_test;
  if (config.transfer.baselines) {
    // Same architecture, random initialisation from a seed of its own (never trained); the
    // random-init fine-tuning below starts from the same weights.
    t = Clock::now();
    torch::manual_seed(config.seed + 0x9E3779B9ull);
    auto random_encoder = make_encoder(config.model, train->channels());
    random_encoder->to(resolve_device(config.device, comm.local_rank()));
    random_train = extract_features_distributed(*random_encoder, *train, extract, comm);
    random_test = extract_features_distributed(*random_encoder, *test, extract, comm);
    timings["random_features_s"] = seconds_since(t);
  }
  spdlog::info("transfer: features {}x{} (train), {}x{} (test) in {:.1f} s",
               train_features.features.size(0), train_features.features.size(1),
               test_features.features.size(0), test_features.features.size(1),
               timings["features_s"].get<double>());

  // 2. Fine-tuning per label fraction, data-parallel. The subsets come from the gathered labels,
  // identical on every rank.
  const auto& fc = config.transfer.finetune;
  struct FractionRun {
    double fraction;
    std::vector<int64_t> labelled;
    FinetuneResult pretrained, random_init;
  };
  std::vector<FractionRun> fraction_runs;
  if (fc.enabled) {
    t = Clock::now();
    for (const double fraction : fc.fractions) {
      FractionRun run{fraction,
                      class_balanced_subset(train_features.labels, classes, fraction, config.seed),
                      {},
                      {}};
      FinetuneData data{train.get(), run.labelled, test.get()};
      run.pretrained = finetune(config, data, &encoder, comm);
      spdlog::info("transfer: fine-tuned with {} labels ({} images): {:.2f}% ({} steps, {:.1f} s)",
                   percent_label(fraction), run.labelled.size(), run.pretrained.top1,
                   run.pretrained.steps, run.pretrained.seconds);
      if (config.transfer.baselines) {
        run.random_init = finetune(config, data, nullptr, comm);
        spdlog::info("transfer: random init, {} labels: {:.2f}% ({:.1f} s)",
                     percent_label(fraction), run.random_init.top1, run.random_init.seconds);
      }
      run.pretrained.encoder.reset();  // only the numbers are kept
      run.random_init.encoder.reset();
      fraction_runs.push_back(std::move(run));
    }
    timings["finetune_s"] = seconds_since(t);
  }

  // 3. Rank 0 alone from here: no collective follows, so no rank waits in one (see transfer.h).
  if (!root) return nlohmann::json::object();

  nlohmann::json results;
  t = Clock::now();
  const auto linear =
      linear_probe(train_features, test_features, classes, config.transfer.linear, config.seed);
  const double linear_s = seconds_since(t);
  t = Clock::now();
  const double knn = knn_top1(train_features, test_features, classes, config.transfer.knn);
  const double knn_s = seconds_since(t);
  spdlog::info("transfer: linear probe {:.2f}% ({:.1f} s), kNN {:.2f}% ({:.1f} s)", linear.top1,
               linear_s, knn, knn_s);

  results["dataset"] = config.data.name;
  results["train_samples"] = train->size();
  results["test_samples"] = test->size();
  results["encoder"] = config.model.encoder;
  results["pretext"] = config.pretext.task;
  results["feature_dim"] = train_features.features.size(1);
  results["world_size"] = comm.size();
  results["linear_probe"] = {
      {"top1", linear.top1}, {"train_top1", linear.train_top1}, {"seconds", linear_s}};
  results["knn"] = {{"top1", knn},
                    {"k", config.transfer.knn.k},
                    {"temperature", config.transfer.knn.temperature},
                    {"seconds", knn_s}};

  std::optional<FeatureSet> train_pixels, test_pixels;
  if (config.transfer.baselines) {
    t = Clock::now();
    train_pixels = pixel_features(*train, extract);
    test_pixels = pixel_features(*test, extract);
    const auto raw =
        linear_probe(*train_pixels, *test_pixels, classes, config.transfer.linear, config.seed);
    // The kNN of the baselines too, with the same k and temperature: it reads cosine
    // similarities, so raw pixels are compared by the angle between images.
    const double raw_knn = knn_top1(*train_pixels, *test_pixels, classes, config.transfer.knn);
    results["baselines"]["raw_pixels"] = {
        {"top1", raw.top1}, {"knn_top1", raw_knn}, {"seconds", seconds_since(t)}};
    spdlog::info("transfer: baseline raw pixels {:.2f}% (kNN {:.2f}%)", raw.top1, raw_knn);

    t = Clock::now();
    const auto random =
        linear_probe(*random_train, *random_test, classes, config.transfer.linear, config.seed);
    const double random_knn = knn_top1(*random_train, *random_test, classes, config.transfer.knn);
    results["baselines"]["random_encoder"] = {
        {"top1", random.top1},
        {"knn_top1", random_knn},
        {"seconds", seconds_since(t) + timings.value("random_features_s", 0.0)}};
    spdlog::info("transfer: baseline random {} {:.2f}% (kNN {:.2f}%)", config.model.encoder,
                 random.top1, random_knn);
  }

  if (fc.enabled) {
    nlohmann::json finetune_results;
    finetune_results["settings"] = {{"epochs", fc.epochs},
                                    {"max_steps", fc.max_steps},
                                    {"batch_size", fc.batch_size},
                                    {"optimizer", fc.optimizer},
                                    {"lr", fc.lr},
                                    {"weight_decay", fc.weight_decay},
                                    {"augment", fc.augment ? "crop+flip" : "none"},
                                    {"batch_norm", config.model.batch_norm}};
    t = Clock::now();
    const int64_t full_rows = train_features.features.size(0);
    for (const auto& run : fraction_runs) {
      nlohmann::json entry = {{"fraction", run.fraction},
                              {"labelled", run.labelled.size()},
                              {"pretrained", finetune_json(run.pretrained)}};
      const auto probe_config =
          subset_probe_config(config.transfer.linear, full_rows, int64_t(run.labelled.size()));
      // Frozen pretrained features, linear probe on the same labels (at 100%: the probe above).
      if (run.fraction >= 1.0) {
        entry["linear_probe"] = {{"top1", linear.top1}, {"seconds", linear_s}};
      } else {
        const auto probe_start = Clock::now();
        const auto probe = linear_probe(rows_of(train_features, run.labelled), test_features,
                                        classes, probe_config, config.seed);
        entry["linear_probe"] = {{"top1", probe.top1}, {"seconds", seconds_since(probe_start)}};
      }
      if (config.transfer.baselines) {
        entry["random_init"] = finetune_json(run.random_init);
        if (run.fraction >= 1.0) {
          entry["raw_pixels"] = results["baselines"]["raw_pixels"];
        } else {
          const auto probe_start = Clock::now();
          const auto raw = linear_probe(rows_of(*train_pixels, run.labelled), *test_pixels, classes,
                                        probe_config, config.seed);
          entry["raw_pixels"] = {{"top1", raw.top1}, {"seconds", seconds_since(probe_start)}};
        }
      }
      finetune_results["fractions"].push_back(entry);
    }
    timings["subset_probes_s"] = seconds_since(t);
    results["finetune"] = finetune_results;
  }
  timings["linear_probe_s"] = linear_s;
  timings["knn_s"] = knn_s;
  results["timings"] = timings;
  results["wall_seconds"] = seconds_since(start);

  fs::create_directories(out_dir);
  write_file_atomic((fs::path(out_dir) / "results.json").string(), results.dump(2) + "\n");
  // The run directory's layout (DESIGN.md §5): <run>/transfer/ beside <run>/monitor.csv.
  write_results_plots(results, out_dir, (fs::path(out_dir).parent_path() / "monitor.csv").string());
  return results;
}

}  // namespace selfsup
