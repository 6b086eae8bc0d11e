#!/usr/bin/env bash
# Runs selfsup on N ranks of this machine through mpirun (MPI backend on CPUs).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/run_local.sh -n N CONFIG [--set key.path=value ...] [other selfsup train options]

Runs `mpirun -np N build/selfsup train CONFIG ...` on this machine. Adds --oversubscribe only when N
exceeds the cores, and --allow-run-as-root only when run as root; gives each rank an equal share
of the cores (train.threads) unless the command line sets it.

A multi-GPU workstation: one rank per GPU, NCCL between them, rank r on cuda:r, e.g.
  launch/run_local.sh -n 4 configs/fashion_mnist_resnet18.json --set device=cuda
(with device=cuda, N must not exceed the GPUs nvidia-smi lists; CUDA_VISIBLE_DEVICES picks them).
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

if [[ " ${args[*]} " == *" device=cuda"* ]] && command -v nvidia-smi >/dev/null; then
  gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    gpus=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
  fi
  if [[ $ranks -gt $gpus ]]; then
    echo "run_local.sh: -n $ranks ranks with device=cuda, but this machine shows $gpus GPU(s); use -n $gpus or fewer (one rank per GPU)" >&2
    exit 2
  fi
fi

cores=$(nproc)
mpi=(mpirun -np "$ranks")
[[ $ranks -gt $cores ]] && mpi+=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && mpi+=(--allow-run-as-root)
threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
sets=()
[[ " ${args[*]} " == *" train.threads="* ]] || sets=(--set "train.threads=$threads")

echo "[run_local] ${mpi[*]} $bin train ${args[*]} ${sets[*]}"
exec "${mpi[@]}" "$bin" train "${args[@]}" "${sets[@]}"
