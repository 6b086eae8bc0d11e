#include "selfsup/dist/sync_batch_norm.h"

#include <cmath>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// Every dim but the channel dim (1): the dims the statistics reduce over.
std::vector<int64_t> reduce_dims(const torch::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

// [C] -> [1, C, 1, ...] broadcastable against x.
torch::Tensor per_channel(const torch::Tensor& v, const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = v.numel();
  return v.view(shape);
}

// y = (x - mean) * invstd * weight + bias with global `mean`, `invstd` (constants of the forward
// whose dependence on x is folded into the backward formula).
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& mean, const torch::Tensor& invstd,
                               int64_t global_count, Communicator* comm) {
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["global_count"] = global_count;
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    const auto x_hat = (x - per_channel(mean, x)) * per_channel(invstd, x);
    return x_hat * per_channel(weight, x) + per_channel(bias, x);
  }

  // With N the global count and x_hat the normalised input, for the loss summed over ranks:
  //   dL/dx = weight * invstd * (g - sum(g)/N - x_hat * sum(g * x_hat)/N),
  // where the sums run over the global batch (one all_reduce). The weight and bias gradients are
  // this rank's share, sum(g * x_hat) and sum(g) over local rows: the gradient reducer averages
  // parameter gradients over ranks like every other parameter's.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const double n = static_cast<double>(ctx->saved_data["global_count"].toInt());
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const auto g = grads[0];
    const auto dims = reduce_dims(x);
    const auto x_hat = (x - per_channel(mean, x)) * per_channel(invstd, x);
    const auto local_sum_g = g.sum(dims);                  // [C]
    const auto local_sum_g_x_hat = (g * x_hat).sum(dims);  // [C]
    // [2C], summed in double: these sums are over the whole global batch.
    auto sums = torch::cat({local_sum_g, local_sum_g_x_hat}).to(torch::kDouble).contiguous();
    comm->all_reduce_(sums, ReduceOp::kSum);
    const int64_t channels = local_sum_g.numel();
    const auto mean_g = (sums.narrow(0, 0, channels) / n).to(g.scalar_type());
    const auto mean_g_x_hat = (sums.narrow(0, channels, channels) / n).to(g.scalar_type());
    const auto grad_x = (g - per_channel(mean_g, x) - x_hat * per_channel(mean_g_x_hat, x)) *
                        per_channel(weight * invstd, x);
    return {grad_x,          local_sum_g_x_hat, local_sum_g,    torch::Tensor(),
            torch::Tensor(), torch::Tensor(),   torch::Tensor()};
  }
};

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(int64_t features, std::shared_ptr<Communicator> comm,
                                     double eps, double momentum)
    : comm_(std::move(comm)), eps_(eps), momentum_(momentum) {
  SELFSUP_CHECK(comm_, "SyncBatchNorm needs a communicator");
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
  running_mean = register_buffer("running_mean", torch::zeros({features}));
  running_var = register_buffer("running_var", torch::ones({features}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& x) {
  SELFSUP_CHECK(x.dim() >= 2 && x.size(1) == weight.numel(), "SyncBatchNorm over ", weight.numel(),
                " channels got input of shape ", x.sizes());
  if (x.scalar_type() != weight.scalar_type()) {
    // A bfloat16 activation (autocast): statistics, their all-reduce and the normalisation in the
    // parameters' precision, the output back in the input's, as cuDNN's batch norm does.
    return forward(x.to(weight.scalar_type())).to(x.scalar_type());
  }
  if (!is_training()) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false,
                             momentum_, eps_, /*cudnn_enabled=*/true);
  }
  const int64_t channels = weight.numel();
  torch::Tensor mean, invstd;
  int64_t global_count = 0;
  {
    torch::NoGradGuard no_grad;
    // Per channel, summed over ranks in one all_reduce of [1 + 2C] doubles (the same bytes whatever
    // the world size; an all_gather of per-rank statistics would grow with it): the count, and the
    // sums of (x - shift) and (x - shift)^2. The shift is the (bias-corrected) running mean,
    // identical on every rank and close to this batch's mean, so the variance E[(x-shift)^2] -
    // E[x-shift]^2 does not suffer the cancellation of the plain E[x^2] - E[x]^2 when the mean is
    // large against the spread. It is saved state (a buffer), so a resumed run computes exactly as
    // an uninterrupted one. The very first batch, before any running mean, takes one more
    // all_reduce to find its exact mean first.
    const int64_t local_count = x.numel() / channels;
    const auto dims = reduce_dims(x);
    // Read once per process (one device sync), then counted on the host.
    if (batches_seen_ < 0) batches_seen_ = num_batches_tracked.item<int64_t>();
    // The running mean is an exponential moving average started at zero; divided by its total
    // weight 1 - (1 - momentum)^n it is the weighted mean of the previous batches' means.
    const double weight = 1.0 - std::pow(1.0 - momentum_, double(batches_seen_));
    torch::Tensor shift;
    if (batches_seen_ == 0 || weight < 1e-6) {
      auto first = torch::cat({torch::full({1}, double(local_count), torch::kDouble).to(x.device()),
                               x.sum(dims).to(torch::kDouble)});
      comm_->all_reduce_(first, ReduceOp::kSum);
      shift = (first.narrow(0, 1, channels) / first[0]).to(x.scalar_type());
    } else {
      shift = (running_mean / weight).to(x.scalar_type());
    }
    const auto shifted = x - per_channel(shift, x);
    auto sums = torch::cat({torch::full({1}, double(local_count), torch::kDouble).to(x.device()),
                            shifted.sum(dims).to(torch::kDouble),
                            shifted.pow(2).sum(dims).to(torch::kDouble)});
    comm_->all_reduce_(sums, ReduceOp::kSum);
    const double total = sums[0].item<double>();
    global_count = static_cast<int64_t>(total);
    SELFSUP_CHECK(global_count > 1, "SyncBatchNorm needs more than one value per channel over ",
                  "all ranks, got input of shape ", x.sizes());
    const auto shifted_mean = sums.narrow(0, 1, channels) / total;      // [C]
    const auto var = (sums.narrow(0, 1 + channels, channels) / total -  // biased
                      shifted_mean.pow(2))
                         .clamp_min(0.0);
    const auto global_mean = shifted_mean + shift.to(torch::kDouble);  // [C]
    mean = global_mean.to(x.scalar_type());
    invstd = (var + eps_).rsqrt().to(x.scalar_type());
    // Running statistics as torch's BatchNorm keeps them (unbiased variance), identical on every
    // rank because the inputs to the update are.
    // A non-finite batch (a step the ranks will agree to skip) leaves them as they were, without a
    // device sync: the statistics are all-reduced, so every rank keeps or updates alike.
    const auto new_mean =
        running_mean * (1 - momentum_) + global_mean.to(running_mean.scalar_type()) * momentum_;
    const auto new_var = running_var * (1 - momentum_) +
                         (var * (total / (total - 1))).to(running_var.scalar_type()) * momentum_;
    running_mean.copy_(torch::where(torch::isfinite(new_mean), new_mean, running_mean));
    running_var.copy_(torch::where(torch::isfinite(new_var), new_var, running_var));
    num_batches_tracked.add_(1);
    ++batches_seen_;
  }
  return SyncBatchNormFunction::apply(x, weight, bias, mean, invstd, global_count, comm_.get());
}

}  // namespace selfsup
