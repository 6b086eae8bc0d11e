// The NCCL backend in one process. Without a GPU (CI): the errors must be clear, never a crash.
// With a GPU, NCCL and a CUDA LibTorch: closed forms of every collective on a world of one (each
// collective is then the identity), over several shapes and types, and the timeout path.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/nccl_communicator.h"

namespace selfsup {
namespace {

DistConfig nccl_config(double timeout_s = 120.0) {
  DistConfig config;
  config.backend = "nccl";
  config.timeout_s = timeout_s;
  return config;
}

// The message of the selfsup::Error that `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(CommunicatorFactory, NcclBackendNeedsCuda) {
  const auto message = error_of([] { make_communicator(nccl_config(), /*cuda=*/false); });
  EXPECT_TRUE(contains(message, "dist.backend=nccl needs device=cuda")) << message;
}

TEST(CommunicatorFactory, AutoInAWorldOfOneIsLocalOnEitherDevice) {
  DistConfig config;  // backend "auto"
  EXPECT_EQ(make_communicator(config, /*cuda=*/true)->backend(), "local");
  EXPECT_EQ(make_communicator(config, /*cuda=*/false)->backend(), "local");
}

TEST(NcclCommunicator, BuildInfoSaysWhatIsBuilt) {
  const auto info = nccl_build_info();
#ifdef SELFSUP_HAVE_NCCL
  EXPECT_TRUE(contains(info, "NCCL 2.")) << info;
  EXPECT_TRUE(contains(info, "CUDA runtime")) << info;
#else
  EXPECT_TRUE(contains(info, "not built")) << info;
  EXPECT_EQ(cuda_device_count(), 0);
#endif
}

TEST(NcclCommunicator, WithoutAGpuConstructionIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is visible";
  // With NCCL built this initialises MPI (a singleton process is a world of one).
  const auto message = error_of([] { make_nccl_communicator(nccl_config()); });
#ifdef SELFSUP_HAVE_NCCL
  EXPECT_TRUE(contains(message, "rank 0")) << message;
  EXPECT_TRUE(contains(message, "no usable CUDA device")) << message;
  EXPECT_TRUE(contains(message, "device=cpu")) << message;
#else
  EXPECT_TRUE(contains(message, "built without NCCL")) << message;
  EXPECT_TRUE(contains(message, "CUDAToolkit_ROOT")) << message;
#endif
}

#ifdef SELFSUP_HAVE_NCCL

// One NCCL communicator per process (CTest runs every test in a process of its own).
class NcclWorldOfOne : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0 || !torch::cuda::is_available()) {
      GTEST_SKIP() << "needs a GPU and a LibTorch with CUDA";
    }
    static auto shared = std::make_shared<NcclCommunicator>(nccl_config());
    comm_ = shared;
  }
  torch::Device device() const { return torch::Device(torch::kCUDA, comm_->device()); }

  std::shared_ptr<NcclCommunicator> comm_;
};

const std::vector<torch::ScalarType> kTypes{torch::kFloat,    torch::kDouble, torch::kHalf,
                                            torch::kBFloat16, torch::kInt,    torch::kLong,
                                            torch::kByte};
const std::vector<std::vector<int64_t>> kShapes{{1}, {7}, {3, 4}, {2, 3, 5}};

// Distinct small integers (exact in every type above), on this rank's device.
torch::Tensor ramp(const std::vector<int64_t>& shape, torch::ScalarType type,
                   torch::Device device) {
  int64_t numel = 1;
  for (auto n : shape) numel *= n;
  return (torch::arange(numel, torch::kLong) % 200).reshape(shape).to(type).to(device);
}

TEST_F(NcclWorldOfOne, IsAWorldOfOne) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
  EXPECT_EQ(comm_->backend(), "nccl");
  EXPECT_EQ(comm_->device(), 0);  // local rank 0 modulo the visible devices
}

