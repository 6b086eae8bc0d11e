// Built when CMake did not find the CUDA toolkit and NCCL (or SELFSUP_WITH_NCCL=OFF): collectives
// on CUDA tensors are a clear error.
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/dist/nccl_communicator.h"

namespace selfsup {

int cuda_device_count() { return 0; }

std::string nccl_build_info() {
  return "not built (CMake found no CUDA toolkit with NCCL, or SELFSUP_WITH_NCCL=OFF)";
}

std::shared_ptr<Communicator> make_nccl_communicator(const DistConfig& config) {
  throw Error(
      "this selfsup was built without NCCL, so it cannot run collectives on CUDA tensors; "
      "rebuild with the CUDA toolkit and NCCL found at configure time (e.g. "
      "-DCUDAToolkit_ROOT=/usr/local/cuda, and NCCL_HOME=/path/to/nccl when NCCL is elsewhere), "
      "or train on the CPU with device=cpu and dist.backend=mpi (the MPI backend is CPU-only)");
}

}  // namespace selfsup
