#include "selfsup/dist/communicator.h"

#include "selfsup/core/error.h"

namespace selfsup {

std::shared_ptr<Communicator> make_communicator(const std::string& backend, bool cuda) {
  if (backend == "local" || backend == "auto") return std::make_shared<LocalCommunicator>();
  throw Error("dist.backend = \"" + backend +
              "\" is not available in this build yet; use \"local\" or \"auto\"");
}

}  // namespace selfsup
