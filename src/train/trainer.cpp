#include "selfsup/train/trainer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/files.h"
#include "selfsup/core/launch.h"
#include "selfsup/core/logging.h"
#include "selfsup/data/dataset.h"
#include "selfsup/data/loader.h"
#include "selfsup/data/sampler.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/train/checkpoint.h"
#include "selfsup/train/metrics.h"
#include "selfsup/train/optim.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxConsecutiveSkips = 10;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Collectives of one training step (averaged over `steps`), as logged and saved in
// collectives.json: {"all_gather": {"calls": 1, "bytes": 65536, "ms": 0.4}, ...}.
nlohmann::json collectives_per_step(const Communicator& comm, int64_t steps) {
  nlohmann::json out = nlohmann::json::object();
  if (steps == 0) return out;
  std::string line;
  for (const auto& [name, c] : comm.counts()) {
    const double calls = double(c.calls) / steps, bytes = double(c.bytes) / steps;
    const double ms = 1e3 * c.seconds / steps;
    out[name] = {{"calls", calls}, {"bytes", bytes}, {"ms", ms}};
    line += fmt::format("{}{} {:.4g} x {:.1f} KiB in {:.2f} ms", line.empty() ? "" : ", ", name,
                        calls, bytes / std::max(calls, 1e-9) / 1024, ms);
  }
  spdlog::info("collectives per step ({} backend, {} ranks): {}", comm.backend(), comm.size(),
               line);
  return out;
}

// The peak resident memory of this process so far (VmHWM), in MiB; 0 where /proc is missing.
double peak_resident_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0.0;
}

}  // namespace

void prepare_run_dir(const std::string& run_dir, const Config& config,
                     const std::string& command_line) {
  const fs::path dir(run_dir);
  std::error_code ec;
  fs::create_directories(dir / "logs", ec);
  if (!ec) fs::create_directories(dir / "checkpoints", ec);
  if (ec || ::access(dir.c_str(), W_OK) != 0) {
    throw Error("cannot create or write the run directory '" + run_dir + "'" +
                (ec ? ": " + ec.message() : std::string(": permission denied")) +
                "; pass --run-dir with a writable path");
  }
  write_file_atomic((dir / "config.json").string(), config_to_json(config) + "\n");
  write_file_atomic((dir / "command.txt").string(), command_line + "\n");
}

int choose_threads(int requested, int local_ranks) {
  if (requested > 0) return requested;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, local_ranks));
}

Trainer::Trainer(Config config, std::string run_dir, std::shared_ptr<Communicator> comm)
    : config_(std::move(config)), run_dir_(std::move(run_dir)), comm_(std::move(comm)) {}

Trainer::~Trainer() = default;

