#pragma once
// Checkpoints: written to a temporary directory, flushed, renamed to checkpoints/step_<N>/, and
// only then pointed to by checkpoints/latest (itself replaced atomically). A crash at any point
// leaves either the previous checkpoint or the new one, never half of one (DESIGN.md invariant 5).
//
// A checkpoint directory holds model.pt (the objective: encoder, head, queue, momentum encoder,
// batch-norm statistics), optimizer.pt, rng.pt (every rank's random generator states) and
// meta.json (step, sampler position, counters, world size, the resolved config, the selfsup
// version, and the size and CRC-32 of every file, so that a truncated or damaged file is found
// before anything is loaded).

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {

/// Where training stood when a checkpoint was written: everything besides the tensors that a
/// bitwise-exact resume needs.
struct CheckpointInfo {
  int64_t step = 0;               // optimizer steps done (skipped steps included)
  int64_t epoch = 0;              // epoch of the next step
  int64_t step_in_epoch = 0;      // position of the next step in that epoch (the sampler position)
  int64_t total_steps = 0;        // length of the learning-rate schedule being followed
  int64_t images_seen = 0;        // global images trained on so far
  int64_t skipped_steps = 0;      // steps skipped on non-finite values so far
  int64_t consecutive_skips = 0;  // skipped steps in a row at the end
  int world_size = 1;             // ranks of the run that wrote it (whose RNG states it holds)
  std::string config_json;        // the resolved config of the run that wrote it
  std::string version;            // selfsup version that wrote it (filled in on load)
};

/// A checkpoint that cannot be used: missing, truncated, damaged or for another model. The message
/// names the file and offers the previous checkpoint when there is one.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// Writes model, optimizer (when given), the ranks' RNG states (when defined: [world, bytes]
/// uint8), the objective's own optimizers (optimizer.<name>.pt) and `info` as
/// `<checkpoints_dir>/step_<step>/`, then points `latest` at it. Returns the path. Rank 0 calls
/// it; the files are flushed before the rename.
std::string save_checkpoint(
    const std::string& checkpoints_dir, const CheckpointInfo& info, torch::nn::Module& model,
    torch::optim::Optimizer* optimizer, const torch::Tensor& rng_states = {},
    const std::map<std::string, torch::optim::Optimizer*>& own_optimizers = {});

/// Deletes all but the newest `keep` step_<N> checkpoints (never the one `latest` names).
void prune_checkpoints(const std::string& checkpoints_dir, int64_t keep);

/// Repairs what an interrupted save can leave: restores a checkpoint that was moved aside and not
/// replaced, and removes temporary directories and files. Returns what it did, one line each.
std::vector<std::string> clean_checkpoints(const std::string& checkpoints_dir);

/// The step_<N> checkpoint directories, oldest first.
std::vector<std::string> list_checkpoints(const std::string& checkpoints_dir);

/// The checkpoint that `<checkpoints_dir>/latest` points to; throws Error when there is none.
std::string latest_checkpoint(const std::string& checkpoints_dir);

/// Reads meta.json of checkpoint `path` and checks every file against its recorded size and
/// CRC-32; throws CheckpointError naming the file (and offering the previous checkpoint).
CheckpointInfo verify_checkpoint(const std::string& path);

/// Verifies checkpoint `path`, then loads its model weights into `model`; throws CheckpointError
/// when the files are missing or corrupt, and Error when they do not fit the model (naming the
/// tensor and the setting that differs).
CheckpointInfo load_model(const std::string& path, torch::nn::Module& model);

/// Loads the optimizer state of checkpoint `path` (after load_model): the Trainer's, or with a
/// `name` the objective's own optimizer of that name.
void load_optimizer(const std::string& path, torch::optim::Optimizer& optimizer,
                    const std::string& name = "");

/// The ranks' RNG states saved in checkpoint `path` ([world, bytes] uint8), undefined if none.
torch::Tensor load_rng_states(const std::string& path);

/// This process's random generator states (CPU, and the current CUDA device when `cuda`) as one
/// uint8 vector, and the inverse.
torch::Tensor get_rng_state(bool cuda);
void set_rng_state(const torch::Tensor& state, bool cuda);

}  // namespace selfsup
