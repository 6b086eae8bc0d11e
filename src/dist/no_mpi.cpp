// Built when MPI is not found (or SELFSUP_WITH_MPI=OFF): multi-rank runs are a clear error.
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"

namespace selfsup {

std::shared_ptr<Communicator> make_mpi_communicator(const DistConfig& config) {
  throw Error(
      "this selfsup was built without MPI, so it runs one process only; install libopenmpi-dev "
      "(launch/setup.sh) and rebuild with -DSELFSUP_WITH_MPI=ON");
}

}  // namespace selfsup
