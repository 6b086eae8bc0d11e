// The NCCL backend under `mpirun --oversubscribe -np N` (N = 2, 3, 4), on one host. Whatever the
// machine, every rank takes the same branch: without NCCL or a GPU, or with more ranks than GPUs,
// every rank gets a clear error (never a hang); with a GPU per rank, closed forms of every
// collective on CUDA tensors. EXPECT, never ASSERT, after the set-up: no rank may skip a
// collective.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/nccl_communicator.h"

namespace selfsup {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(NcclRanks, SetUpFailsOnEveryRankOrCollectivesHaveClosedForms) {
  DistConfig config;
  config.backend = "nccl";
  config.timeout_s = 120.0;
  std::shared_ptr<Communicator> comm;
  std::string message;
  try {
    comm = make_nccl_communicator(config);
  } catch (const Error& e) {
    message = e.what();
  }
  const int gpus = cuda_device_count();
#ifndef SELFSUP_HAVE_NCCL
  EXPECT_TRUE(contains(message, "built without NCCL")) << message;
  return;
#endif
  if (gpus == 0) {
    EXPECT_TRUE(contains(message, "no usable CUDA device")) << message;
    return;
  }
  if (!message.empty() && contains(message, "both use the GPU")) {
    // More ranks than GPUs on this host: every rank names the first pair that shares one.
    EXPECT_TRUE(contains(message, "ranks 0 and ")) << message;
    return;
  }
  ASSERT_TRUE(message.empty()) << message;  // the same on every rank: set-up is collective
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a LibTorch with CUDA";

  const int rank = comm->rank(), world = comm->size();
  const auto device = torch::Device(torch::kCUDA, comm->local_rank() % gpus);
  const auto cuda = torch::TensorOptions().device(device);
  const auto x = torch::full({2, 3}, float(rank + 1), cuda);
  const auto gathered = comm->all_gather(x).cpu();
  EXPECT_EQ(gathered.sizes(), (std::vector<int64_t>{2 * world, 3}));
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(torch::equal(gathered.narrow(0, 2 * r, 2), torch::full({2, 3}, float(r + 1))));
  }
  // Block b of rank r holds (r + 1) * (b + 1); rank r keeps the sum over ranks of block r.
  auto blocks = torch::empty({2 * world, 3}, cuda.dtype(torch::kDouble));
  for (int b = 0; b < world; ++b) blocks.narrow(0, 2 * b, 2).fill_(double((rank + 1) * (b + 1)));
  EXPECT_TRUE(torch::equal(
      comm->reduce_scatter(blocks).cpu(),
      torch::full({2, 3}, double((rank + 1) * world * (world + 1) / 2), torch::kDouble)));
  auto sum = torch::full({4}, double(rank + 1), cuda.dtype(torch::kDouble));
  comm->all_reduce_(sum, ReduceOp::kSum);
  EXPECT_TRUE(
      torch::allclose(sum.cpu(), torch::full({4}, world * (world + 1) / 2.0, torch::kDouble)));
  auto avg = torch::full({4}, float(rank + 1), cuda);
  comm->all_reduce_(avg, ReduceOp::kAvg);
  EXPECT_TRUE(torch::allclose(avg.cpu(), torch::full({4}, (world + 1) / 2.0f)));
  auto max = torch::full({1}, int64_t(rank), cuda.dtype(torch::kLong));
  comm->all_reduce_(max, ReduceOp::kMax);
  EXPECT_EQ(max.cpu().item<int64_t>(), world - 1);
  auto min = torch::full({1}, int64_t(rank), cuda.dtype(torch::kLong));
  comm->all_reduce_(min, ReduceOp::kMin);
  EXPECT_EQ(min.cpu().item<int64_t>(), 0);
  auto root_value = torch::full({3}, float(rank * 10 + 7), cuda);
  comm->broadcast_(root_value, world - 1);
  EXPECT_TRUE(torch::equal(root_value.cpu(), torch::full({3}, float((world - 1) * 10 + 7))));
  comm->barrier();
}

}  // namespace
}  // namespace selfsup
