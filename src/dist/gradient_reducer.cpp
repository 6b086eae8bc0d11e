#include "selfsup/dist/gradient_reducer.h"

#include <algorithm>

#include "selfsup/core/error.h"

namespace selfsup {

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, Communicator& comm,
                                 int64_t bucket_bytes, bool overlap)
    : parameters_(std::move(parameters)), comm_(comm), overlap_(overlap && comm.size() > 1) {
  bucket_of_.resize(parameters_.size());
  int64_t bytes = 0;
  for (size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    const int64_t size = p.numel() * int64_t(p.element_size());
    const auto& first = buckets_.empty() ? p : parameters_[buckets_.back().members.front()];
    const bool new_bucket = buckets_.empty() || bytes + size > bucket_bytes ||
                            first.scalar_type() != p.scalar_type() || first.device() != p.device();
    if (new_bucket) {
      buckets_.emplace_back();
      bytes = 0;
    }
    auto& bucket = buckets_.back();
    bucket.members.push_back(k);
    position_of_.push_back(bucket.members.size() - 1);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += p.numel();
    bucket_of_[k] = buckets_.size() - 1;
    bytes += size;
  }
  std::reverse(position_of_.begin(), position_of_.end());  // filled from the last parameter
  arrived_.assign(parameters_.size(), false);
  if (!overlap_) return;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    if (!parameters_[k].requires_grad()) continue;
    hooks_.push_back(parameters_[k].register_hook(
        [this, k](const torch::Tensor& grad) { on_gradient(k, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  size_t hook = 0;
  for (size_t k = 0; k < parameters_.size() && hook < hooks_.size(); ++k) {
    if (parameters_[k].requires_grad()) parameters_[k].remove_hook(hooks_[hook++]);
  }
}

torch::Tensor GradientReducer::slot(size_t index) {
  auto& bucket = buckets_[bucket_of_[index]];
  const auto& p = parameters_[index];
  if (!bucket.flat.defined())
    bucket.flat = torch::empty({bucket.numel}, p.options().requires_grad(false));
  const size_t position = position_of_[index];
  return bucket.flat.narrow(0, bucket.offsets[position], p.numel()).view(p.sizes());
}

void GradientReducer::fill_from_grad(size_t index) {
  torch::NoGradGuard no_grad;
  const auto& grad = parameters_[index].grad();
  if (grad.defined())
    slot(index).copy_(grad);
  else
    slot(index).zero_();
}

void GradientReducer::prepare() {
  if (!overlap_) return;
  // Only parameters that require a gradient get one (and a hook); the rest are filled in reduce().
  for (auto& bucket : buckets_) {
    bucket.pending = 0;
    for (size_t index : bucket.members) bucket.pending += parameters_[index].requires_grad();
  }
  std::fill(arrived_.begin(), arrived_.end(), false);
  next_ = 0;
  started_in_backward_ = 0;
  armed_ = true;
}

void GradientReducer::on_gradient(size_t index, const torch::Tensor& grad) {
  if (!armed_) return;
  SELFSUP_CHECK(!arrived_[index], "gradient reduction: a parameter's gradient (",
                parameters_[index].sizes(),
                ") arrived twice between prepare() and reduce(); an objective that runs "
                "backward twice per step needs dist.overlap_grad_reduce = false");
  arrived_[index] = true;
  {
    // What autograd is about to accumulate: the gradient so far plus this backward's.
    torch::NoGradGuard no_grad;
    const auto& existing = parameters_[index].grad();
    auto target = slot(index);
    if (existing.defined())
      torch::add_out(target, existing, grad);
    else
      target.copy_(grad);
  }
  --buckets_[bucket_of_[index]].pending;
  start_ready_buckets(/*all=*/false);
}

void GradientReducer::start_ready_buckets(bool all) {
  while (next_ < buckets_.size() && (all || buckets_[next_].pending == 0)) {
    auto& bucket = buckets_[next_];
    // Members whose gradient did not come from a hook: their current gradient (or zero). That is
    // every member without overlap, and with it the parameters that get no gradient this step.
    for (size_t index : bucket.members)
      if (!arrived_[index]) fill_from_grad(index);
    if (!all) ++started_in_backward_;
    bucket.work = comm_.all_reduce_async_(bucket.flat, ReduceOp::kAvg);
    ++next_;
  }
}

void GradientReducer::reduce() {
  if (comm_.size() == 1) return;
  if (!overlap_) {
    next_ = 0;
  } else {
    SELFSUP_CHECK(armed_, "gradient reduction: reduce() without prepare() before backward");
    armed_ = false;
  }
  start_ready_buckets(/*all=*/true);
  torch::NoGradGuard no_grad;
  for (auto& bucket : buckets_) {
    bucket.work->wait();
    bucket.work.reset();
    for (size_t position = 0; position < bucket.members.size(); ++position) {
      auto& p = parameters_[bucket.members[position]];
      const auto averaged =
          bucket.flat.narrow(0, bucket.offsets[position], p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(averaged);
      else
        p.mutable_grad() = averaged.clone();
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
