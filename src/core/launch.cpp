#include "selfsup/core/launch.h"

#include <cstdlib>

namespace selfsup {
namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  return (end != nullptr && *end == '\0') ? static_cast<int>(parsed) : fallback;
}

}  // namespace

LaunchEnvironment detect_launch() {
  LaunchEnvironment env;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) {
    env.launcher = "mpirun";
    env.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    env.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    env.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
    env.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (std::getenv("SLURM_PROCID") != nullptr && std::getenv("SLURM_NTASKS") != nullptr) {
    env.launcher = "srun";
    env.world_size = env_int("SLURM_NTASKS", 1);
    env.rank = env_int("SLURM_PROCID", 0);
    env.local_rank = env_int("SLURM_LOCALID", -1);
    env.local_size = env_int("SLURM_NTASKS_PER_NODE", 1);
  }
  return env;
}

std::string user_cache_dir() {
  // The XDG base-directory spec ignores a relative XDG_CACHE_HOME.
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg == '/') return std::string(xdg) + "/selfsup";
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return std::string(home) + "/.cache/selfsup";
  return "";
}

}  // namespace selfsup
