// Multi-rank test of the tiled InfoNCE (DESIGN.md invariants 1 and 2): with different inputs on
// every rank, all_gather_with_grad + info_nce_tiled (block size 5, with and without a queue) gives
// the loss and parameter gradients of the single-process dense info_nce on the concatenated global
// batch (fp32, 1e-5).
//
// Every rank runs every collective in the same order: comparisons use EXPECT (never ASSERT), so a
// failing rank does not skip a collective and leave the others waiting.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "selfsup/dist/communicator.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/tiled_info_nce.h"
#include "tests/dist/mpi_test_comm.h"
#include "tests/dist/tiny_projector.h"

namespace selfsup {
namespace {

class MpiTiledInfoNce : public ::testing::TestWithParam<int64_t> {};

TEST_P(MpiTiledInfoNce, DistributedTiledEqualsSingleProcessDense) {
  auto& comm = test_comm();
  const int rank = comm.rank(), world = comm.size();
  const int64_t queue_size = GetParam();
  const int64_t b_local = 3, views = 2;
  const int64_t b_global = b_local * world;
  // The global batch and the queue, the same on every rank; each rank feeds only its own slice.
  torch::manual_seed(42);
  const auto inputs = torch::randn({b_global, views, 12});
  auto queue = torch::randn({queue_size, 8});
  queue = queue / queue.norm(2, -1, true);
  torch::manual_seed(7);
  TinyProjector model;
  torch::manual_seed(7);
  TinyProjector reference;

  // Single process, dense: the whole global batch.
  const auto full_z = reference.forward(inputs);
  const auto full = info_nce(full_z, full_z, 0, InfoNceOptions(0.2).queue(queue));
  full.loss.backward();

  // Distributed, tiled: local anchors against gathered columns in blocks of 5, rank-local mean,
  // gradients averaged over ranks.
  const auto local = model.forward(inputs.narrow(0, rank * b_local, b_local));  // [b, V, D]
  const auto global = all_gather_with_grad(local.contiguous(), comm);
  const auto sharded =
      info_nce_tiled(local, global, rank * b_local, InfoNceOptions(0.2).queue(queue).block_size(5));
  sharded.loss.backward();
  GradientReducer(model.parameters(), comm).reduce();
  // Every rank has as many anchors (and positive and negative pairs): means of rank means are the
  // global means.
  auto averaged = torch::tensor({sharded.loss.item<double>(), sharded.pos_sim, sharded.neg_sim},
                                torch::kDouble);
  comm.all_reduce_(averaged, ReduceOp::kAvg);

  EXPECT_NEAR(averaged[0].item<double>(), full.loss.item<double>(), 1e-5);
  EXPECT_NEAR(averaged[1].item<double>(), full.pos_sim, 1e-6);
  EXPECT_NEAR(averaged[2].item<double>(), full.neg_sim, 1e-6);
  EXPECT_EQ(sharded.candidates_per_anchor, b_global * views - 1 + queue_size);
  const auto ours = model.named_parameters();
  for (const auto& item : reference.named_parameters()) {
    const auto difference = (ours[item.key()].grad() - item.value().grad()).abs().max();
    EXPECT_LT(difference.item<double>(), 1e-5) << item.key() << " on rank " << rank;
  }
}

INSTANTIATE_TEST_SUITE_P(QueueSizes, MpiTiledInfoNce, ::testing::Values<int64_t>(0, 7));

}  // namespace
}  // namespace selfsup
