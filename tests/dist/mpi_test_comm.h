#pragma once
// The one MPI communicator of the multi-rank test binary, shared by its test files (every rank runs
// the tests in the same order, so the collectives line up).

#include "selfsup/dist/mpi_communicator.h"

namespace selfsup {

inline MpiCommunicator& test_comm() {
  static MpiCommunicator instance;
  return instance;
}

}  // namespace selfsup
