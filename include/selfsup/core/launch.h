#pragma once
// Launch detection: what the launcher (mpirun, srun) tells a process about its place in the job,
// and the user's cache folder.
// This is the one file of the library that reads the environment (STYLE.md rule 4).

#include <string>

namespace selfsup {

struct LaunchEnvironment {
  int world_size = 1;             // processes in the job, from the launcher (1 when not launched)
  int rank = 0;                   // this process's rank, from the launcher
  int local_rank = -1;            // rank on this node, from the launcher (-1 when it does not say)
  int local_size = 1;             // processes on this node, from the launcher
  std::string launcher = "none";  // "mpirun", "srun" or "none"
};

/// Reads OMPI_COMM_WORLD_{SIZE,RANK,LOCAL_RANK,LOCAL_SIZE} (Open MPI's mpirun), or
/// SLURM_{NTASKS,PROCID,LOCALID} and SLURM_NTASKS_PER_NODE (srun).
LaunchEnvironment detect_launch();

/// The per-user cache folder for selfsup: $XDG_CACHE_HOME/selfsup, else $HOME/.cache/selfsup, else
/// "" (nowhere). Dataset indexes go there when the data folder is read-only.
std::string user_cache_dir();

}  // namespace selfsup
