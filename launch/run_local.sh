#!/usr/bin/env bash
# Runs selfsup on N ranks of this machine through mpirun (MPI backend on CPUs).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/run_local.sh -n N CONFIG [--set key.path=value ...] [other selfsup train options]

Runs `mpirun -np N build/selfsup train CONFIG ...` on this machine. Adds --oversubscribe only when N
exceeds the cores, and --allow-run-as-root only when run as root; gives each rank an equal share
of the cores (train.threads) unless the command line sets it.
USAGE
}

ranks=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n|-np) ranks=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "run_local.sh: -n N (a positive number of ranks) is required; see --help" >&2; exit 2; }
[[ ${#args[@]} -ge 1 ]] || { echo "run_local.sh: CONFIG is required; see --help" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SELFSUP_BIN:-${SELFSUP_BUILD_DIR:-$root/build}/selfsup}
[[ -x "$bin" ]] || { echo "run_local.sh: $bin is not built; run launch/build.sh first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "run_local.sh: mpirun not found; run launch/setup.sh" >&2; exit 1; }

cores=$(nproc)
mpi=(mpirun -np "$ranks")
[[ $ranks -gt $cores ]] && mpi+=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && mpi+=(--allow-run-as-root)
threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
sets=()
[[ " ${args[*]} " == *" train.threads="* ]] || sets=(--set "train.threads=$threads")

echo "[run_local] ${mpi[*]} $bin train ${args[*]} ${sets[*]}"
exec "${mpi[@]}" "$bin" train "${args[@]}" "${sets[@]}"
