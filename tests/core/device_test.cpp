#include "selfsup/core/device.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

TEST(Device, EachLocalRankGetsItsOwnGpu) {
  EXPECT_EQ(cuda_device_index(0, 8), 0);
  EXPECT_EQ(cuda_device_index(7, 8), 7);
  // One visible GPU per rank (srun --gpu-bind=single:1): every rank's is device 0.
  EXPECT_EQ(cuda_device_index(5, 1), 0);
}

TEST(Device, MoreRanksThanGpusOnANodeSaysWhatToChange) {
  try {
    cuda_device_index(4, 4);
    FAIL() << "no error for local rank 4 of 4 GPUs";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("only 4 GPUs"), std::string::npos) << message;
    EXPECT_NE(message.find("--ntasks-per-node=4"), std::string::npos) << message;
    EXPECT_NE(message.find("-npernode 4"), std::string::npos) << message;
  }
}

TEST(Autocast, GuardTurnsBf16OnForItsScopeOnly) {
  // On the CPU, where the autocast machinery also exists: matrix products in bf16 inside, fp32
  // outside, nesting restores the outer state.
  const auto x = torch::randn({4, 8});
  const auto w = torch::randn({3, 8});
  {
    AutocastGuard outer(torch::kCPU, true);
    EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kBFloat16);
    {
      AutocastGuard off(torch::kCPU, false);  // disabled: leaves the outer guard's state
      EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kBFloat16);
    }
    {
      AutocastGuard inner(torch::kCPU, true);
      EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kFloat);
  EXPECT_THROW(AutocastGuard(torch::kMeta, true), Error);
}

TEST(Autocast, SyncBatchNormNormalisesBf16InFp32) {
  // A bf16 activation is normalised with fp32 statistics and comes back in bf16, close to the fp32
  // result (bf16 keeps 8 bits of mantissa).
  auto comm = std::make_shared<LocalCommunicator>();
  SyncBatchNorm bn(6, comm);
  const auto x = torch::randn({5, 6, 3, 3}) * 4 + 2;
  const auto reference = bn->forward(x);
  const auto low = bn->forward(x.to(torch::kBFloat16));
  EXPECT_EQ(low.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(low.to(torch::kFloat), reference, 2e-2, 2e-2));
}

TEST(Autocast, SimClrLossStaysFp32UnderBf16) {
  // train.precision bf16 (on the CPU here only because the Config is built by hand; parsing
  // rejects it without CUDA): the encoder and head run in bf16, the loss is fp32 and close to the
  // fp32 run's.
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  config.model.batch_norm = "local";
  config.augment.size = 16;
  const auto views = torch::randn({2, 6, 3, 16, 16});
  auto loss_at = [&](const std::string& precision) {
    config.train.precision = precision;
    torch::manual_seed(4);
    auto objective = make_objective(config, 3, std::make_shared<LocalCommunicator>());
    auto out = objective->compute(views, torch::Tensor());
    out.loss.backward();
    const auto grad = objective->encoder()->parameters()[0].grad();
    EXPECT_EQ(grad.scalar_type(), torch::kFloat) << precision;
    return out.loss;
  };
  const auto fp32 = loss_at("fp32");
  const auto bf16 = loss_at("bf16");
  EXPECT_EQ(bf16.scalar_type(), torch::kFloat);
  EXPECT_NEAR(bf16.item<double>(), fp32.item<double>(), 2e-2 * fp32.item<double>());
  EXPECT_NE(bf16.item<double>(), fp32.item<double>());  // bf16 did run
}

}  // namespace
}  // namespace selfsup