TrainResult Trainer::run() {
  const int rank = comm_->rank(), world = comm_->size();
  const auto& tc = config_.train;

  // Data: one global permutation per epoch; this rank takes its slice of every global batch.
  auto dataset = open_dataset(config_.data, Split::kTrain);
  spdlog::info("dataset: {}", dataset->describe());
  DistributedSampler sampler(dataset->size(), tc.batch_size, rank, world, config_.seed);
  LoaderOptions loader_options;
  loader_options.seed = config_.seed;
  loader_options.workers = config_.data.workers;
  loader_options.prefetch = config_.data.prefetch;
  loader_options.views = config_.augment.views;
  Loader loader(*dataset, SimClrAugment(config_.augment), loader_options);

  // Denormal floats (tiny gradients, Adam moments) run through microcode on x86 and can slow a CPU
  // step several-fold late in training; flushing them to zero costs nothing in accuracy.
  at::globalContext().setFlushDenormal(true);

  // Rules between keys (a Config built in code has not been through parse_config), then memory:
  // every rank takes the smallest share of RAM per rank over all nodes, so all stop together.
  check_config(config_, "config");
  if (config_.device == "cpu") {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGE_SIZE);
    auto share = torch::tensor(
        {pages > 0 && page_size > 0
             ? double(pages) * double(page_size) / double(std::max(1, detect_launch().local_size))
             : 0.0},
        torch::kDouble);
    comm_->all_reduce_(share, ReduceOp::kMin);
    check_loss_memory(config_, world, share.item<double>());
  }

  // Model: identical initial weights on every rank (seeded, then broadcast from rank 0).
  torch::manual_seed(config_.seed);
  const torch::Device device = resolve_device(config_.device, comm_->local_rank());
  objective_ = make_objective(config_, dataset->channels(), comm_);
  objective_->to(device);
  broadcast_module(*objective_, *comm_);
  objective_->train();
  // What the optimizer trains: a momentum key encoder follows the encoder instead (end_step).
  std::vector<torch::Tensor> parameters;
  for (const auto& p : objective_->parameters())
    if (p.requires_grad()) parameters.push_back(p);
  auto optimizer = make_optimizer(config_.optim, parameters);
  GradientReducer reducer(parameters, *comm_);

  const int64_t steps_per_epoch = sampler.steps_per_epoch();
  int64_t total_steps = tc.epochs * steps_per_epoch;
  if (tc.max_steps > 0) total_steps = std::min(total_steps, tc.max_steps);
  int64_t params = 0;
  for (const auto& p : parameters) params += p.numel();
  spdlog::info(
      "objective {} | encoder {} ({} features) | {} parameters | global batch {} ({} per rank, {} "
      "views) | {} steps ({} per epoch) | {} ranks, backend {}",
      objective_->name(), config_.model.encoder, objective_->encoder()->feature_dim(), params,
      tc.batch_size, sampler.local_batch(), config_.augment.views, total_steps, steps_per_epoch,
      world, comm_->backend());
  spdlog::info("device {}", device.str());
  const auto& negatives = config_.negatives;
  if (negatives.source == "queue" && negatives.momentum == 0.0) {
    spdlog::warn(
        "negatives.source = \"queue\" without a momentum encoder: the queued keys come from "
        "older encoders and can be inconsistent with the current one (MoCo reports training "
        "fails this way); set negatives.momentum, e.g. 0.99");
  }
  if (negatives.source != "batch" && config_.model.batch_norm == "local" && world > 1) {
    spdlog::warn(
        "model.batch_norm = \"local\" with a queue: an anchor and its positive share their "
        "rank's batch statistics, which the queued keys do not, a shortcut the model can learn; "
        "\"sync\" (the default) normalises with the global batch");
  }
  spdlog::info(
      "negatives: {}{}{} | loss {} | candidates per anchor N = {}{} (MI bound log N - loss)",
      negatives.source,
      negatives.queue_size > 0 ? fmt::format(", queue of {} keys", negatives.queue_size) : "",
      negatives.momentum > 0 ? fmt::format(", momentum key encoder (m = {})", negatives.momentum)
                             : "",
      config_.loss.tiled ? fmt::format("tiled (block {})", config_.loss.block_size) : "dense",
      (negatives.source == "queue" ? config_.augment.views - 1
                                   : tc.batch_size * config_.augment.views - 1) +
          negatives.queue_size,
      negatives.queue_size > 0 ? " once the queue is full" : "");

  std::optional<MetricsWriter> metrics;  // rank 0 writes the run's metrics
  if (rank == 0) metrics.emplace(run_dir_);
  const bool bar = rank == 0 && stderr_is_terminal();
  ProgressBar progress(total_steps);

  TrainResult result;
  comm_->reset_counts();  // from here on: what the training steps move
  int64_t step = 0, consecutive_skips = 0, images_seen = 0;
  const auto start = Clock::now();
  auto window_start = start;
  auto last_step_end = start;
  int64_t window_images = 0;
  for (int64_t epoch = 0; step < total_steps; ++epoch) {
    loader.start_epoch(epoch, sampler.local_batches(epoch));
    while (step < total_steps) {
      const auto wait_start = Clock::now();
      auto batch = loader.next();
      if (!batch) break;
      const double data_wait = seconds_since(wait_start);
      const double lr = learning_rate(config_.optim, step, total_steps);
      set_learning_rate(*optimizer, lr);

      optimizer->zero_grad();
      auto out = objective_->compute(batch->views.to(device, /*non_blocking=*/true));
      out.loss.backward();
      reducer.reduce();

      // One collective for every logged number: the global mean over ranks. A non-finite loss on
      // any rank makes the mean non-finite everywhere, so all ranks agree to skip (invariant 4).
      std::vector<double> local_values{out.loss.item<double>()};
      for (const auto& [key, value] : out.metrics) local_values.push_back(value);
      auto values = torch::tensor(local_values, torch::kDouble);
      comm_->all_reduce_(values, ReduceOp::kAvg);
      const double loss = values[0].item<double>();
      if (!std::isfinite(loss)) {
        ++result.skipped_steps;
        SELFSUP_CHECK(++consecutive_skips < kMaxConsecutiveSkips, "the loss was not finite for ",
                      kMaxConsecutiveSkips, " consecutive steps (step ", step,
                      "); lower optim.lr or check the data");
        spdlog::warn("step {}: non-finite loss, step skipped on every rank", step);
        objective_->end_step(/*applied=*/false);
      } else {
        consecutive_skips = 0;
        optimizer->step();
        objective_->end_step(/*applied=*/true);
      }
      ++step;
      images_seen += tc.batch_size;
      window_images += tc.batch_size;

      // Wall time since the previous step ended: compute plus any wait for the loader.
      const double step_seconds = seconds_since(last_step_end);
      last_step_end = Clock::now();
      const double mi_bound = std::log(double(out.candidates_per_anchor)) - loss;
      std::vector<std::pair<std::string, double>> row{
          {"step", double(step)},
          {"epoch", double(epoch)},
          {"loss", loss},
          {"mi_bound", mi_bound},
          {"lr", lr},
          {"images_per_s", double(tc.batch_size) / std::max(step_seconds, 1e-9)},
          {"data_wait_ms", 1e3 * data_wait}};
      std::map<std::string, double> global_metrics;
      size_t i = 1;
      for (const auto& [key, value] : out.metrics) {
        global_metrics[key] = values[i++].item<double>();
        row.emplace_back(key, global_metrics[key]);
      }
      if (metrics) metrics->write(row);
      result.final_loss = loss;
      result.final_mi_bound = mi_bound;
      result.candidates_per_anchor = out.candidates_per_anchor;

      if (bar) progress.update(step, loss, double(images_seen) / seconds_since(start));
      if (step % tc.log_every == 0 || step == total_steps) {
        const double rate = double(window_images) / seconds_since(window_start);
        const std::string line = fmt::format(
            "step {}/{} epoch {} | loss {:.4f} | MI bound {:.3f} nats (N={}) | pos {:.3f} neg "
            "{:.3f} "
            "| lr {:.2e} | {:.0f} img/s",
            step, total_steps, epoch, loss, mi_bound, out.candidates_per_anchor,
            global_metrics["pos_sim"], global_metrics["neg_sim"], lr, rate);
        // On a terminal the bar shows progress; the log file always gets the line.
        if (bar)
          spdlog::debug(line);
        else
          spdlog::info(line);
        window_start = Clock::now();
        window_images = 0;
      }
    }
  }
  if (bar) progress.finish();
  const auto collectives = collectives_per_step(*comm_, step);
  result.steps = step;
  result.seconds = seconds_since(start);
  result.images_per_s = double(images_seen) / std::max(result.seconds, 1e-9);
  result.peak_memory_mb = peak_resident_mb();
  // The largest peak over the ranks (the one that would run out of memory first).
  auto peak = torch::tensor({result.peak_memory_mb}, torch::kDouble);
  comm_->all_reduce_(peak, ReduceOp::kMax);
  result.peak_memory_mb = peak.item<double>();

  if (rank == 0) {
    CheckpointInfo info;
    info.step = step;
    info.epoch = step / std::max<int64_t>(1, steps_per_epoch);
    info.config_json = config_to_json(config_);
    result.checkpoint = save_checkpoint((fs::path(run_dir_) / "checkpoints").string(), info,
                                        *objective_, *optimizer);
    spdlog::info("checkpoint: {}", result.checkpoint);
    write_plots(run_dir_);
    write_file_atomic((fs::path(run_dir_) / "collectives.json").string(),
                      collectives.dump(2) + "\n");
    const nlohmann::json summary = {{"global_batch", tc.batch_size},
                                    {"world_size", world},
                                    {"views", config_.augment.views},
                                    {"queue_size", negatives.queue_size},
                                    {"negatives_source", negatives.source},
                                    {"momentum", negatives.momentum},
                                    {"loss_tiled", config_.loss.tiled},
                                    {"candidates_per_anchor", result.candidates_per_anchor},
                                    {"steps", result.steps},
                                    {"skipped_steps", result.skipped_steps},
                                    {"images_seen", images_seen},
                                    {"final_loss", result.final_loss},
                                    {"final_mi_bound", result.final_mi_bound},
                                    {"images_per_s", result.images_per_s},
                                    {"seconds", result.seconds},
                                    {"peak_rss_mb", result.peak_memory_mb}};
    write_file_atomic((fs::path(run_dir_) / "summary.json").string(), summary.dump(2) + "\n");
  }
  comm_->barrier();
  spdlog::info(
      "pretraining done: {} steps in {:.1f} s, {:.0f} img/s, final loss {:.4f}, MI bound {:.3f} "
      "nats",
      result.steps, result.seconds, result.images_per_s, result.final_loss, result.final_mi_bound);
  return result;
}

}  // namespace selfsup
