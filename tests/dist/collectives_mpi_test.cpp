// Multi-rank tests, run by CTest under `mpirun --oversubscribe -np N` (N = 2, 3, 4): closed forms
// for every collective, and the invariant that matters most (DESIGN.md invariant 1): with different
// inputs on every rank, the distributed SimCLR loss and gradients equal the single-process ones on
// the concatenated global batch (fp32, 1e-5).
//
// Every rank runs every collective in the same order: comparisons use EXPECT (never ASSERT), so a
// failing rank does not skip a collective and leave the others waiting.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/dist/mpi_communicator.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/objective.h"
#include "tests/dist/mpi_test_comm.h"
#include "tests/dist/tiny_projector.h"

namespace selfsup {
namespace {

MpiCommunicator& comm() { return test_comm(); }

TEST(MpiCollectives, AllGatherConcatenatesInRankOrder) {
  const int rank = comm().rank(), world = comm().size();
  const auto x = torch::full({2, 3}, float(rank + 1));
  const auto gathered = comm().all_gather(x);
  ASSERT_EQ(gathered.sizes(), (std::vector<int64_t>{2 * world, 3}));
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(torch::equal(gathered.narrow(0, 2 * r, 2), torch::full({2, 3}, float(r + 1))));
  }
}

TEST(MpiCollectives, ReduceScatterSumsThenSlices) {
  const int rank = comm().rank(), world = comm().size();
  // Block b of rank r holds (r + 1) * (b + 1): the sum over ranks of block b is
  // (b + 1) * world * (world + 1) / 2, and rank r keeps block r.
  auto x = torch::empty({2 * world, 3}, torch::kDouble);
  for (int b = 0; b < world; ++b) x.narrow(0, 2 * b, 2).fill_(double((rank + 1) * (b + 1)));
  const auto out = comm().reduce_scatter(x);
  EXPECT_TRUE(torch::equal(
      out, torch::full({2, 3}, double((rank + 1) * world * (world + 1) / 2), torch::kDouble)));
}

TEST(MpiCollectives, AllReduceAndBroadcastClosedForms) {
  const int rank = comm().rank(), world = comm().size();
  auto sum = torch::full({4}, double(rank + 1), torch::kDouble);
  comm().all_reduce_(sum, ReduceOp::kSum);
  EXPECT_TRUE(torch::allclose(sum, torch::full({4}, world * (world + 1) / 2.0, torch::kDouble)));
  auto avg = torch::full({4}, float(rank + 1));
  comm().all_reduce_(avg, ReduceOp::kAvg);
  EXPECT_TRUE(torch::allclose(avg, torch::full({4}, (world + 1) / 2.0f)));
  auto max = torch::full({1}, int64_t(rank), torch::kLong);
  comm().all_reduce_(max, ReduceOp::kMax);
  EXPECT_EQ(max.item<int64_t>(), world - 1);
  auto min = torch::full({1}, int64_t(rank), torch::kLong);
  comm().all_reduce_(min, ReduceOp::kMin);
  EXPECT_EQ(min.item<int64_t>(), 0);
  auto root_value = torch::full({3}, float(rank * 10 + 7));
  comm().broadcast_(root_value, world - 1);
  EXPECT_TRUE(torch::equal(root_value, torch::full({3}, float((world - 1) * 10 + 7))));
  comm().barrier();
}

TEST(MpiCollectives, AllGatherWithGradSumsGradientsOverRanks) {
  const int rank = comm().rank(), world = comm().size();
  auto x = torch::ones({2, 3}, torch::requires_grad());
  const auto gathered = all_gather_with_grad(x, comm());  // [2*world, 3]
  // Rank q weighs block r by (q + 1) * (r + 1): d(sum over ranks)/d(block r) = (r + 1) * sum(q +
  // 1).
  auto weights = torch::empty({2 * world, 3});
  for (int r = 0; r < world; ++r) weights.narrow(0, 2 * r, 2).fill_(float((rank + 1) * (r + 1)));
  (gathered * weights).sum().backward();
  EXPECT_TRUE(
      torch::allclose(x.grad(), torch::full({2, 3}, float((rank + 1) * world * (world + 1) / 2))));
}

TEST(MpiSimClr, DistributedLossAndGradientsEqualSingleProcess) {
  const int rank = comm().rank(), world = comm().size();
  const int64_t b_local = 3, views = 2;
  const int64_t b_global = b_local * world;
  // The global batch, the same on every rank; each rank feeds only its own (different) slice.
  torch::manual_seed(42);
  const auto inputs = torch::randn({b_global, views, 12});
  torch::manual_seed(7);
  TinyProjector model;
  torch::manual_seed(7);
  TinyProjector reference;

  // Single process: the whole global batch.
  const auto full =
      info_nce(reference.forward(inputs), reference.forward(inputs), 0, InfoNceOptions(0.2));
  full.loss.backward();

  // Distributed: local anchors against gathered columns, rank-local mean, gradients averaged.
  const auto local = model.forward(inputs.narrow(0, rank * b_local, b_local));  // [b, V, D]
  const auto global = all_gather_with_grad(local.contiguous(), comm());
  const auto sharded = info_nce(local, global, rank * b_local, InfoNceOptions(0.2));
  sharded.loss.backward();
  GradientReducer(model.parameters(), comm()).reduce();
  auto loss = sharded.loss.detach().clone().reshape({1});
  comm().all_reduce_(loss, ReduceOp::kAvg);

  EXPECT_NEAR(loss.item<double>(), full.loss.item<double>(), 1e-5);
  EXPECT_EQ(sharded.candidates_per_anchor, b_global * views - 1);
  const auto ours = model.named_parameters();
  const auto theirs = reference.named_parameters();
  for (const auto& item : theirs) {
    const auto difference = (ours[item.key()].grad() - item.value().grad()).abs().max();
    EXPECT_LT(difference.item<double>(), 1e-5) << item.key() << " on rank " << rank;
  }
}

TEST(MpiSimClr, BroadcastModuleMakesRanksIdentical) {
  const int rank = comm().rank();
  torch::manual_seed(100 + rank);  // different on purpose
  TinyProjector model;
  broadcast_module(model, comm());
  for (const auto& p : model.parameters()) {
    auto copy = p.detach().clone();
    auto max = copy.clone();
    comm().all_reduce_(max, ReduceOp::kMax);
    EXPECT_TRUE(torch::equal(copy, max));  // every rank holds the same (rank 0's) values
  }
}

// The whole objective, batch norm included: the SimCLR ConvNet with synchronized batch norm on
// N ranks (different images on each) against the same model with torch's BatchNorm in one process
// on the concatenated global batch. Loss and every parameter gradient agree.
TEST(MpiSimClr, SyncBatchNormObjectiveEqualsSingleProcess) {
  const int rank = comm().rank(), world = comm().size();
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  config.model.batch_norm = "sync";
  const int64_t b_local = 3, b_global = b_local * world;
  torch::manual_seed(11);
  const auto views = torch::randn({2, b_global, 1, 12, 12});  // [V, B_global, C, H, W]

  // The reference: torch's own BatchNorm ("local") in one process on the whole global batch.
  Config single = config;
  single.model.batch_norm = "local";
  torch::manual_seed(5);
  auto reference = make_objective(single, 1, std::make_shared<LocalCommunicator>());
  const auto full = reference->compute(views);
  full.loss.backward();

  // A non-owning handle on the test communicator (it outlives the objective).
  std::shared_ptr<Communicator> shared(&comm(), [](Communicator*) {});
  torch::manual_seed(5);
  auto distributed = make_objective(config, 1, shared);
  int64_t synchronized = 0;
  for (const auto& module : distributed->modules()) {
    synchronized += std::dynamic_pointer_cast<SyncBatchNormImpl>(module) != nullptr;
  }
  EXPECT_EQ(synchronized, 4);  // three in the ConvNet, one in the head
  const auto out = distributed->compute(views.narrow(1, rank * b_local, b_local));
  out.loss.backward();
  GradientReducer(distributed->parameters(), comm()).reduce();
  auto loss = out.loss.detach().clone().reshape({1});
  comm().all_reduce_(loss, ReduceOp::kAvg);
  EXPECT_NEAR(loss.item<double>(), full.loss.item<double>(), 1e-5);

  const auto ours = distributed->named_parameters();
  for (const auto& item : reference->named_parameters()) {
    const auto& expected = item.value().grad();
    const double scale = std::max(1.0, expected.abs().max().item<double>());
    const double difference = (ours[item.key()].grad() - expected).abs().max().item<double>();
    EXPECT_LT(difference, 1e-5 * scale) << item.key() << " on rank " << rank;
  }
  const auto our_buffers = distributed->named_buffers();
  for (const auto& item : reference->named_buffers()) {
    if (item.key().find("running") == std::string::npos) continue;
    EXPECT_LT((our_buffers[item.key()] - item.value()).abs().max().item<double>(), 1e-5)
        << item.key();
  }
}

// Ranks that pass different shapes or dtypes to a collective all get a clear error, at once.
TEST(MpiCollectives, MismatchedShapesAreAnErrorOnEveryRank) {
  const int rank = comm().rank(), world = comm().size();
  if (world == 1) GTEST_SKIP() << "needs two ranks";
  const auto ragged = torch::zeros({rank + 1, 3});
  try {
    comm().all_gather(ragged);
    ADD_FAILURE() << "all_gather of different shapes did not throw on rank " << rank;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("differ across ranks"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 [2, 3] Float"), std::string::npos) << message;
  }
  auto mixed = rank == 0 ? torch::zeros({4}, torch::kDouble) : torch::zeros({4});
  EXPECT_THROW(comm().all_reduce_(mixed, ReduceOp::kSum), Error);
  // The communicator is still usable afterwards.
  auto ok = torch::ones({2});
  comm().all_reduce_(ok, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(ok, torch::full({2}, float(world))));
}

// Every collective is counted (calls and bytes), and dist.check_shapes=false drops the checks.
TEST(MpiCollectives, CountsAndShapeChecksCanBeTurnedOff) {
  const int world = comm().size();
  MpiCommunicator unchecked(/*timeout_s=*/300.0, /*check_shapes=*/false);
  auto x = torch::ones({3});
  unchecked.all_reduce_(x, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(x, torch::full({3}, float(world))));
  EXPECT_EQ(unchecked.counts().count("shape_check"), 0u);
  ASSERT_EQ(unchecked.counts().count("all_reduce"), 1u);
  EXPECT_EQ(unchecked.counts().at("all_reduce").calls, 1);
  EXPECT_EQ(unchecked.counts().at("all_reduce").bytes, 12);
  MpiCommunicator checked(/*timeout_s=*/300.0, /*check_shapes=*/true);
  checked.all_reduce_(x, ReduceOp::kSum);
  EXPECT_EQ(checked.counts().count("shape_check"), world > 1 ? 1u : 0u);
}

}  // namespace
}  // namespace selfsup
