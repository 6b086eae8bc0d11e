#pragma once
// The compute device named by the config, and mixed precision on it.

#include <torch/torch.h>

#include <string>

namespace selfsup {

/// "cpu" or "cuda" (this rank's device is cuda:<cuda_device_index(local_rank, visible devices)>).
/// Throws Error when CUDA is asked for but this LibTorch has no CUDA or no GPU is visible.
torch::Device resolve_device(const std::string& name, int local_rank = 0);

/// The GPU of the rank that is `local_rank` on its node, among `visible` devices: the local rank
/// itself, or device 0 when the launcher gave each rank one GPU of its own (srun --gpu-bind,
/// CUDA_VISIBLE_DEVICES per rank). Throws Error, saying how many ranks per node fit, when several
/// GPUs are visible but fewer than the ranks on the node: two ranks would share a GPU (NCCL
/// refuses that, and it would halve each rank's speed).
int cuda_device_index(int local_rank, int visible);

/// Autocast to `dtype` for the ops of `device` (CPU or CUDA) in this scope when `enabled`, as
/// Python's `with torch.autocast(...)`: matrix multiplications and convolutions run in `dtype`,
/// reductions and losses stay in fp32, casts of the weights are cached until the outermost guard
/// ends. Restores the previous state on exit. Nothing happens when !enabled.
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, bool enabled, torch::ScalarType dtype = torch::kBFloat16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  bool enabled_;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
};

}  // namespace selfsup
