#pragma once
// A FIFO queue of recycled negatives (MoCo): the keys of past global batches, kept so that the pool
// of negatives grows past the current batch. Every rank pushes the same gathered keys, so every
// rank holds the same queue. Its contents are buffers of the module, so they are broadcast at start
// and saved and restored with checkpoints like the weights.

#include <torch/torch.h>

#include <cstdint>

namespace selfsup {

class NegativeQueueImpl : public torch::nn::Module {
 public:
  /// A queue of `capacity` keys of dimension `dim`, empty at first.
  NegativeQueueImpl(int64_t capacity, int64_t dim);

  /// The keys held so far, [size(), dim], without gradient; the oldest are overwritten first, so
  /// the rows are not in age order (the loss does not depend on their order).
  torch::Tensor keys() const;
  /// Enqueues `keys` [n, dim] (detached), overwriting the n oldest once the queue is full. n must
  /// divide the capacity, so a push never wraps around the end.
  void push(const torch::Tensor& keys);
  /// Keys held: min(capacity, keys pushed so far).
  int64_t size() const;
  int64_t capacity() const { return capacity_; }
  int64_t dim() const { return dim_; }

 private:
  int64_t capacity_, dim_;
  torch::Tensor keys_;   // buffer [capacity, dim]
  torch::Tensor state_;  // buffer int64 [2]: next row to write, rows filled
};
TORCH_MODULE(NegativeQueue);

}  // namespace selfsup
