// selfsup_bench_step: images/s of one SimCLR training step of selfsup (forward of both views,
// NT-Xent in fp32, backward, LARS step) on one device, printed as one JSON line with the fields of
// bench/gpu/simclr_step_reference.py, the same step written in Python PyTorch. bench/gpu/
// step_bench.sh runs both in one job and prints the ratio, MFU and peak memory table of
// docs/PERFORMANCE.md.
//
// Inputs are fixed random views already on the device (no data loading: this measures the step).
// Timing: `warmup` steps, a synchronize, `steps` steps, a synchronize; the mean step is the wall
// time over the timed steps (the loss is not read back per step, as in the reference).

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/train/optim.h"

#ifdef SELFSUP_BENCH_CUDA  // a CUDA LibTorch and the CUDA toolkit (CMakeLists.txt)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"selfsup SimCLR training step throughput (bench/gpu/step_bench.sh runs it)"};
  std::string model = "resnet50", stem = "imagenet", precision = "bf16", device_name = "cuda";
  std::string batch_norm = "local";
  int64_t image_size = 224, batch = 256, warmup = 10, steps = 30;
  int head_layers = 2, head_hidden = 2048, proj_dim = 128;
  double temperature = 0.1;
  bool channels_last = true, json = false, cudnn_benchmark = true;
  app.add_option("--model", model, "resnet18, resnet34 or resnet50")->capture_default_str();
  app.add_option("--stem", stem, "imagenet or small")->capture_default_str();
  app.add_option("--image-size", image_size, "view side, pixels")->capture_default_str();
  app.add_option("--batch", batch, "images per step (each gives 2 views)")->capture_default_str();
  app.add_option("--precision", precision, "fp32 or bf16")->capture_default_str();
  app.add_flag("--channels-last,!--no-channels-last", channels_last, "NHWC layout")
      ->capture_default_str();
  app.add_option("--device", device_name, "cuda or cpu")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps")->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--head-layers", head_layers)->capture_default_str();
  app.add_option("--head-hidden", head_hidden)->capture_default_str();
  app.add_option("--proj-dim", proj_dim)->capture_default_str();
  app.add_option("--temperature", temperature)->capture_default_str();
  app.add_option("--batch-norm", batch_norm,
                 "local (torch's kernels, as the reference on one GPU) or sync (the recipe's)")
      ->capture_default_str();
  app.add_flag("--cudnn-benchmark,!--no-cudnn-benchmark", cudnn_benchmark)->capture_default_str();
  app.add_flag("--json", json, "print one JSON line");
  CLI11_PARSE(app, argc, argv);

  try {
    SELFSUP_CHECK(batch >= 2 && steps >= 1 && warmup >= 0 && image_size >= 8,
                  "--batch >= 2, --steps >= 1, --warmup >= 0 and --image-size >= 8 are needed");
    selfsup::Config config;
    config.device = device_name;
    config.model.encoder = model;
    config.model.stem = stem;
    config.model.channels_last = channels_last;
    config.model.head_layers = head_layers;
    config.model.head_hidden = head_hidden;
    config.model.proj_dim = proj_dim;
    config.model.batch_norm = batch_norm;
    config.loss.temperature = temperature;
    config.augment.size = image_size;
    config.train.batch_size = batch;
    config.train.precision = precision;
    config.optim.name = "lars";
    config.optim.lr = 0.3;
    config.optim.lr_scaling = "linear";
    config.optim.weight_decay = 1e-6;
    selfsup::check_config(config, "selfsup_bench_step");
    const auto device = selfsup::resolve_device(device_name);
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark && device.is_cuda());

    torch::manual_seed(0);
    auto comm = std::make_shared<selfsup::LocalCommunicator>();
    auto objective = selfsup::make_objective(config, 3, comm, image_size);
    objective->to(device);
    objective->train();
    auto optim = config.optim;
    optim.lr = selfsup::scaled_learning_rate(config.optim, batch);
    auto optimizer = selfsup::make_optimizer(optim, objective->trainable_parameters());
    const auto views =
        torch::randn({2, batch, 3, image_size, image_size}, torch::TensorOptions().device(device));
    auto step = [&] {
      optimizer->zero_grad();
      auto out = objective->compute(views);
      out.loss.backward();
      optimizer->step();
      objective->end_step(/*applied=*/true);
      return out.loss;
    };
    torch::Tensor loss;
    for (int64_t i = 0; i < warmup; ++i) loss = step();
    synchronize(device);
#ifdef SELFSUP_BENCH_CUDA
    if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
    const auto start = Clock::now();
    for (int64_t i = 0; i < steps; ++i) loss = step();
    synchronize(device);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double step_ms = 1e3 * seconds / double(steps);

    nlohmann::json out{{"impl", "selfsup"},
                       {"model", model},
                       {"stem", stem},
                       {"image_size", image_size},
                       {"batch", batch},
                       {"precision", precision},
                       {"channels_last", channels_last},
                       {"device", device_name},
                       {"batch_norm", batch_norm},
                       {"head_layers", head_layers},
                       {"head_hidden", head_hidden},
                       {"proj_dim", proj_dim},
                       {"temperature", temperature},
                       {"cudnn_benchmark", cudnn_benchmark && device.is_cuda()},
                       {"images_per_s", double(batch) / (step_ms / 1e3)},
                       {"step_ms_median", step_ms},
                       {"step_ms_mean", step_ms},
                       {"timing", "wall clock over the timed steps, one synchronize"},
                       {"steps", steps},
                       {"warmup", warmup},
                       {"final_loss", loss.item<double>()},
                       {"torch_version", TORCH_VERSION},
                       {"flops_per_image_train", nullptr},
                       {"peak_mem_gib", nullptr},
                       {"gpu_name", nullptr}};
#ifdef SELFSUP_BENCH_CUDA
    if (device.is_cuda()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
      out["peak_mem_gib"] = double(stats.allocated_bytes[0].peak) / double(1 << 30);
      out["gpu_name"] = at::cuda::getDeviceProperties(device.index())->name;
    }
#endif
    if (json) {
      std::cout << out.dump() << std::endl;
    } else {
      std::cout << "selfsup " << model << " (" << stem << ") " << image_size << " px, batch "
                << batch << ", " << precision << (channels_last ? ", channels-last" : "") << " on "
                << device_name << ": " << out["images_per_s"].get<double>() << " images/s ("
                << step_ms << " ms/step)" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "selfsup_bench_step: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
