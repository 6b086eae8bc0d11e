#!/usr/bin/env bash
# Sets up, builds and runs every test (unit tests, command-line tests) with CTest.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/test.sh [--help] [CTEST_ARGS...]

Installs what is missing (launch/setup.sh), builds into build/ (launch/build.sh) and runs all tests:
  ctest --output-on-failure [CTEST_ARGS...]   e.g. launch/test.sh -R Config
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SELFSUP_BUILD_DIR:-$root/build}

"$root/launch/build.sh"
echo "[test] running tests"
SECONDS=0
cd "$build_dir"
ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"
echo "[test] all tests passed in ${SECONDS}s"
