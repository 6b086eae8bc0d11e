#!/usr/bin/env bash
# The main job: set up, build, pretrain SimCLR on Fashion-MNIST, run the transfer stage and print the
# results table.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/quickstart.sh [--help] [CONFIG] [--set key.path=value ...]

Sets up and builds selfsup, then runs
  build/selfsup train CONFIG --run-dir runs/quickstart [--set ...]
(default CONFIG: configs/fashion_mnist_simclr.json): pretraining, then the transfer stage (linear
probe, kNN, fine-tuning with 1/10/100 % of the labels, baselines). The results table is printed
at the end and saved in runs/quickstart/transfer/results.json (plot: results.png beside it).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SELFSUP_BUILD_DIR:-$root/build}
config=configs/fashion_mnist_simclr.json
if [[ $# -gt 0 && "$1" != --* ]]; then config=$(realpath "$1"); shift; fi

"$root/launch/build.sh"
cd "$root"
echo "[quickstart] $build_dir/selfsup train $config --run-dir runs/quickstart $*"
SECONDS=0
"$build_dir/selfsup" train "$config" --run-dir runs/quickstart "$@"
echo "[quickstart] finished in ${SECONDS}s; run directory: runs/quickstart"
