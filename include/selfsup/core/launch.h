#pragma once
// Launch detection: what the launcher (mpirun, srun) tells a process about its place in the job.
// This is the one file of the library that reads the environment (STYLE.md rule 4).

#include <string>

namespace selfsup {

struct LaunchEnvironment {
  int world_size = 1;             // processes in the job, from the launcher (1 when not launched)
  int rank = 0;                   // this process's rank, from the launcher
  std::string launcher = "none";  // "mpirun", "srun" or "none"
};

/// Reads OMPI_COMM_WORLD_SIZE/RANK (Open MPI's mpirun), or SLURM_NTASKS/SLURM_PROCID (srun).
LaunchEnvironment detect_launch();

}  // namespace selfsup
