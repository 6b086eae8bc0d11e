// The `selfsup` executable: train, transfer, export, embed, validate-data, info. Errors end with
// one line on stderr ("selfsup: error: ...") and a non-zero exit status: 2 for bad usage or config,
// 1 for anything else, and 75 (kExitPreempted) when a stop signal ended training after a
// checkpoint.

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <opencv2/core/version.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#ifdef SELFSUP_HAVE_MPI
#include <mpi.h>
#endif

#include "selfsup/core/config.h"
#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/files.h"
#include "selfsup/core/launch.h"
#include "selfsup/core/logging.h"
#include "selfsup/data/augment.h"
#include "selfsup/data/dataset.h"
#include "selfsup/data/npy.h"
#include "selfsup/data/validate.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder_file.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/train/checkpoint.h"
#include "selfsup/train/coordinator.h"
#include "selfsup/train/trainer.h"
#include "selfsup/transfer/export.h"
#include "selfsup/transfer/monitor.h"
#include "selfsup/transfer/transfer.h"

namespace fs = std::filesystem;
using namespace selfsup;

namespace {

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsageError = 2;

std::string first_line(const std::string& text) {
  auto line = text.substr(0, text.find('\n'));
  return line.empty() ? text : line;
}

// The shared library that provides libblas.so.3 in this process, resolved through symlinks
// (Debian's alternatives decide between the reference BLAS and OpenBLAS).
std::string blas_in_use() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas.so") != std::string::npos ||
            name.find("libopenblas") != std::string::npos) {
          auto* out = static_cast<std::string*>(data);
          std::error_code ec;
          const auto real = fs::canonical(name, ec);
          if (out->empty()) *out = ec ? name : real.string();
        }
        return 0;
      },
      &found);
  if (found.empty()) return "none loaded (matrix products go through LibTorch's own kernels)";
  if (found.find("openblas") != std::string::npos) return "OpenBLAS (" + found + ")";
  return "reference BLAS, slow (" + found + "); install libopenblas0-pthread (launch/setup.sh)";
}

int run_info() {
  std::cout << "selfsup " << SELFSUP_VERSION << "\n";
  std::cout << "  LibTorch   " << TORCH_VERSION << "\n";
  std::cout << "  OpenCV     " << CV_VERSION << "\n";
#ifdef SELFSUP_HAVE_MPI
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(mpi_version, &length);
  std::cout << "  MPI        " << first_line(mpi_version) << "\n";
#else
  std::cout << "  MPI        not built\n";
#endif
#ifdef SELFSUP_HAVE_NCCL
  std::cout << "  NCCL       " << nccl_build_info() << "\n";
#else
  std::cout << "  NCCL       not built\n";
#endif
  // Matrix products of LibTorch's CPU build go through libblas.so.3; make sure it is OpenBLAS.
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
  std::cout << "  BLAS       " << blas_in_use() << "\n";
  torch::set_num_threads(choose_threads(/*requested=*/0, /*local_ranks=*/1));
  std::cout << "  threads    " << torch::get_num_threads() << " intra-op per rank (default), "
            << std::thread::hardware_concurrency() << " cores\n";
  const auto devices = torch::cuda::device_count();
  std::cout << "  CUDA       "
            << (devices > 0 ? std::to_string(devices) + " device(s)"
                            : std::string("no devices (CPU-only LibTorch, or no GPU visible)"))
            << "\n";
  return 0;
}

std::string join_args(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) out += (i ? " " : "") + std::string(argv[i]);
  return out;
}

void print_results(const nlohmann::json& results) {
  std::cout << "\n" << format_results_table(results) << std::flush;
}

