#pragma once
// Private to src/objectives/: the input checks and sizes shared by the dense and the tiled InfoNCE,
// so that both accept exactly the same inputs and reject the rest with the same messages.

#include <torch/torch.h>

#include <cstdint>

#include "selfsup/objectives/info_nce.h"

namespace selfsup::detail {

struct InfoNceShapes {
  int64_t b_local = 0, b_global = 0, views = 0, dim = 0;
  int64_t rows = 0;        // anchors of this rank: B_local*V
  int64_t cols = 0;        // columns from the global batch: B_global*V
  int64_t queue_size = 0;  // K extra negative columns (0 without a queue)
};

/// Checks `local` [B_local, V, D], `global` [B_global, V, D], `offset` and the queue [K, D] of
/// `options` (`who` names the caller in messages); returns the sizes.
InfoNceShapes check_info_nce_inputs(const torch::Tensor& local, const torch::Tensor& global,
                                    int64_t offset, const InfoNceOptions& options, const char* who);

/// The queue of `options` as a [K, D] tensor without gradient ([0, D] when there is none).
torch::Tensor queue_or_empty(const InfoNceOptions& options, const torch::Tensor& like, int64_t dim);

}  // namespace selfsup::detail
