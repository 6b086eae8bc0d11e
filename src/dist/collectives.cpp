#include <torch/torch.h>

#include "selfsup/dist/communicator.h"

namespace selfsup {
namespace {

// forward: all_gather; backward: reduce_scatter(sum). See the header for why this is the correct
// gradient of a loss that is summed (then averaged) over ranks.
class AllGatherWithGrad : public torch::autograd::Function<AllGatherWithGrad> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    return comm->all_gather(x.contiguous());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    return {comm->reduce_scatter(grads[0].contiguous()), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_with_grad(const torch::Tensor& x, Communicator& comm) {
  return AllGatherWithGrad::apply(x, &comm);
}

}  // namespace selfsup