TEST_F(NcclWorldOfOne, EveryCollectiveIsTheIdentity) {
  for (auto type : kTypes) {
    for (const auto& shape : kShapes) {
      const auto x = ramp(shape, type, device());
      const auto expected = x.cpu();
      const auto where = detail::concat(type, " ", x.sizes());
      const auto gathered = comm_->all_gather(x);
      EXPECT_EQ(gathered.sizes(), x.sizes()) << where;
      EXPECT_TRUE(torch::equal(gathered.cpu(), expected)) << where;
      EXPECT_TRUE(torch::equal(comm_->reduce_scatter(x).cpu(), expected)) << where;
      for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
        auto y = x.clone();
        comm_->all_reduce_(y, op);
        EXPECT_TRUE(torch::equal(y.cpu(), expected)) << where << " op " << int(op);
      }
      auto z = x.clone();
      comm_->broadcast_(z, 0);
      EXPECT_TRUE(torch::equal(z.cpu(), expected)) << where;
    }
  }
  comm_->barrier();
}

TEST_F(NcclWorldOfOne, ResultsAreOrderedWithTheDefaultStream) {
  // Large enough that the copy of all_gather is a real kernel; the input is computed just before
  // on the default stream, and the output used just after.
  torch::manual_seed(3);
  const auto source = torch::randn({1 << 22}, device());
  const auto x = source * 2;
  const auto gathered = comm_->all_gather(x) + 1;
  EXPECT_TRUE(torch::equal(gathered.cpu(), (source * 2 + 1).cpu()));
  auto sum = source * 3;
  comm_->all_reduce_(sum, ReduceOp::kAvg);
  EXPECT_TRUE(torch::allclose(sum.cpu(), (source * 3).cpu()));
}

TEST_F(NcclWorldOfOne, CpuTensorsGoThroughMpi) {
  auto values = torch::tensor(std::vector<double>{1.5, -2.0}, torch::kDouble);
  comm_->all_reduce_(values, ReduceOp::kAvg);
  EXPECT_TRUE(torch::equal(values, torch::tensor(std::vector<double>{1.5, -2.0}, torch::kDouble)));
  const auto rows = comm_->all_gather(torch::ones({1, 4}, torch::kByte));
  EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{1, 4}));
}

TEST_F(NcclWorldOfOne, BadInputsAreClearErrors) {
  const auto matrix = ramp({3, 4}, torch::kFloat, device());
  EXPECT_TRUE(contains(error_of([&] { comm_->all_gather(matrix.t()); }), "contiguous"));
  auto flags = torch::zeros({4}, torch::TensorOptions().dtype(torch::kBool).device(device()));
  EXPECT_TRUE(
      contains(error_of([&] { comm_->all_reduce_(flags, ReduceOp::kSum); }), "not supported"));
  EXPECT_TRUE(contains(error_of([&] { comm_->reduce_scatter(ramp({}, torch::kFloat, device())); }),
                       "divisible"));
  auto x = ramp({4}, torch::kFloat, device());
  EXPECT_TRUE(contains(error_of([&] { comm_->broadcast_(x, 1); }), "root 1"));
  if (cuda_device_count() > 1) {
    const auto elsewhere = ramp({4}, torch::kFloat, torch::Device(torch::kCUDA, 1));
    EXPECT_TRUE(contains(error_of([&] { comm_->all_gather(elsewhere); }), "uses cuda:0"));
  }
}

// Deterministic: the default stream is busy with matrix products for much longer than the
// timeout (zero), so the all-reduce queued behind them cannot have finished at the first poll.
// A one-rank, in-place sum launches no NCCL kernel, so aborting the communicator is safe here.
TEST(NcclTimeout, AnUnfinishedCollectiveAbortsAndThrows) {
  if (cuda_device_count() == 0 || !torch::cuda::is_available()) {
    GTEST_SKIP() << "needs a GPU and a LibTorch with CUDA";
  }
  NcclCommunicator comm(nccl_config(/*timeout_s=*/0.0));
  const torch::Device device(torch::kCUDA, comm.device());
  auto busy = torch::randn({8192, 8192}, device);
  for (int i = 0; i < 10; ++i) busy = torch::mm(busy, busy);
  auto x = torch::ones({4}, device);
  const auto message = error_of([&] { comm.all_reduce_(x, ReduceOp::kSum); });
  EXPECT_TRUE(contains(message, "all_reduce")) << message;
  EXPECT_TRUE(contains(message, "did not finish within the timeout")) << message;
  EXPECT_TRUE(contains(message, "rank 0")) << message;
  EXPECT_TRUE(contains(error_of([&] { comm.barrier(); }), "aborted"));
  torch::cuda::synchronize();
}

#endif  // SELFSUP_HAVE_NCCL

}  // namespace
}  // namespace selfsup
