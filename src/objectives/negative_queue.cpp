#include "selfsup/objectives/negative_queue.h"

#include "selfsup/core/error.h"

namespace selfsup {

NegativeQueueImpl::NegativeQueueImpl(int64_t capacity, int64_t dim)
    : capacity_(capacity), dim_(dim) {
  SELFSUP_CHECK(capacity >= 1 && dim >= 1,
                "a negative queue needs capacity >= 1 and dim >= 1, got ", capacity, " and ", dim);
  keys_ = register_buffer("keys", torch::zeros({capacity, dim}));
  state_ = register_buffer("state", torch::zeros({2}, torch::kLong));
}

torch::Tensor NegativeQueueImpl::keys() const { return keys_.narrow(0, 0, size()).detach(); }

int64_t NegativeQueueImpl::size() const {
  // The state lives beside the keys (a CUDA buffer when the model is on a GPU): one small copy.
  return std::min(capacity_, state_[1].item<int64_t>());
}

void NegativeQueueImpl::push(const torch::Tensor& keys) {
  SELFSUP_CHECK(keys.dim() == 2 && keys.size(1) == dim_, "negative queue: keys must be [n, ", dim_,
                "], got ", keys.sizes());
  const int64_t n = keys.size(0);
  SELFSUP_CHECK(n >= 1 && capacity_ % n == 0, "negative queue: ", n,
                " keys per push do not divide the capacity ", capacity_,
                "; negatives.queue_size must be a multiple of train.batch_size x views per image");
  torch::NoGradGuard no_grad;
  const auto state = state_.cpu();
  const int64_t next = state[0].item<int64_t>(), filled = state[1].item<int64_t>();
  SELFSUP_CHECK(next % n == 0, "negative queue: write position ", next,
                " is not a multiple of the push size ", n,
                " (the queue was restored from a checkpoint written with another "
                "train.batch_size, augment.views or augment.local_views; set them back, or start without the "
                "checkpoint)");
  keys_.narrow(0, next, n).copy_(keys.detach());
  state_.copy_(
      torch::tensor({(next + n) % capacity_, std::min(capacity_, filled + n)}, torch::kLong));
}

}  // namespace selfsup
