#include "selfsup/dist/communicator.h"

#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"

namespace selfsup {

std::shared_ptr<Communicator> make_communicator(const std::string& backend, bool cuda) {
  const auto launch = detect_launch();
  if (launch.world_size > 1) {
    // Several processes that each believed they were a world of one would all act as rank 0 and
    // write the same run directory: refuse rather than train wrongly.
    throw Error(
        "launched as rank " + std::to_string(launch.rank) + " of " +
        std::to_string(launch.world_size) + " by " + launch.launcher +
        ", but this build of selfsup has no multi-rank communicator yet (dist.backend = \"" +
        backend + "\"); run a single process: selfsup train CONFIG");
  }
  if (backend == "local" || backend == "auto") return std::make_shared<LocalCommunicator>();
  throw Error("dist.backend = \"" + backend +
              "\" is not available in this build yet; use \"local\" or \"auto\"");
}

}  // namespace selfsup
