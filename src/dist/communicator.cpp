#include "selfsup/dist/communicator.h"

#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"

namespace selfsup {
namespace {

class FinishedWork : public CollectiveWork {
 public:
  void wait() override {}
};

}  // namespace

std::unique_ptr<CollectiveWork> Communicator::all_reduce_async_(torch::Tensor& x, ReduceOp op) {
  all_reduce_(x, op);
  return std::make_unique<FinishedWork>();
}

std::shared_ptr<Communicator> make_communicator(const DistConfig& config, bool cuda) {
  const std::string& backend = config.backend;
  const auto launch = detect_launch();
  const bool multi_rank = launch.world_size > 1;
  if (backend == "nccl") {
    SELFSUP_CHECK(cuda,
                  "dist.backend=nccl needs device=cuda (NCCL moves CUDA tensors); on the CPU use "
                  "dist.backend=mpi or auto");
    return make_nccl_communicator(config);
  }
  // Several ranks on GPUs: NCCL (a build without it says how to get it, or to train on the CPU).
  if (backend == "auto" && multi_rank && cuda) return make_nccl_communicator(config);
  if (backend == "mpi" || (backend == "auto" && multi_rank)) {
    if (cuda) {
      throw Error(
          "dist.backend=mpi moves CPU tensors only; with device=cuda use dist.backend=nccl (or "
          "auto), or train on the CPU with device=cpu");
    }
    return make_mpi_communicator(config);
  }
  if (multi_rank) {
    // Several processes that each believed they were a world of one would all act as rank 0 and
    // write the same run directory: refuse rather than train wrongly.
    throw Error("launched as rank " + std::to_string(launch.rank) + " of " +
                std::to_string(launch.world_size) + " by " + launch.launcher +
                ", but dist.backend = \"local\" runs one process; use dist.backend=auto, mpi or "
                "nccl");
  }
  return std::make_shared<LocalCommunicator>();
}

}  // namespace selfsup
