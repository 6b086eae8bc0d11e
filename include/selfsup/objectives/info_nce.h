#pragma once
// InfoNCE / NT-Xent, sharded by rows (DESIGN.md invariant 2): a rank computes its own anchors
// against every column of the global batch; positives and the self-mask sit at global indices. The
// full square similarity matrix of the global batch is never built. An optional queue of recycled
// negatives adds K columns that are negatives only. This file holds the dense form (one [rows,
// cols] logits matrix); tiled_info_nce.h streams the same computation in column blocks.

#include <torch/torch.h>

#include <cstdint>

namespace selfsup {

struct InfoNceOptions {
  explicit InfoNceOptions(double temperature) : temperature_(temperature) {}
  /// Softmax temperature applied to cosine similarities.
  TORCH_ARG(double, temperature);
  /// Recycled negatives, [K, D], L2-normalised; appended as columns that are negatives only (never
  /// positives, never masked) and get no gradient. Undefined or K = 0: no queue.
  TORCH_ARG(torch::Tensor, queue) = {};
  /// false: the batch gives only positives (the other views of the anchor's image); the negatives
  /// are the queue alone (MoCo, `negatives.source = "queue"`). true: every other column is a
  /// negative (SimCLR).
  TORCH_ARG(bool, batch_negatives) = true;
  /// Tiled path only (info_nce_tiled): columns per block; peak extra memory is rows * block_size.
  TORCH_ARG(int64_t, block_size) = 4096;
};

struct InfoNceResult {
  torch::Tensor loss;  // scalar: mean over this rank's B_local*V anchors
  // N in the MI bound: V*B_global - 1 + K (queue included); V - 1 + K without batch negatives
  int64_t candidates_per_anchor = 0;
  double pos_sim = 0.0;     // mean cosine similarity of positive pairs
  double neg_sim = 0.0;     // mean cosine similarity of negative pairs (queue included)
  double alignment = 0.0;   // mean squared distance of positive pairs (Wang & Isola, alpha 2)
  double uniformity = 0.0;  // log mean exp(-2 |zi - zj|^2) over pairs of different images of the
                            // global batch (the queue left out)
};

/// NT-Xent over V views per image. Every other view of the same image is a positive; the loss of an
/// anchor is the mean over its positives of -log softmax (over all candidates except itself, the
/// queue included; without batch negatives, over its positives and the queue). Builds the
/// [B_local*V, B_global*V + K] logits. `global` may be another encoder's keys (a momentum
/// encoder): columns come from `global`, rows from `local`, and the self-mask sits at the same
/// global index either way.
///   local:  [B_local, V, D]  this rank's projections, L2-normalised
///   global: [B_global, V, D] every rank's projections (all_gather_with_grad of `local`)
///   offset: global index of this rank's first image (rank * B_local)
///   options.queue(): [K, D] extra negatives (optional)
InfoNceResult info_nce(const torch::Tensor& local, const torch::Tensor& global, int64_t offset,
                       const InfoNceOptions& options);

}  // namespace selfsup
