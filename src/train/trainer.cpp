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
#include "selfsup/data/device_augment.h"
#include "selfsup/data/loader.h"
#include "selfsup/data/sampler.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/train/checkpoint.h"
#include "selfsup/train/coordinator.h"
#include "selfsup/train/metrics.h"
#include "selfsup/train/optim.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

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
                     const std::string& command_line, bool write_config) {
  const fs::path dir(run_dir);
  std::error_code ec;
  fs::create_directories(dir / "logs", ec);
  if (!ec) fs::create_directories(dir / "checkpoints", ec);
  if (ec || ::access(dir.c_str(), W_OK) != 0) {
    throw Error("cannot create or write the run directory '" + run_dir + "'" +
                (ec ? ": " + ec.message() : std::string(": permission denied")) +
                "; pass --run-dir with a writable path");
  }
  if (write_config)
    write_file_atomic((dir / "config.json").string(), config_to_json(config) + "\n");
  // One line per invocation: a resumed run keeps the commands that came before.
  const fs::path commands = dir / "command.txt";
  write_file_atomic(
      commands.string(),
      (fs::exists(commands) ? read_file(commands.string()) : std::string()) + command_line + "\n");
}

int choose_threads(int requested, int local_ranks) {
  if (requested > 0) return requested;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, local_ranks));
}

Trainer::Trainer(Config config, std::string run_dir, std::shared_ptr<Communicator> comm,
                 std::string resume)
    : config_(std::move(config)),
      run_dir_(std::move(run_dir)),
      comm_(std::move(comm)),
      resume_(std::move(resume)) {}

Trainer::~Trainer() = default;

void Trainer::set_monitor(int64_t every_epochs, std::function<double(Encoder&)> monitor) {
  monitor_every_ = monitor ? every_epochs : 0;
  monitor_ = std::move(monitor);
}

