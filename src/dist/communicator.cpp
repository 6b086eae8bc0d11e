#include "selfsup/dist/communicator.h"

#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"

namespace selfsup {

std::shared_ptr<Communicator> make_communicator(const DistConfig& config, bool cuda) {
  const std::string& backend = config.backend;
  const auto launch = detect_launch();
  if (backend == "nccl") {
    throw Error(
        "dist.backend = \"nccl\" is not available in this build yet; use \"mpi\" (CPU) "
        "or \"auto\"");
  }
  if (backend == "mpi" || (backend == "auto" && launch.world_size > 1)) {
    if (cuda) {
      throw Error(
          "multi-rank training on CUDA needs the NCCL backend, which this build does not "
          "have yet; train on the CPU (device=cpu) or run one process");
    }
    return make_mpi_communicator(config);
  }
  if (launch.world_size > 1) {
    // Several processes that each believed they were a world of one would all act as rank 0 and
    // write the same run directory: refuse rather than train wrongly.
    throw Error("launched as rank " + std::to_string(launch.rank) + " of " +
                std::to_string(launch.world_size) + " by " + launch.launcher +
                ", but dist.backend = \"local\" runs one process; use dist.backend=auto or mpi");
  }
  return std::make_shared<LocalCommunicator>();
}

}  // namespace selfsup
