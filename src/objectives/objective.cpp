#include "selfsup/objectives/objective.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/sync_batch_norm.h"

namespace selfsup {
namespace {

// Bytes per element of the [rows, columns] matrices the loss holds at once: float32 cosines,
// logits, masked logits and exponentials / gradient, float64 cosines and kernel for the logged
// statistics, and boolean masks.
constexpr int64_t kLossBytesPerElement = 4 * 4 + 8 * 2 + 4;

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * int64_t(page) : 0;
}

std::string gib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(int64_t(1) << 30));
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

int64_t contrastive_loss_bytes(const Config& config, int world) {
  const int64_t views = config.augment.views;
  const int64_t rows = config.train.batch_size / std::max(1, world) * views;
  const int64_t columns = config.train.batch_size * views + config.negatives.queue_size;
  const int64_t width = config.loss.tiled ? std::min(config.loss.block_size, columns) : columns;
  return rows * width * kLossBytesPerElement;
}

std::shared_ptr<Objective> make_objective(const Config& config, int64_t in_channels,
                                          std::shared_ptr<Communicator> comm) {
  const int64_t memory = physical_memory_bytes();
  const int64_t needed = contrastive_loss_bytes(config, comm->size());
  if (config.device == "cpu" && memory > 0 && needed > memory / 2) {
    const int64_t views = config.augment.views;
    const std::string shape =
        "[" + std::to_string(config.train.batch_size / comm->size() * views) + " rows x " +
        std::to_string(config.train.batch_size * views + config.negatives.queue_size) + " columns]";
    throw ConfigError(
        config.loss.tiled
            ? "the tiled contrastive loss would hold about " + gib(needed) + " per rank for " +
                  shape +
                  " in blocks of loss.block_size = " + std::to_string(config.loss.block_size) +
                  " columns, more than half of this machine's " + gib(memory) +
                  "; lower loss.block_size"
            : "the dense contrastive loss would hold about " + gib(needed) + " per rank for its " +
                  shape + " similarity matrices, more than half of this machine's " + gib(memory) +
                  "; set loss.tiled=true (memory grows with loss.block_size, not with the pool), "
                  "or lower negatives.queue_size or train.batch_size");
  }
  const int64_t queue_bytes = config.negatives.queue_size * config.model.proj_dim * 4;
  if (config.device == "cpu" && memory > 0 && queue_bytes > memory / 2) {
    throw ConfigError("negatives.queue_size = " + std::to_string(config.negatives.queue_size) +
                      " keys of model.proj_dim = " + std::to_string(config.model.proj_dim) +
                      " floats would take " + gib(queue_bytes) + ", more than half of this " +
                      "machine's " + gib(memory) + "; lower negatives.queue_size");
  }
  return std::make_shared<SimClrObjective>(config, in_channels, std::move(comm));
}

}  // namespace selfsup