TrainResult Trainer::run() {
  const int rank = comm_->rank(), world = comm_->size();
  const auto& tc = config_.train;

  // Data: one global permutation per epoch; this rank takes its slice of every global batch.
  auto dataset = open_dataset(config_.data, Split::kTrain);
  spdlog::info("dataset: {}", dataset->describe());
  {
    // Every rank opened the dataset on its own (a cached index on one node, a fresh walk of a
    // folder still being copied on another): they must agree before the samplers plan, or the
    // ranks would run different steps. Every rank compares the same reduced numbers and stops
    // together.
    const auto offsets = dataset->shard_offsets();
    const auto mine = torch::tensor({double(dataset->size()), double(offsets.size()),
                                     offsets.empty() ? 0.0 : double(offsets.back())},
                                    torch::kDouble);
    auto low = mine.clone(), high = mine.clone();
    comm_->all_reduce_(low, ReduceOp::kMin);
    comm_->all_reduce_(high, ReduceOp::kMax);
    SELFSUP_CHECK(torch::equal(low, high), "the ranks see different datasets: between ",
                  int64_t(low[0].item<double>()), " and ", int64_t(high[0].item<double>()),
                  " samples (this rank: ", dataset->describe(), "); make ", config_.data.root,
                  " the same on every node (a copy still in progress? a stale index? set "
                  "data.index_cache=false to rule the index out)");
  }
  std::unique_ptr<Sampler> sampler_owner;
  if (config_.data.sampler == "shards") {
    const auto offsets = dataset->shard_offsets();
    if (offsets.empty()) {
      throw ConfigError(
          "data.sampler = \"shards\" needs a dataset stored in shards (data.dataset "
          "= \"tar\"); " +
          dataset->describe() + " has none: use data.sampler = \"global\"");
    }
    sampler_owner =
        std::make_unique<ShardSampler>(offsets, tc.batch_size, rank, world, config_.seed);
  } else {
    sampler_owner = std::make_unique<DistributedSampler>(dataset->size(), tc.batch_size, rank,
                                                         world, config_.seed);
  }
  const Sampler& sampler = *sampler_owner;
  const torch::Device device = resolve_device(config_.device, comm_->local_rank());
  LoaderOptions loader_options;
  loader_options.seed = config_.seed;
  loader_options.workers = config_.data.workers;
  loader_options.prefetch = config_.data.prefetch;
  loader_options.views = config_.augment.views;
  loader_options.local_views = config_.augment.local_views;
  loader_options.device_augment = config_.augment.backend == "device";
  // Page-locked batches only where they help: an asynchronous copy to a CUDA device.
  loader_options.pin_memory = config_.data.pin_memory && device.is_cuda();
  Loader loader(*dataset, SimClrAugment::for_dataset(config_.augment, *dataset), loader_options);
  std::optional<DeviceAugment> device_augment;
  if (loader_options.device_augment) {
    device_augment.emplace(config_.augment, dataset->channels());
    if (!device.is_cuda()) {
      spdlog::warn(
          "augment.backend = \"device\" on a CPU: the batched tensor ops are slower there than "
          "the OpenCV path; use augment.backend = \"cpu\" unless testing");
    }
  }

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

  // Rank 0 repairs what an interrupted save left and decides what to resume from.
  const std::string checkpoints_dir = (fs::path(run_dir_) / "checkpoints").string();
  if (rank == 0) {
    for (const auto& line : clean_checkpoints(checkpoints_dir))
      spdlog::warn("checkpoints: {}", line);
  }
  const std::string resume_from = choose_resume(resume_, checkpoints_dir, *comm_);
  if (rank == 0 && resume_from.empty() && !list_checkpoints(checkpoints_dir).empty()) {
    // A fresh start must not mix with an earlier run's checkpoints (`latest`, pruning); they are
    // kept aside, never deleted.
    const std::string aside =
        checkpoints_dir + ".replaced-" +
        std::to_string(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));
    fs::rename(checkpoints_dir, aside);
    fs::create_directories(checkpoints_dir);
    spdlog::warn(
        "starting fresh: the earlier run's checkpoints in {} were moved to {} (pass "
        "--resume auto to continue a run)",
        checkpoints_dir, aside);
  }

  // Model: identical initial weights on every rank (seeded, then broadcast from rank 0). A resumed
  // run takes its weights from the checkpoint, so it does not need the model.init file any more.
  torch::manual_seed(config_.seed);
  Config model_config = config_;
  if (!resume_from.empty()) model_config.model.init.clear();
  objective_ = make_objective(model_config, dataset->channels(), comm_,
                              view_side(config_, dataset->height()));
  objective_->to(device);
  objective_->train();
  // What the optimizer trains: a momentum key encoder follows the encoder instead, and a GAN's
  // generator has an optimizer of its own (both in end_step).
  const std::vector<torch::Tensor> parameters = objective_->trainable_parameters();
  // The peak learning rate scaled to the global batch (optim.lr_scaling); the schedule and every
  // optimizer use it.
  // Gradient accumulation: an optimizer step averages the gradients of `accumulate` micro-batches
  // of tc.batch_size, so the rules that scale the learning rate see the optimizer's batch.
  const int64_t accumulate = tc.accumulate_steps;
  const int64_t optimizer_batch = tc.batch_size * accumulate;
  OptimConfig optim = config_.optim;
  optim.lr = scaled_learning_rate(config_.optim, optimizer_batch);
  auto optimizer = make_optimizer(optim, parameters);
  GradientReducer reducer(parameters, *comm_, config_.dist.bucket_mb << 20,
                          config_.dist.overlap_grad_reduce);

  // Resume: every rank loads the same checkpoint, and all agree that it loaded before anyone
  // trains.
  CheckpointInfo resumed;
  if (!resume_from.empty()) {
    const auto load_start = Clock::now();
    std::string load_error;
    bool config_error = false;
    try {
      // The config first: a different model is named by its keys, not by a tensor's shape.
      resumed = verify_checkpoint(resume_from);
      const auto warnings =
          compare_for_resume(config_, resumed.config_json, resumed.world_size, world);
      load_model(resume_from, *objective_);
      if (rank == 0)
        for (const auto& warning : warnings) spdlog::warn("resume: {}", warning);
      load_optimizer(resume_from, *optimizer);
      for (const auto& [name, own] : objective_->own_optimizers())
        load_optimizer(resume_from, *own, name);
      const auto rng = load_rng_states(resume_from);
      const auto own = get_rng_state(device.is_cuda());
      if (rng.defined() && rng.size(0) == world && rng.size(1) == own.numel()) {
        set_rng_state(rng[rank], device.is_cuda());
      } else if (rank == 0) {
        spdlog::warn(
            "resume: {} holds no RNG states for {} rank(s) on {}; generators keep the "
            "seed's streams",
            resume_from, world, device.str());
      }
    } catch (const ConfigError& e) {
      load_error = e.what();
      config_error = true;
    } catch (const std::exception& e) {
      load_error = e.what();
    }
    // A rank that cannot read the checkpoint (a file system other ranks do not share) must not
    // leave the others waiting in the first training step.
    auto failed = torch::tensor({load_error.empty() ? 0.0 : 1.0}, torch::kDouble);
    comm_->all_reduce_(failed, ReduceOp::kMax);
    if (!load_error.empty()) {
      if (config_error) throw ConfigError(load_error);
      throw Error(load_error);
    }
    SELFSUP_CHECK(failed.item<double>() == 0.0, "another rank could not load checkpoint ",
                  resume_from,
                  " (see its log); is the run directory on a file system every "
                  "rank shares?");
    spdlog::info(
        "resumed from {} (step {}, epoch {}, position {} in the epoch; written by "
        "selfsup {} on {} rank(s)) in {:.0f} ms",
        resume_from, resumed.step, resumed.epoch, resumed.step_in_epoch, resumed.version,
        resumed.world_size, 1e3 * seconds_since(load_start));
  }
  // A run asked to resume writes its config.json only now that the checkpoint fits it (a refused
  // resume leaves the run's config as it was).
  if (rank == 0 && !resume_.empty()) {
    write_file_atomic((fs::path(run_dir_) / "config.json").string(),
                      config_to_json(config_) + "\n");
  }
  broadcast_module(*objective_, *comm_);

  // Optimizer steps per epoch: the sampler's batches taken `accumulate` at a time; the batches
  // that do not fill a last step are dropped, as the sampler drops an incomplete batch.
  const int64_t micro_batches_per_epoch = sampler.steps_per_epoch();
  if (micro_batches_per_epoch < accumulate) {
    throw ConfigError("train.accumulate_steps = " + std::to_string(accumulate) +
                      " needs that many batches per epoch, but the training set gives " +
                      std::to_string(micro_batches_per_epoch) +
                      " of train.batch_size = " + std::to_string(tc.batch_size) + " (" +
                      dataset->describe() + "); lower train.accumulate_steps or train.batch_size");
  }
  const int64_t steps_per_epoch = micro_batches_per_epoch / accumulate;
  int64_t total_steps = tc.epochs * steps_per_epoch;
  if (tc.max_steps > 0) total_steps = std::min(total_steps, tc.max_steps);
  int64_t params = 0;
  for (const auto& p : parameters) params += p.numel();
  spdlog::info(
      "objective {} | encoder {} ({} features) | {} parameters | global batch {} ({} per rank, {} "
      "views) | {} steps ({} per epoch) | {} ranks, backend {}",
      objective_->name(), config_.model.encoder, objective_->encoder()->feature_dim(), params,
      tc.batch_size, sampler.local_batch(), config_.augment.total_views(), total_steps,
      steps_per_epoch, world, comm_->backend());
  at::globalContext().setBenchmarkCuDNN(device.is_cuda() && tc.cudnn_benchmark);
  spdlog::info("device {} | precision {} (train.precision \"{}\") | channels-last {}", device.str(),
               resolved_precision(config_), tc.precision, config_.model.channels_last);
  if (accumulate > 1) {
    // What accumulation does and does not do: it multiplies the batch the optimizer averages over,
    // never the negatives, which a step's loss draws from its own micro-batch (and the queue).
    spdlog::info(
        "gradient accumulation: {} micro-batches of {} images per optimizer step, so the "
        "optimizer averages over {} images; it does not add negatives: each micro-batch's loss "
        "contrasts its own {} images (plus the queue), as a run with train.batch_size = {} does",
        accumulate, tc.batch_size, optimizer_batch, tc.batch_size, tc.batch_size);
  }
  if (config_.optim.lr_scaling != "none") {
    spdlog::info("optimizer {} | peak lr {:.6g} = optim.lr {} x {}({} / {}) ({} scaling{})",
                 config_.optim.name, optim.lr, config_.optim.lr,
                 config_.optim.lr_scaling == "sqrt" ? "sqrt" : "", optimizer_batch,
                 config_.optim.base_batch, config_.optim.lr_scaling,
                 accumulate > 1 ? ", the optimizer's batch" : "");
  } else {
    spdlog::info("optimizer {} | peak lr {:.6g}", config_.optim.name, optim.lr);
  }
  if (world > 1) {
    spdlog::info("gradient reduction: {} bucket(s) of up to {} MiB, {}", reducer.bucket_count(),
                 config_.dist.bucket_mb,
                 reducer.overlap() ? "overlapped with backward" : "after backward");
  }
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
  if (config_.pretext.task == "simclr")
    spdlog::info(
        "negatives: {}{}{} | loss {} | candidates per anchor N = {}{} (MI bound log N - loss)",
        negatives.source,
        negatives.queue_size > 0 ? fmt::format(", queue of {} keys", negatives.queue_size) : "",
        negatives.momentum > 0 ? fmt::format(", momentum key encoder (m = {})", negatives.momentum)
                               : "",
        config_.loss.tiled ? fmt::format("tiled (block {})", config_.loss.block_size) : "dense",
        (negatives.source == "queue" ? config_.augment.total_views() - 1
                                     : tc.batch_size * config_.augment.total_views() - 1) +
            negatives.queue_size,
        negatives.queue_size > 0 ? " once the queue is full" : "");

  std::optional<MetricsWriter> metrics;       // rank 0 writes the run's metrics
  std::optional<MetricsWriter> monitor_rows;  // and the kNN monitor's
  if (rank == 0) {
    metrics.emplace(run_dir_, resume_from.empty() ? -1 : resumed.step);
    if (monitor_every_ > 0)
      monitor_rows.emplace(run_dir_, resume_from.empty() ? -1 : resumed.step, "monitor");
  }
  const bool bar = rank == 0 && stderr_is_terminal();
  ProgressBar progress(total_steps);
  if (!resume_from.empty() && resumed.total_steps != total_steps && rank == 0) {
    spdlog::warn(
        "resume: the schedule now spans {} steps, the checkpoint's run {}; the learning "
        "rate follows the new length",
        total_steps, resumed.total_steps);
  }

  // Checkpoints: every rank's generator states are gathered, rank 0 writes; all ranks return the
  // path. Called at the same step on every rank.
  const int64_t every = config_.checkpoint.every_steps;
  CheckpointInfo position;
  auto write_checkpoint = [&]() {
    auto state = get_rng_state(device.is_cuda());
    const auto rng_states = comm_->all_gather(state.unsqueeze(0));  // [world, bytes]
    std::string path;
    if (rank == 0) {
      const auto t = Clock::now();
      position.world_size = world;
      position.config_json = config_to_json(config_);
      path = save_checkpoint(checkpoints_dir, position, *objective_, optimizer.get(), rng_states,
                             objective_->own_optimizers());
      prune_checkpoints(checkpoints_dir, config_.checkpoint.keep);
      double bytes = 0;
      for (const auto& entry : fs::directory_iterator(path)) bytes += double(entry.file_size());
      spdlog::info("checkpoint {} ({:.1f} MiB) written in {:.0f} ms", path, bytes / (1 << 20),
                   1e3 * seconds_since(t));
    }
    return path;
  };

  TrainResult result;
  comm_->reset_counts();  // from here on: what the training steps move
  StopSignals signals;    // SIGTERM / SIGUSR1: checkpoint at the next step, then stop
  const auto inject_nonfinite = injected_nonfinite_steps(rank);
  if (!inject_nonfinite.empty())
    spdlog::warn("SELFSUP_INJECT_NONFINITE: the loss of this rank is made NaN at {} step(s)",
                 inject_nonfinite.size());
  int64_t step = resumed.step, consecutive_skips = resumed.consecutive_skips;
  int64_t images_seen = resumed.images_seen;
  int64_t last_checkpoint_step = resume_from.empty() ? -1 : resumed.step;
  result.skipped_steps = resumed.skipped_steps;
  double coordinator_seconds = 0.0;
  double data_wait_seconds = 0.0, step_seconds_total = 0.0;  // this rank's, over this process
  int64_t steps_run = 0;
  const auto start = Clock::now();
  auto window_start = start;
  auto last_step_end = start;
  int64_t window_images = 0;
  for (int64_t epoch = resumed.epoch; step < total_steps && !result.preempted; ++epoch) {
    // The sampler position: a resumed epoch starts at the step after the checkpoint.
    auto plan = sampler.local_batches(epoch);
    plan.resize(size_t(steps_per_epoch * accumulate));  // whole optimizer steps only
    const int64_t first =
        epoch == resumed.epoch ? std::min<int64_t>(resumed.step_in_epoch, steps_per_epoch) : 0;
    plan.erase(plan.begin(), plan.begin() + first * accumulate);
    loader.start_epoch(epoch, std::move(plan));
    // Bad samples replaced this epoch, summed over ranks. Each sample is read once per epoch, so
    // this never exceeds the number of bad files: above max_bad_fraction of an epoch it stops the
    // run without waiting for the epoch to end.
    int64_t epoch_bad = 0;
    for (int64_t in_epoch = first; step < total_steps && in_epoch < steps_per_epoch; ++in_epoch) {
      const double lr = learning_rate(optim, step, total_steps);
      set_learning_rate(*optimizer, lr);
      optimizer->zero_grad();

      // The step's micro-batches: each one's gradient adds to the parameters' .grad, scaled by
      // 1/accumulate so that the sum is their mean; the ranks' gradients are averaged once, after
      // the last one (its backward starts the overlapped buckets).
      double data_wait = 0.0;
      torch::Tensor loss_sum;  // the micro-batches' losses, summed on the device
      std::map<std::string, double> metric_sums;
      int64_t batch_bad = 0;
      ObjectiveOutput out;
      bool epoch_ended = false;
      for (int64_t micro = 0; micro < accumulate; ++micro) {
        const auto wait_start = Clock::now();
        auto batch = loader.next();
        if (!batch) {
          SELFSUP_CHECK(micro == 0, "the loader ended inside an optimizer step (micro-batch ",
                        micro + 1, " of ", accumulate, "); the epoch's plan holds whole steps");
          epoch_ended = true;
          break;
        }
        data_wait += seconds_since(wait_start);
        torch::Tensor views, local_views;
        if (device_augment) {
          // uint8 crosses the bus (a quarter of the bytes of float views); the views are keyed by
          // (seed, epoch, dataset index, view) like the CPU path, so they do not depend on the
          // rank.
          torch::NoGradGuard no_grad;
          const auto made = device_augment->forward(batch->images.to(device, /*non_blocking=*/true),
                                                    config_.seed, batch->epoch, batch->keys);
          views = made.global;
          local_views = made.local;
        } else {
          views = batch->views.to(device, /*non_blocking=*/true);
          if (batch->local_views.defined())
            local_views = batch->local_views.to(device, /*non_blocking=*/true);
        }
        ObjectiveInput input;
        input.views = views;
        input.local_views = local_views;
        input.keys = batch->keys;
        input.epoch = batch->epoch;
        input.step = step;
        input.lr = lr;
        out = objective_->compute(input);
        if (inject_nonfinite.count(step + 1)) out.loss = out.loss * std::nan("");  // tests only
        const bool last = micro + 1 == accumulate;
        if (last) reducer.prepare();  // overlapped: buckets start reducing as backward fills them
        (accumulate > 1 ? out.loss / double(accumulate) : out.loss).backward();
        loss_sum = micro == 0 ? out.loss.detach() : loss_sum + out.loss.detach();
        for (const auto& [key, value] : out.metrics) metric_sums[key] += value;
        batch_bad += batch->bad_samples;
      }
      if (epoch_ended) break;
      data_wait_seconds += data_wait;
      if (reducer.overlap() && reducer.bucket_count() > 1 && step == resumed.step &&
          reducer.buckets_started_in_backward() == 0) {
        spdlog::warn(
            "gradient reduction: no bucket could start during backward (a trainable parameter "
            "got no gradient and holds back the buckets after it); the reduction runs after "
            "backward, correct but not overlapped");
      }
      reducer.reduce();

      // One collective for every number of the step: the global mean over ranks of the loss, a
      // gradient checksum, the metrics and this rank's stop request. A non-finite value on any
      // rank makes the mean non-finite everywhere, and any stop request makes its mean positive,
      // so all ranks take the same decisions (invariant 4) without a collective of their own.
      // With accumulation the loss and the metrics are the means over the micro-batches.
      const auto coordinator_start = Clock::now();
      std::vector<torch::Tensor> grad_sums;
      for (const auto& p : parameters)
        if (p.grad().defined()) grad_sums.push_back(p.grad().sum());
      const double grad_sum =
          grad_sums.empty() ? 0.0 : torch::stack(grad_sums).sum().item<double>();
      std::vector<double> local_values{loss_sum.item<double>() / double(accumulate), grad_sum};
      for (const auto& [key, value] : out.metrics)
        local_values.push_back(metric_sums[key] / double(accumulate));
      local_values.push_back(double(batch_bad));
      local_values.push_back(StopSignals::pending() != 0 ? 1.0 : 0.0);
      coordinator_seconds += seconds_since(coordinator_start);
      auto values = torch::tensor(local_values, torch::kDouble);
      comm_->all_reduce_(values, ReduceOp::kAvg);
      const double loss = values[0].item<double>();
      const bool finite = std::isfinite(loss) && std::isfinite(values[1].item<double>());
      const bool stop = values[values.size(0) - 1].item<double>() > 0.0;
      const auto step_bad =
          int64_t(std::llround(values[values.size(0) - 2].item<double>() * double(world)));
      epoch_bad += step_bad;
      result.bad_samples += step_bad;
      check_bad_fraction(epoch_bad, steps_per_epoch * optimizer_batch,
                         config_.data.max_bad_fraction, loader.bad_sources());
      if (!finite) {
        ++result.skipped_steps;
        ++consecutive_skips;
        SELFSUP_CHECK(consecutive_skips < config_.train.max_skipped_steps,
                      "the loss or the gradients were not finite for ", consecutive_skips,
                      " consecutive steps (steps ", step + 2 - consecutive_skips, " to ", step + 1,
                      "); lower optim.lr, check the data, or raise train.max_skipped_steps. The "
                      "last checkpoint is in ",
                      checkpoints_dir);
        spdlog::warn("step {}: non-finite {}, step skipped on every rank ({} in a row)", step + 1,
                     std::isfinite(loss) ? "gradients" : "loss", consecutive_skips);
        objective_->end_step(/*applied=*/false);
      } else {
        consecutive_skips = 0;
        optimizer->step();
        objective_->end_step(/*applied=*/true);
      }
      ++step;
      ++steps_run;
      images_seen += optimizer_batch;
      window_images += optimizer_batch;

      // Wall time since the previous step ended: compute plus any wait for the loader.
      const double step_seconds = seconds_since(last_step_end);
      step_seconds_total += step_seconds;
      last_step_end = Clock::now();
      // The InfoNCE bound of contrastive objectives; other pretext tasks have none (NaN).
      const bool contrastive = out.candidates_per_anchor > 0;
      const double mi_bound =
          contrastive ? std::log(double(out.candidates_per_anchor)) - loss : std::nan("");
      std::vector<std::pair<std::string, double>> row{
          {"step", double(step)}, {"epoch", double(epoch)}, {"loss", loss}};
      if (contrastive) row.emplace_back("mi_bound", mi_bound);
      row.insert(row.end(),
                 {{"lr", lr},
                  {"images_per_s", double(optimizer_batch) / std::max(step_seconds, 1e-9)},
                  {"data_wait_ms", 1e3 * data_wait},
                  {"skipped", finite ? 0.0 : 1.0},
                  {"bad_samples", double(step_bad)}});
      std::map<std::string, double> global_metrics;
      size_t i = 2;
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
        std::string what;  // the objective's own numbers
        if (contrastive) {
          what = fmt::format(" | MI bound {:.3f} nats (N={}) | pos {:.3f} neg {:.3f}", mi_bound,
                             out.candidates_per_anchor, global_metrics["pos_sim"],
                             global_metrics["neg_sim"]);
        } else {
          for (const auto& [key, value] : global_metrics)
            what += fmt::format(" | {} {:.4g}", key, value);
        }
        const std::string line =
            fmt::format("step {}/{} epoch {} | loss {:.4f}{} | lr {:.2e} | {:.0f} img/s", step,
                        total_steps, epoch, loss, what, lr, rate);
        // On a terminal the bar shows progress; the log file always gets the line.
        if (bar)
          spdlog::debug(line);
        else
          spdlog::info(line);
        window_start = Clock::now();
        window_images = 0;
      }

      // The position of the next step, which a checkpoint written now resumes at.
      const bool epoch_done = in_epoch + 1 >= steps_per_epoch;
      position.step = step;
      position.epoch = epoch_done ? epoch + 1 : epoch;
      position.step_in_epoch = epoch_done ? 0 : in_epoch + 1;
      position.total_steps = total_steps;
      position.images_seen = images_seen;
      position.skipped_steps = result.skipped_steps;
      position.consecutive_skips = consecutive_skips;
      // The online monitor at the end of every `monitor_every_`-th epoch, before any checkpoint of
      // this step: a run resumed from that checkpoint starts the next epoch with the row written.
      if (monitor_every_ > 0 && epoch_done && (epoch + 1) % monitor_every_ == 0) {
        const auto t = Clock::now();
        result.monitor_top1 = monitor_(*objective_->encoder());
        spdlog::info("epoch {}: kNN monitor top-1 {:.2f}% ({:.1f} s)", epoch, result.monitor_top1,
                     seconds_since(t));
        if (monitor_rows)
          monitor_rows->write({{"step", double(step)},
                               {"epoch", double(epoch)},
                               {"knn_top1", result.monitor_top1}});
      }
      // A stop at the last step is no stop: the run ends here anyway (the caller still sees the
      // signal and exits before the transfer stage).
      if (stop && step < total_steps) {
        if (rank == 0)
          spdlog::warn(
              "step {}: a stop signal reached a rank; writing a checkpoint "
              "and stopping (resume with --resume auto)",
              step);
        result.checkpoint = write_checkpoint();
        last_checkpoint_step = step;
        result.preempted = true;
        break;
      }
      if (every > 0 && step % every == 0 && step < total_steps) {
        result.checkpoint = write_checkpoint();
        last_checkpoint_step = step;
      }
    }
  }
  if (bar) progress.finish();
  const auto collectives = collectives_per_step(*comm_, steps_run);
  result.steps = step;
  result.seconds = seconds_since(start);
  result.images_per_s = double(steps_run * optimizer_batch) / std::max(result.seconds, 1e-9);
  result.peak_memory_mb = peak_resident_mb();
  // The largest peak over the ranks (the one that would run out of memory first).
  auto peak = torch::tensor({result.peak_memory_mb}, torch::kDouble);
  comm_->all_reduce_(peak, ReduceOp::kMax);
  result.peak_memory_mb = peak.item<double>();

  result.coordinator_ms = 1e3 * coordinator_seconds / double(std::max<int64_t>(1, steps_run));
  // The share of step time spent waiting for the loader, the largest over the ranks (the rank
  // that waits most holds the others back at the next collective).
  auto wait_share = torch::tensor(
      {step_seconds_total > 0 ? data_wait_seconds / step_seconds_total : 0.0}, torch::kDouble);
  comm_->all_reduce_(wait_share, ReduceOp::kMax);
  result.data_wait_fraction = wait_share.item<double>();
  spdlog::info("data: {:.1f} % of step time spent waiting for the loader{}",
               100.0 * result.data_wait_fraction,
               result.data_wait_fraction > 0.1
                   ? " (the input pipeline limits training: raise data.workers, or set "
                     "augment.backend = \"device\" on a GPU)"
                   : "");
  spdlog::info("coordinator: {:.3f} ms per step (gradient checksum, stop and skip agreement)",
               result.coordinator_ms);
  if (last_checkpoint_step != step) {
    result.checkpoint = write_checkpoint();
  } else if (result.checkpoint.empty()) {
    result.checkpoint = resume_from;  // resumed at the end: nothing new to save
  }
  if (steps_run == 0) {
    // Resumed at the end (a requeued job that had finished): the run's files stay as they are.
    spdlog::info("nothing to train: {} is already at step {} of {}", resume_from, step,
                 total_steps);
    return result;
  }
  if (rank == 0) {
    write_plots(run_dir_);
    write_file_atomic((fs::path(run_dir_) / "collectives.json").string(),
                      collectives.dump(2) + "\n");
    nlohmann::json summary = {{"pretext", config_.pretext.task},
                              {"global_batch", tc.batch_size},
                              {"accumulate_steps", accumulate},
                              {"optimizer_batch", optimizer_batch},
                              {"world_size", world},
                              {"views", config_.augment.views},
                              {"local_views", config_.augment.local_views},
                              {"queue_size", negatives.queue_size},
                              {"negatives_source", negatives.source},
                              {"momentum", negatives.momentum},
                              {"loss_tiled", config_.loss.tiled},
                              {"candidates_per_anchor", result.candidates_per_anchor},
                              {"steps", result.steps},
                              {"skipped_steps", result.skipped_steps},
                              {"preempted", result.preempted},
                              {"knn_monitor_top1", result.monitor_top1},
                              {"coordinator_ms_per_step", result.coordinator_ms},
                              {"data_wait_fraction", result.data_wait_fraction},
                              {"bad_samples", result.bad_samples},
                              {"images_seen", images_seen},
                              {"final_loss", result.final_loss},
                              {"final_mi_bound", std::isfinite(result.final_mi_bound)
                                                     ? nlohmann::json(result.final_mi_bound)
                                                     : nlohmann::json()},
                              {"images_per_s", result.images_per_s},
                              {"seconds", result.seconds},
                              {"peak_rss_mb", result.peak_memory_mb}};
    write_file_atomic((fs::path(run_dir_) / "summary.json").string(), summary.dump(2) + "\n");
  }
  comm_->barrier();
  spdlog::info("pretraining done: {} steps in {:.1f} s, {:.0f} img/s, final loss {:.4f}{}",
               result.steps, result.seconds, result.images_per_s, result.final_loss,
               std::isfinite(result.final_mi_bound)
                   ? fmt::format(", MI bound {:.3f} nats", result.final_mi_bound)
                   : std::string());
  return result;
}

}  // namespace selfsup
