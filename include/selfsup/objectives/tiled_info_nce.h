#pragma once
// Tiled InfoNCE (DESIGN.md invariant 2): the same loss, gradients and statistics as the dense
// info_nce, with memory bounded by the block size instead of the pool size.
//
// The columns (the gathered projections, then the queue) are streamed in blocks of
// `options.block_size()` columns. Forward keeps, per anchor row, a running sum of exponentials
// (an online log-sum-exp, with a running maximum only when the logits could overflow: unit
// vectors and T >= 1/30 cannot) and the sum of its positive logits; backward recomputes each
// block's logits from the saved anchors, candidates and per-row log-normaliser.
// Shapes, with rows = B_local*V, cols = B_global*V, K the queue size and bs = min(block_size, cols
// or K):
//   saved for backward:  anchors [rows, D], candidates [cols, D], queue [K, D], log-normaliser
//   [rows] per block (freed before the next):  logits [rows, bs] (the batch's blocks also masks
//                 and float64 cosines, for the statistics; the queue's blocks need neither)
//   accumulated:  per-row running max / sum / positive logits [rows]; grad_anchors [rows, D];
//                 grad_candidates [cols, D] (the gradient itself, written block by block)
// so the peak extra memory is O(rows * block_size), whatever cols + K is. The dense form holds
// several [rows, cols + K] matrices at once.

#include <torch/torch.h>

#include <cstdint>

#include "selfsup/objectives/info_nce.h"

namespace selfsup {

/// NT-Xent over V views per image, as info_nce (same inputs, same result up to rounding), computed
/// block by block over the columns with a custom autograd function. The queue of `options` gets no
/// gradient; the gradient with respect to `global` is returned whole, so it flows back through
/// all_gather_with_grad.
///   local:  [B_local, V, D]  this rank's projections, L2-normalised
///   global: [B_global, V, D] every rank's projections (all_gather_with_grad of `local`)
///   offset: global index of this rank's first image (rank * B_local)
///   options.block_size(): columns per block; options.queue(): [K, D] extra negatives (optional)
InfoNceResult info_nce_tiled(const torch::Tensor& local, const torch::Tensor& global,
                             int64_t offset, const InfoNceOptions& options);

}  // namespace selfsup
