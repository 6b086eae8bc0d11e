#pragma once
// Gradient reduction policy (the transport is the Communicator): parameter gradients are averaged
// over ranks after backward, in flat buckets so that many small tensors cost few collectives.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "selfsup/dist/communicator.h"

namespace selfsup {

class GradientReducer {
 public:
  /// `bucket_bytes`: the size of one flat all-reduce buffer.
  GradientReducer(std::vector<torch::Tensor> parameters, Communicator& comm,
                  int64_t bucket_bytes = 25 << 20);
  /// Averages every parameter's gradient over ranks (missing gradients count as zero).
  void reduce();

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<std::vector<size_t>> buckets_;  // indices into parameters_, same dtype per bucket
  Communicator& comm_;
};

/// Copies rank 0's parameters and buffers to every rank, so that all start identical.
void broadcast_module(torch::nn::Module& module, Communicator& comm);

}  // namespace selfsup
