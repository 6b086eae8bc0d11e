#pragma once
// A model without batch norm for the multi-rank loss tests: projections
// z = normalize(tanh(x W1) W2), [N, 12] -> [N, 8].

#include <torch/torch.h>

namespace selfsup {

struct TinyProjector : torch::nn::Module {
  TinyProjector() {
    fc1 = register_module("fc1", torch::nn::Linear(12, 16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 8));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto z = fc2->forward(torch::tanh(fc1->forward(x)));
    return z / z.norm(2, -1, true);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

}  // namespace selfsup
