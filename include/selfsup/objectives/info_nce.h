#pragma once
// InfoNCE / NT-Xent, sharded by rows (DESIGN.md invariant 2): a rank computes its own anchors
// against every column of the global batch; positives and the self-mask sit at global indices. The
// full square similarity matrix of the global batch is never built.

#include <torch/torch.h>

#include <cstdint>

namespace selfsup {

struct InfoNceOptions {
  explicit InfoNceOptions(double temperature) : temperature_(temperature) {}
  /// Softmax temperature applied to cosine similarities.
  TORCH_ARG(double, temperature);
};

struct InfoNceResult {
  torch::Tensor loss;                 // scalar: mean over this rank's B_local*V anchors
  int64_t candidates_per_anchor = 0;  // N in the MI bound: V*B_global - 1 (positives + negatives)
  double pos_sim = 0.0;               // mean cosine similarity of positive pairs
  double neg_sim = 0.0;               // mean cosine similarity of negative pairs
  double alignment = 0.0;   // mean squared distance of positive pairs (Wang & Isola, alpha 2)
  double uniformity = 0.0;  // log mean exp(-2 |zi - zj|^2) over pairs of different images
};

/// NT-Xent over V views per image. Every other view of the same image is a positive; the loss of an
/// anchor is the mean over its positives of -log softmax (over all candidates except itself).
///   local:  [B_local, V, D]  this rank's projections, L2-normalised
///   global: [B_global, V, D] every rank's projections (all_gather_with_grad of `local`)
///   offset: global index of this rank's first image (rank * B_local)
InfoNceResult info_nce(const torch::Tensor& local, const torch::Tensor& global, int64_t offset,
                       const InfoNceOptions& options);

}  // namespace selfsup
