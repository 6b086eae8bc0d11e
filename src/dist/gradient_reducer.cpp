#include "selfsup/dist/gradient_reducer.h"

namespace selfsup {

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, Communicator& comm,
                                 int64_t bucket_bytes)
    : parameters_(std::move(parameters)), comm_(comm) {
  int64_t bytes = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& p = parameters_[i];
    const int64_t size = p.numel() * int64_t(p.element_size());
    const bool new_bucket = buckets_.empty() || bytes + size > bucket_bytes ||
                            parameters_[buckets_.back().front()].scalar_type() != p.scalar_type();
    if (new_bucket) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().push_back(i);
    bytes += size;
  }
}

void GradientReducer::reduce() {
  if (comm_.size() == 1) return;
  for (const auto& bucket : buckets_) {
    std::vector<torch::Tensor> grads;
    for (size_t i : bucket) {
      auto& p = parameters_[i];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad().flatten());
    }
    auto flat = torch::cat(grads);  // one collective per bucket
    comm_.all_reduce_(flat, ReduceOp::kAvg);
    int64_t offset = 0;
    for (size_t i : bucket) {
      auto& g = parameters_[i].mutable_grad();
      g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

void broadcast_module(torch::nn::Module& module, Communicator& comm) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  auto broadcast = [&](const torch::Tensor& tensor) {
    // Collectives take contiguous buffers; channels-last weights go through a contiguous copy.
    auto buffer = tensor.detach().contiguous();
    comm.broadcast_(buffer, 0);
    if (!buffer.is_same(tensor)) tensor.detach().copy_(buffer);
  };
  for (const auto& p : module.parameters()) broadcast(p);
  for (const auto& b : module.buffers()) broadcast(b);
}

}  // namespace selfsup