// The resolved config that `selfsup train` saved in `run_dir`. Without model.init: the weights
// come from a checkpoint, and the file that started the training may have moved since.
Config load_run_config(const std::string& run_dir, const std::vector<std::string>& overrides) {
  const auto saved = (fs::path(run_dir) / "config.json").string();
  if (!fs::exists(saved)) {
    throw ConfigError(run_dir + " is not a selfsup run directory (no config.json); pass the " +
                      "directory that `selfsup train` created");
  }
  auto config = load_config(saved, overrides);
  config.model.init.clear();
  return config;
}

// `selfsup export`: rebuilds the run's objective in one process on the CPU, loads a checkpoint and
// writes its encoder alone (no projection head, key encoder or queue) as safetensors.
int run_export(const std::string& run_dir, const std::string& checkpoint_arg,
               const std::string& out_arg) {
  auto config = load_run_config(run_dir, {});
  config.device = "cpu";
  torch::set_num_threads(choose_threads(config.train.threads, 1));
  const auto dataset = open_dataset(config.data, Split::kTrain);  // for the image shape
  auto objective =
      make_objective(config, dataset->channels(), std::make_shared<LocalCommunicator>(),
                     view_side(config, dataset->height()));
  const auto checkpoint = checkpoint_arg.empty()
                              ? latest_checkpoint((fs::path(run_dir) / "checkpoints").string())
                              : checkpoint_arg;
  const auto loaded = load_model(checkpoint, *objective);
  const auto out = out_arg.empty() ? (fs::path(run_dir) / "encoder.safetensors").string() : out_arg;
  EncoderExportInfo info;
  info.channels = dataset->channels();
  // The views' side: what the encoder was trained on (images of varying size are cropped to it).
  const int side = SimClrAugment::for_dataset(config.augment, *dataset).global_size();
  info.height = side;
  info.width = side;
  info.checkpoint = checkpoint;
  info.step = loaded.step;
  auto& encoder = *objective->encoder();
  export_encoder(encoder, config, info, out);
  int64_t values = 0;
  for (const auto& [name, tensor] : encoder_tensors(encoder)) values += tensor.numel();
  std::cout << "exported the " << config.model.encoder << " encoder of " << checkpoint << " (step "
            << loaded.step << ", " << encoder_tensors(encoder).size() << " tensors, " << values
            << " values, feature_dim " << encoder.feature_dim() << ") to " << out << "\n";
  return 0;
}

// `selfsup embed`: features of a .npy batch of images from an exported encoder.
int run_embed(const std::string& encoder_path, const std::string& input, const std::string& output,
              int64_t batch_size) {
  torch::set_num_threads(choose_threads(/*requested=*/0, /*local_ranks=*/1));
  auto exported = open_exported_encoder(encoder_path);
  const auto features = embed_images(exported, read_npy(input), batch_size);
  write_npy(output, features);
  std::cout << "features [" << features.size(0) << ", " << features.size(1) << "] of " << input
            << " written to " << output << "\n";
  return 0;
}

// `selfsup transfer --encoder FILE`: the transfer stage for the encoder of an exported file,
// built from `config` (whose model.* must match the file).
nlohmann::json transfer_exported_encoder(const Config& config, const std::string& encoder_path,
                                         const std::string& out_dir, Communicator& comm) {
  const auto dataset = open_dataset(config.data, Split::kTrain);
  auto encoder = make_encoder(config.model, dataset->channels());
  load_encoder_file(*encoder, encoder_path, {config.model, dataset->channels(), "--encoder"});
  encoder->to(resolve_device(config.device, comm.local_rank()));
  spdlog::info("transfer: encoder from {}", encoder_path);
  return run_transfer(config, *encoder, out_dir, comm);
}

