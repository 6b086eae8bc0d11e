#pragma once
// The compute device named by the config.

#include <torch/torch.h>

#include <string>

namespace selfsup {

/// "cpu" or "cuda" (this rank's device is cuda:<local_rank % visible devices>). Throws Error when
/// CUDA is asked for but this LibTorch has no CUDA or no GPU is visible.
torch::Device resolve_device(const std::string& name, int local_rank = 0);

}  // namespace selfsup
