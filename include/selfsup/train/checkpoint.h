#pragma once
// Checkpoints: written to a temporary directory, flushed, renamed to checkpoints/step_<N>/, and
// only then pointed to by checkpoints/latest (itself replaced atomically). A crash at any point
// leaves either the previous checkpoint or the new one, never half of one (DESIGN.md invariant 5).

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace selfsup {

struct CheckpointInfo {
  int64_t step = 0;
  int64_t epoch = 0;
  std::string config_json;  // the resolved config of the run that wrote it
};

/// Writes model, optimizer and metadata under `<checkpoints_dir>/step_<step>/`; returns that path.
std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointInfo& info,
                            torch::nn::Module& model, torch::optim::Optimizer& optimizer);

/// The checkpoint that `<checkpoints_dir>/latest` points to; throws Error when there is none.
std::string latest_checkpoint(const std::string& checkpoints_dir);

/// Loads the model weights of checkpoint directory `path` into `model`; throws Error naming the
/// path when the files are missing, corrupt or do not fit the model.
CheckpointInfo load_model(const std::string& path, torch::nn::Module& model);

}  // namespace selfsup
