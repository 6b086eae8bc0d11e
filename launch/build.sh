#!/usr/bin/env bash
# Configures and builds selfsup (library, `selfsup` executable and tests) into build/.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/build.sh [--help] [--no-setup] [-- CMAKE_ARGS...]

Runs launch/setup.sh (unless --no-setup), then configures and builds into $SELFSUP_BUILD_DIR
(default: build/). Extra arguments after -- go to cmake, e.g. -- -DTorch_DIR=/opt/libtorch/share/cmake/Torch
USAGE
}

setup=1
cmake_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-setup) setup=0; shift ;;
    --) shift; cmake_args+=("$@"); break ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SELFSUP_BUILD_DIR:-$root/build}
jobs=${SELFSUP_JOBS:-$(nproc)}

[[ $setup -eq 1 ]] && "$root/launch/setup.sh"

echo "[build] configuring $build_dir"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" >"$build_dir.cmake.log" 2>&1 \
  || { cat "$build_dir.cmake.log" >&2; echo "[build] cmake failed" >&2; exit 1; }
echo "[build] compiling with $jobs jobs"
SECONDS=0
cmake --build "$build_dir" -j "$jobs"
echo "[build] done in ${SECONDS}s: $build_dir/selfsup"
