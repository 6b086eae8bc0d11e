#pragma once
// Gradient reduction policy (the transport is the Communicator): parameter gradients are averaged
// over ranks in flat buckets, so that many small tensors cost few collectives. Overlapped, each
// bucket starts reducing from autograd hooks as soon as backward has produced all of its
// gradients, so communication hides behind the rest of backward; the result is bitwise the
// non-overlapped one (the same buckets, the same collectives in the same order).

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "selfsup/dist/communicator.h"

namespace selfsup {

class GradientReducer {
 public:
  /// `bucket_bytes`: the size of one flat all-reduce buffer. Buckets take the parameters in
  /// reverse order, the order in which backward produces their gradients. `overlap`: reduce
  /// buckets during backward (between prepare() and reduce()). Buckets start in order, so a
  /// parameter that gets no gradient holds back its bucket and every later one until reduce().
  GradientReducer(std::vector<torch::Tensor> parameters, Communicator& comm,
                  int64_t bucket_bytes = 25 << 20, bool overlap = false);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Before backward: arms the gradient hooks when overlapping (nothing otherwise). A backward
  /// that is not between prepare() and reduce() (a GAN generator's, through the discriminator)
  /// leaves the buckets alone.
  void prepare();
  /// After backward: averages every parameter's gradient over ranks (missing gradients count as
  /// zero). Overlapped, it starts the buckets whose gradients did not all arrive (parameters this
  /// step did not use), waits for every bucket and writes the averages into the gradients.
  void reduce();

  int64_t bucket_count() const { return int64_t(buckets_.size()); }
  bool overlap() const { return overlap_; }
  /// Buckets the last reduction started from hooks, before backward returned.
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    torch::Tensor flat;  // the reduction buffer, kept for the reducer's life
    int64_t pending = 0;
    std::unique_ptr<CollectiveWork> work;
  };
  // The gradient of parameter `index` arrived from backward (overlapped).
  void on_gradient(size_t index, const torch::Tensor& grad);
  // Copies parameter `index`'s current gradient (zeros when it has none) into its bucket slot.
  void fill_from_grad(size_t index);
  // Starts every bucket from next_ on that is complete, in bucket order on every rank.
  void start_ready_buckets(bool all);
  torch::Tensor slot(size_t index);

  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;    // parameter index -> bucket
  std::vector<size_t> position_of_;  // parameter index -> its place in the bucket
  std::vector<bool> arrived_;        // per parameter, this step (overlapped)
  std::vector<unsigned> hooks_;      // hook handles, per parameter (overlapped)
  Communicator& comm_;
  bool overlap_ = false;
  bool armed_ = false;
  size_t next_ = 0;  // the next bucket to start
  int64_t started_in_backward_ = 0;
};

/// Copies rank 0's parameters and buffers to every rank, so that all start identical.
void broadcast_module(torch::nn::Module& module, Communicator& comm);

}  // namespace selfsup
