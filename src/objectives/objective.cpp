#include "selfsup/objectives/objective.h"

#include <algorithm>
#include <cmath>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {
namespace {

// Bytes per element of the [rows, columns] matrices the loss holds at once: float32 cosines,
// logits, masked logits and exponentials / gradient, float64 cosines and kernel for the logged
// statistics, and boolean masks.
constexpr int64_t kLossBytesPerElement = 4 * 4 + 8 * 2 + 4;

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", bytes / double(int64_t(1) << 30));
  return text;
}

}  // namespace

NormFactory make_norm_factory(const ModelConfig& model, std::shared_ptr<Communicator> comm) {
  // "sync" uses SyncBatchNorm in a world of one too: torch's fused kernel computes the same
  // function with a different rounding (parameters 1e-4 apart after five steps, against 1e-6
  // between 1 and 4 ranks on one code path), and a run should not depend on the world size.
  if (model.batch_norm == "local") return batch_norm_factory();
  return [comm](int64_t features, bool /*spatial*/) {
    return torch::nn::AnyModule(SyncBatchNorm(features, comm));
  };
}

double contrastive_loss_bytes(const Config& config, int world) {
  const double views = double(config.augment.total_views());
  const double rows = double(config.train.batch_size / std::max(1, world)) * views;
  const double columns =
      double(config.train.batch_size) * views + double(config.negatives.queue_size);
  const double width =
      config.loss.tiled ? std::min(double(config.loss.block_size), columns) : columns;
  return rows * width * double(kLossBytesPerElement);
}

void check_loss_memory(const Config& config, int world, double memory_bytes) {
  if (memory_bytes <= 0) return;  // unknown
  const double needed = contrastive_loss_bytes(config, world);
  const int64_t views = config.augment.total_views();
  const int64_t rows = config.train.batch_size / std::max(1, world) * views;
  const std::string shape =
      "[" + std::to_string(rows) + " rows x " +
      std::to_string(config.train.batch_size * views + config.negatives.queue_size) + " columns]";
  const std::string share = gib(memory_bytes) + " a rank may use";
  if (needed > memory_bytes / 2 && !config.loss.tiled) {
    throw ConfigError("the dense contrastive loss would hold about " + gib(needed) +
                      " per rank for its " + shape +
                      " similarity matrices, more than half of the " + share +
                      "; set loss.tiled=true (memory grows with loss.block_size, not with the "
                      "pool), or lower negatives.queue_size or train.batch_size");
  }
  if (needed > memory_bytes / 2) {
    throw ConfigError("the tiled contrastive loss would hold about " + gib(needed) +
                      " per rank for " + shape + " in blocks of loss.block_size = " +
                      std::to_string(config.loss.block_size) + " columns, more than half of the " +
                      share + "; lower loss.block_size (or train.batch_size, or run more ranks: " +
                      "the rows are this rank's share of the batch)");
  }
  const double queue_bytes =
      double(config.negatives.queue_size) * double(config.model.proj_dim) * 4.0;
  if (queue_bytes > memory_bytes / 2) {
    throw ConfigError("negatives.queue_size = " + std::to_string(config.negatives.queue_size) +
                      " keys of model.proj_dim = " + std::to_string(config.model.proj_dim) +
                      " floats would take " + gib(queue_bytes) + ", more than half of the " +
                      share + "; lower negatives.queue_size");
  }
}

ObjectiveOutput Objective::compute(const torch::Tensor& views, const torch::Tensor& local_views) {
  ObjectiveInput input;
  input.views = views;
  input.local_views = local_views;
  input.keys = torch::arange(views.size(1), torch::kLong);
  return compute(input);
}

std::vector<torch::Tensor> Objective::trainable_parameters() {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : parameters())
    if (p.requires_grad()) trainable.push_back(p);
  return trainable;
}

int64_t view_side(const Config& config, int64_t image_side) {
  return config.augment.size > 0 ? config.augment.size : image_side;
}

std::shared_ptr<Objective> make_objective(const Config& config, int64_t in_channels,
                                          std::shared_ptr<Communicator> comm, int64_t view_side) {
  const auto& task = config.pretext.task;
  if (view_side == 0) view_side = config.augment.size;
  check_pretext_fit(config, in_channels, view_side, "config");
  if (task == "simclr")
    return std::make_shared<SimClrObjective>(config, in_channels, std::move(comm));
  PretextShape shape{in_channels, view_side};
  SELFSUP_CHECK(view_side > 0, "pretext.task = \"", task,
                "\" needs the side of the views: set augment.size");
  if (task == "rotation") return make_rotation_objective(config, shape, std::move(comm));
  if (task == "jigsaw") return make_jigsaw_objective(config, shape, std::move(comm));
  if (task == "colorization") return make_colorization_objective(config, shape, std::move(comm));
  if (task == "inpainting") return make_inpainting_objective(config, shape, std::move(comm));
  if (task == "superres") return make_superres_objective(config, shape, std::move(comm));
  if (task == "autoencoder") return make_autoencoder_objective(config, shape, std::move(comm));
  if (task == "gan") return make_gan_objective(config, shape, std::move(comm));
  if (task == "diffusion") return make_diffusion_objective(config, shape, std::move(comm));
  throw ConfigError("pretext.task = \"" + task + "\" has no objective");
}

}  // namespace selfsup