// `selfsup validate-data`: reads every sample of the chosen splits once and reports; 0 when all
// are readable, 1 (with one line on stderr) when some are not.
int run_validate_data(const Config& config, const std::string& split_arg, int threads,
                      const std::string& json_path) {
  std::vector<std::pair<std::string, Split>> splits;
  if (split_arg != "test") splits.emplace_back("train", Split::kTrain);
  if (split_arg != "train") splits.emplace_back("test", Split::kTest);
  nlohmann::json reports = nlohmann::json::object();
  int64_t samples = 0, unreadable = 0;
  for (const auto& [name, split] : splits) {
    const auto dataset = open_dataset(config.data, split);
    const auto report = validate_dataset(*dataset, ValidateOptions().set_threads(threads));
    std::cout << name << ": " << format_report(report) << std::flush;
    samples += report.samples;
    unreadable += static_cast<int64_t>(report.bad.size());
    reports[name] = report_to_json(report);
  }
  if (!json_path.empty()) {
    const nlohmann::json document = {{"dataset", config.data.dataset},
                                     {"root", config.data.root},
                                     {"samples", samples},
                                     {"unreadable", unreadable},
                                     {"splits", reports}};
    write_file_atomic(json_path, document.dump(2) + "\n");
    std::cout << "report: " << json_path << "\n";
  }
  if (unreadable > 0) {
    std::cerr << "selfsup: error: " << unreadable << " of " << samples
              << " samples are unreadable (listed above); a run replaces them up to "
                 "data.max_bad_fraction = "
              << config.data.max_bad_fraction << std::endl;
    return kExitRuntimeError;
  }
  std::cout << "all " << samples << " samples readable\n";
  return 0;
}

}  // namespace

