#pragma once
// Synchronized batch norm: the batch statistics of every rank's slice combined, so the
// normalisation (and its gradient) is the one of a single process on the global batch. SimCLR's
// "global BN": with local statistics, each rank's positives share a normalisation their negatives
// do not, which the loss can exploit; with synchronized statistics a run does not depend on the
// world size.

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "selfsup/dist/communicator.h"

namespace selfsup {

/// Batch norm over dim 1 of [N, C, ...] whose training statistics span all ranks. Parameters and
/// buffers have torch::nn::BatchNorm's names (weight, bias, running_mean, running_var,
/// num_batches_tracked), so checkpoints and exported weights are interchangeable with it.
///
/// Forward (training): per rank, count, mean and sum of squared deviations per channel; one
/// all_gather of [1 + 2C] values; combined with the parallel-variance formula (numerically stable,
/// and correct for unequal local batches). Backward: one all_reduce of the per-channel sums of g
/// and g * x_hat. Evaluation uses the running statistics, with no collective.
class SyncBatchNormImpl : public torch::nn::Module {
 public:
  SyncBatchNormImpl(int64_t features, std::shared_ptr<Communicator> comm, double eps = 1e-5,
                    double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& x);
  /// Re-reads num_batches_tracked at the next forward: call it after restoring the buffers from
  /// outside (they are otherwise counted on the host, to avoid a device sync per forward).
  void reload_counter() { batches_seen_ = -1; }

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  std::shared_ptr<Communicator> comm_;
  int64_t batches_seen_ = -1;  // num_batches_tracked mirrored on the host (-1: not read yet)
  double eps_;
  double momentum_;
};
TORCH_MODULE(SyncBatchNorm);

}  // namespace selfsup
