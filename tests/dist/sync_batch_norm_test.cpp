// Synchronized batch norm in a world of one must be exactly batch norm: forward, the closed-form
// backward, running statistics and evaluation mode, against torch's own BatchNorm.

#include "selfsup/dist/sync_batch_norm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5) << what;
}

template <typename TorchBatchNorm>
void compare_with_torch(const std::vector<int64_t>& shape) {
  const int64_t channels = shape[1];
  auto comm = std::make_shared<LocalCommunicator>();
  SyncBatchNorm ours(channels, comm);
  TorchBatchNorm theirs(channels);
  torch::manual_seed(3);
  {
    torch::NoGradGuard no_grad;
    const auto w = torch::rand({channels}) + 0.5, b = torch::randn({channels});
    ours->weight.copy_(w);
    theirs->weight.copy_(w);
    ours->bias.copy_(b);
    theirs->bias.copy_(b);
  }
  const auto input = torch::randn(shape) * 3 + 1;
  const auto upstream = torch::randn(shape);  // a fixed random d(loss)/d(output)
  auto x1 = input.clone().requires_grad_(true), x2 = input.clone().requires_grad_(true);
  const auto y1 = ours->forward(x1), y2 = theirs->forward(x2);
  expect_close(y1, y2, "output");
  (y1 * upstream).sum().backward();
  (y2 * upstream).sum().backward();
  expect_close(x1.grad(), x2.grad(), "input gradient");
  expect_close(ours->weight.grad(), theirs->weight.grad(), "weight gradient");
  expect_close(ours->bias.grad(), theirs->bias.grad(), "bias gradient");
  expect_close(ours->running_mean, theirs->running_mean, "running mean");
  expect_close(ours->running_var, theirs->running_var, "running variance");
  EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 1);
  ours->eval();
  theirs->eval();
  expect_close(ours->forward(input), theirs->forward(input), "evaluation output");
}

TEST(SyncBatchNorm, WorldOfOneEqualsBatchNorm2d) {
  compare_with_torch<torch::nn::BatchNorm2d>({6, 4, 5, 3});
}

TEST(SyncBatchNorm, WorldOfOneEqualsBatchNorm1d) {
  compare_with_torch<torch::nn::BatchNorm1d>({10, 7});
}

// A mean far larger than the spread: the shifted sums keep the variance exact (plain sums of x^2
// in float32 would lose it), on the first batch and on later ones.
TEST(SyncBatchNorm, LargeMeanSmallSpread) {
  auto comm = std::make_shared<LocalCommunicator>();
  SyncBatchNorm ours(3, comm);
  torch::nn::BatchNorm2d theirs(3);
  for (int step = 0; step < 3; ++step) {
    const auto x = torch::randn({8, 3, 4, 4}) * 0.5 + 1000.0 + step;
    EXPECT_LT((ours->forward(x) - theirs->forward(x)).abs().max().item<double>(), 2e-3)
        << "step " << step;
    EXPECT_LT((ours->running_var - theirs->running_var).abs().max().item<double>(), 1e-4);
  }
}

TEST(SyncBatchNorm, ChannelsLastInputGivesTheSameResult) {
  auto comm = std::make_shared<LocalCommunicator>();
  SyncBatchNorm bn(3, comm);
  const auto x = torch::randn({4, 3, 6, 6});
  const auto y = bn->forward(x);
  const auto y_nhwc = bn->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_LT((y - y_nhwc).abs().max().item<double>(), 1e-6);
}

TEST(SyncBatchNorm, ParameterNamesMatchTorchBatchNorm) {
  SyncBatchNorm ours(5, std::make_shared<LocalCommunicator>());
  torch::nn::BatchNorm2d theirs(5);
  std::vector<std::string> a, b;
  for (const auto& item : ours->named_parameters()) a.push_back(item.key());
  for (const auto& item : theirs->named_parameters()) b.push_back(item.key());
  for (const auto& item : ours->named_buffers()) a.push_back(item.key());
  for (const auto& item : theirs->named_buffers()) b.push_back(item.key());
  EXPECT_EQ(a, b);
}

TEST(SyncBatchNorm, RejectsAWrongChannelCount) {
  SyncBatchNorm bn(5, std::make_shared<LocalCommunicator>());
  EXPECT_THROW(bn->forward(torch::randn({4, 3})), Error);
}

}  // namespace
}  // namespace selfsup