// glibc returns large blocks (above a dynamic threshold of at most 32 MiB) to the kernel on free
// and maps them afresh on the next allocation; a training step allocates and frees tens of MiB of
// activations, so every step pays page faults (measured: a third of the step in the kernel, 3x
// slower). Keeping freed memory in the heap for reuse removes that cost.
void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // serve blocks up to 1 GiB from the heap, not fresh mmaps
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // give heap memory back only above 1 GiB of free top
  mallopt(M_TOP_PAD, 256 << 20);       // grow the heap in 256 MiB steps
}

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  CLI::App app{"selfsup: self-supervised representation learning (SimCLR and pretext tasks)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SELFSUP_VERSION);

  std::string config_path, run_dir, transfer_run, checkpoint, encoder_path, transfer_config, resume;
  std::vector<std::string> overrides;
  bool no_transfer = false;

  auto* train = app.add_subcommand("train", "pretrain an encoder, then run the transfer stage");
  train
      ->add_option("config", config_path,
                   "config file (JSON), e.g. configs/fashion_mnist_simclr.json")
      ->required();
  train
      ->add_option("--set", overrides,
                   "override config values: key.path=value ... (after CONFIG; repeatable)")
      ->take_all();
  train->add_option("--run-dir", run_dir, "run directory (default: runs/<name>)");
  train->add_flag("--no-transfer", no_transfer, "skip the transfer stage after pretraining");
  train->add_option("--resume", resume,
                    "resume from a checkpoint: auto (the run directory's latest, if any; else "
                    "start fresh) or a checkpoints/step_<N> directory");

  auto* transfer = app.add_subcommand(
      "transfer", "evaluate a pretrained encoder (linear probe, kNN, fine-tuning)");
  auto* transfer_run_option =
      transfer->add_option("--run", transfer_run, "run directory of a finished pretraining");
  auto* checkpoint_option = transfer->add_option("--checkpoint", checkpoint,
                                                 "checkpoint directory (default: the latest)");
  auto* encoder_option = transfer->add_option(
      "--encoder", encoder_path,
      "evaluate this encoder.safetensors (of `selfsup export`) instead of a checkpoint; results "
      "go to <run>/transfer-<file name>/");
  auto* transfer_config_option = transfer->add_option(
      "--config", transfer_config, "with --encoder and without --run: the config to evaluate with");
  transfer_run_option->excludes(transfer_config_option);
  transfer_config_option->needs(encoder_option);
  encoder_option->excludes(checkpoint_option);
  transfer->add_option("--set", overrides, "override a config value: key.path=value (repeatable)")
      ->take_all();

  std::string export_run, export_checkpoint, export_out;
  auto* export_command = app.add_subcommand(
      "export", "write a run's encoder (without the projection head) as safetensors");
  export_command->add_option("--run", export_run, "run directory of a pretraining")->required();
  export_command->add_option("--checkpoint", export_checkpoint,
                             "checkpoint directory (default: the latest)");
  export_command->add_option("--out", export_out,
                             "output file (default: <run>/encoder.safetensors)");

  std::string embed_encoder, embed_input, embed_output;
  int64_t embed_batch = 256;
  auto* embed = app.add_subcommand(
      "embed",
      "features of images (.npy: [N, C, H, W] or [N, H, W], float in [0, 1] or uint8) "
      "from an exported encoder, normalised as in training, as a float32 .npy");
  embed->add_option("--encoder", embed_encoder, "encoder.safetensors of `selfsup export`")
      ->required();
  embed->add_option("--input", embed_input, "images, .npy")->required();
  embed->add_option("--out", embed_output, "features [N, feature_dim], .npy")->required();
  embed->add_option("--batch-size", embed_batch, "images per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));

  std::string validate_split = "both", validate_json;
  int validate_threads = 0;
  auto* validate = app.add_subcommand(
      "validate-data",
      "read every sample of a config's dataset once: class counts, image sizes and every "
      "unreadable file (exit status 1 if there are any)");
  validate->add_option("config", config_path, "config file (JSON) whose data.* names the dataset")
      ->required();
  validate
      ->add_option("--set", overrides,
                   "override config values: key.path=value ... (after CONFIG; repeatable)")
      ->take_all();
  validate->add_option("--split", validate_split, "train, test or both (default)")
      ->check(CLI::IsMember({"train", "test", "both"}));
  validate->add_option("--threads", validate_threads, "reader threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  validate->add_option("--json", validate_json, "also write the report as JSON to this file");

  auto* info = app.add_subcommand("info", "versions, BLAS, threads and devices of this build");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Every usage error: one line and exit status 2, like a bad config.
    std::cerr << "selfsup: error: " << first_line(e.what()) << " (see selfsup --help)" << std::endl;
    return kExitUsageError;
  }

  // One line on stderr; with several ranks it names the rank and ends the whole job, so that no
  // other rank waits forever in a collective for this one.
  std::shared_ptr<Communicator> comm;
  auto fail = [&](const std::string& message, int exit_code) {
    const bool multi_rank = comm && comm->size() > 1;
    std::cerr << "selfsup: error: "
              << (multi_rank ? "[rank " + std::to_string(comm->rank()) + "] " : "") << message
              << std::endl;
    if (multi_rank) comm->abort(exit_code);
    return exit_code;
  };

  try {
    if (info->parsed()) return run_info();
    if (export_command->parsed()) return run_export(export_run, export_checkpoint, export_out);
    if (embed->parsed()) return run_embed(embed_encoder, embed_input, embed_output, embed_batch);
    if (validate->parsed()) {
      return run_validate_data(load_config(config_path, overrides), validate_split,
                               validate_threads, validate_json);
    }

    Config config;
    if (train->parsed()) {
      config = load_config(config_path, overrides);
      if (run_dir.empty()) run_dir = (fs::path("runs") / config.name).string();
    } else if (!transfer_config.empty()) {  // --encoder FILE --config CONFIG
      config = load_config(transfer_config, overrides);
      run_dir = (fs::path("runs") / config.name).string();
    } else {
      if (transfer_run.empty()) {
        throw ConfigError("transfer needs --run DIR (or --encoder FILE with --config CONFIG)");
      }
      run_dir = transfer_run;
      config = load_run_config(run_dir, overrides);
    }

    comm = make_communicator(config.dist, config.device == "cuda");
    if (train->parsed() && comm->rank() == 0) {
      prepare_run_dir(run_dir, config, join_args(argc, argv), /*write_config=*/resume.empty());
      fs::remove(fs::path(run_dir) / "preempted");  // from an earlier, stopped invocation
    }
    comm->barrier();
    init_logging(comm->rank(), (fs::path(run_dir) / "logs").string());
    torch::set_num_threads(choose_threads(config.train.threads, detect_launch().local_size));
    spdlog::info("selfsup {} | run directory {} | {} threads", SELFSUP_VERSION, run_dir,
                 torch::get_num_threads());
    const auto table = rank_table(*comm, resolve_device(config.device, comm->local_rank()).str());
    spdlog::info("{} rank(s), backend {}:\n{}", comm->size(), comm->backend(), table);

    nlohmann::json results;
    const auto transfer_dir =
        (fs::path(run_dir) /
         (encoder_path.empty() ? "transfer" : "transfer-" + fs::path(encoder_path).stem().string()))
            .string();
    if (train->parsed()) {
      StopSignals stop_signals;  // SIGTERM / SIGUSR1 until the end: checkpoint, then exit 75
      Trainer trainer(config, run_dir, comm, resume);
      // The online kNN monitor (transfer/), scored by the Trainer at epoch ends.
      std::optional<KnnMonitor> monitor;
      if (config.monitor.every_epochs > 0) {
        monitor.emplace(config);
        trainer.set_monitor(config.monitor.every_epochs,
                            [&](Encoder& encoder) { return monitor->score(encoder, *comm); });
      }
      const auto trained = trainer.run();
      // A signal that came after the last step's agreement: all ranks agree now, and stop before
      // the transfer stage (the final checkpoint is written; a resumed job goes on to transfer).
      auto signalled = torch::tensor({StopSignals::pending() != 0 ? 1.0 : 0.0}, torch::kDouble);
      comm->all_reduce_(signalled, ReduceOp::kMax);
      if (trained.preempted || signalled.item<double>() > 0.0) {
        // Every rank returns the same status; rank 0 also leaves a marker in the run directory,
        // for launchers that report another status when ranks end at once (srun
        // --kill-on-bad-exit): cluster/train.sbatch requeues on either.
        if (comm->rank() == 0) {
          write_file_atomic((fs::path(run_dir) / "preempted").string(), trained.checkpoint + "\n");
          std::cerr << "selfsup: stopped by a signal after checkpoint " << trained.checkpoint
                    << "; resume with: selfsup train "
                    << (fs::path(run_dir) / "config.json").string() << " --run-dir " << run_dir
                    << " --resume auto" << std::endl;
        }
        return kExitPreempted;
      }
      if (no_transfer || !config.transfer.enabled) return 0;
      results = run_transfer(config, *trainer.objective()->encoder(), transfer_dir, *comm);
    } else if (!encoder_path.empty()) {
      results = transfer_exported_encoder(config, encoder_path, transfer_dir, *comm);
    } else {
      // Rebuild the model of the run, load its weights, and evaluate the encoder only.
      auto dataset = open_dataset(config.data, Split::kTrain);
      auto objective =
          make_objective(config, dataset->channels(), comm, view_side(config, dataset->height()));
      objective->to(resolve_device(config.device, comm->local_rank()));
      const auto path = checkpoint.empty()
                            ? latest_checkpoint((fs::path(run_dir) / "checkpoints").string())
                            : checkpoint;
      const auto loaded = load_model(path, *objective);
      spdlog::info("transfer: encoder from {} (step {})", path, loaded.step);
      results = run_transfer(config, *objective->encoder(), transfer_dir, *comm);
    }
    if (comm->rank() == 0) {
      print_results(results);
      std::cout << "results: " << (fs::path(transfer_dir) / "results.json").string() << "\n";
    }
    return 0;
  } catch (const ConfigError& e) {
    return fail(first_line(e.what()), kExitUsageError);
  } catch (const std::exception& e) {
    return fail(first_line(e.what()), kExitRuntimeError);
  }
}
