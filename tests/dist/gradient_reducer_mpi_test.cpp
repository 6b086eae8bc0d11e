// Gradient reduction overlapped with backward gives bitwise the gradients of the reduction after
// backward, and both give the single-process gradients of the global batch. SimCLR with
// synchronised batch norm: its backward runs collectives of its own between the bucket reductions
// that the gradient hooks start, so the test also proves that every rank issues them in the same
// order. Many small buckets, an unused parameter, two steps with one reducer.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/objectives/objective.h"
#include "tests/dist/mpi_test_comm.h"

namespace selfsup {
namespace {

constexpr int64_t kPerRank = 4;
constexpr int64_t kSide = 12;

Config small_config() {
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  config.model.batch_norm = "sync";
  config.augment.size = kSide;
  return config;
}

struct Step {
  std::vector<torch::Tensor> grads;  // the unused parameter's, then per trainable parameter
  int64_t started_in_backward = 0;
  int64_t buckets = 0;
};

// Two steps (the second from other views) with one reducer; the reduced gradients of each.
std::vector<Step> run(std::shared_ptr<Communicator> comm, bool overlap,
                      const std::vector<torch::Tensor>& views) {
  torch::manual_seed(5);
  auto objective = make_objective(small_config(), 3, comm, kSide);
  // A parameter never in the loss, first: buckets take the parameters from the last, so it is in
  // the last bucket, which starts only in reduce(); the others start during backward.
  std::vector<torch::Tensor> parameters{torch::ones({7}, torch::requires_grad())};
  for (const auto& p : objective->trainable_parameters()) parameters.push_back(p);
  GradientReducer reducer(parameters, *comm, /*bucket_bytes=*/2048, overlap);
  std::vector<Step> steps;
  for (const auto& step_views : views) {
    for (auto& p : parameters) p.mutable_grad() = torch::Tensor();
    reducer.prepare();
    objective->compute(step_views).loss.backward();
    Step step;
    step.started_in_backward = reducer.buckets_started_in_backward();
    reducer.reduce();
    step.buckets = reducer.bucket_count();
    for (const auto& p : parameters)
      step.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    steps.push_back(step);
  }
  return steps;
}

TEST(MpiGradientReducer, OverlappedEqualsAfterBackwardAndOneProcess) {
  auto& comm = test_comm();
  const int rank = comm.rank(), world = comm.size();
  const int64_t global = kPerRank * world;
  torch::manual_seed(11);
  // [V, B_global, C, H, W] per step; each rank takes its own images.
  std::vector<torch::Tensor> full{torch::randn({2, global, 3, kSide, kSide}),
                                  torch::randn({2, global, 3, kSide, kSide})};
  std::vector<torch::Tensor> mine;
  for (const auto& v : full) mine.push_back(v.narrow(1, rank * kPerRank, kPerRank).contiguous());

  std::shared_ptr<Communicator> shared(&comm, [](Communicator*) {});  // non-owning
  const auto after = run(shared, /*overlap=*/false, mine);
  const auto overlapped = run(shared, /*overlap=*/true, mine);
  const auto reference = run(std::make_shared<LocalCommunicator>(), false, full);

  for (size_t s = 0; s < full.size(); ++s) {
    ASSERT_GT(after[s].buckets, 4) << "the test needs several buckets";
    EXPECT_EQ(after[s].started_in_backward, 0);
    // Buckets started from the hooks, while backward still ran (the head's first).
    EXPECT_GT(overlapped[s].started_in_backward, 0) << "step " << s;
    ASSERT_EQ(overlapped[s].grads.size(), reference[s].grads.size());
    for (size_t k = 0; k < reference[s].grads.size(); ++k) {
      const auto& expected = reference[s].grads[k];
      const auto& plain = after[s].grads[k];
      const auto& ours = overlapped[s].grads[k];
      ASSERT_TRUE(plain.defined() && ours.defined()) << "parameter " << k;
      EXPECT_TRUE(torch::equal(ours, plain))
          << "step " << s << " parameter " << k << " on rank " << rank << ": overlapped differs by "
          << (ours - plain).abs().max().item<double>();
      if (k == 0) {
        EXPECT_TRUE(torch::equal(ours, torch::zeros({7}))) << "the unused parameter";
        continue;
      }
      const double scale = std::max(1.0, expected.abs().max().item<double>());
      EXPECT_LT((ours - expected).abs().max().item<double>(), 1e-5 * scale)
          << "step " << s << " parameter " << k << " on rank " << rank;
    }
  }
}

}  // namespace
}  // namespace selfsup
