#!/usr/bin/env bash
# Installs every Debian package selfsup needs. Idempotent: packages already installed are skipped,
# and apt is not touched at all when nothing is missing.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/setup.sh [--help]

Installs the Debian packages selfsup needs to build, test and run (LibTorch, Open MPI, OpenCV,
nlohmann-json, spdlog, CLI11, GoogleTest, zlib, Fashion-MNIST, Python PyTorch for reference
benchmarks, OpenBLAS, gnuplot for plots, jq for sweeps, ccache, clang and libFuzzer for the fuzz
test). Runs apt-get only for what is missing.
Needs root or sudo when something is missing.
USAGE
}
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { usage; exit 0; }

packages=(
  build-essential cmake pkg-config ccache git
  libtorch-dev
  libopenmpi-dev openmpi-bin
  libopencv-dev
  nlohmann-json3-dev libspdlog-dev libcli11-dev
  libgtest-dev
  zlib1g-dev
  dataset-fashion-mnist
  python3-torch python3-numpy
  # Debian's LibTorch links libblas.so.3; without OpenBLAS that is the slow reference BLAS.
  libopenblas0-pthread
  gnuplot-nox
  # launch/sweep.sh expands sweep specs and collects results with jq.
  jq
  # tests/cli/fuzz_safetensors_test.sh: clang with its libFuzzer and sanitizer runtimes.
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[setup] all ${#packages[@]} packages already installed"
else
  if [[ ${#sudo_cmd[@]} -gt 0 ]] && ! command -v sudo >/dev/null; then
    echo "[setup] error: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
  echo "[setup] installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libblas.so.3 must resolve to OpenBLAS, not the reference BLAS (Debian's alternatives decide).
# (awk reads to the end: exiting early would SIGPIPE update-alternatives, which pipefail turns
# into a random failure of this script)
blas_alt=$(update-alternatives --get-selections 2>/dev/null | awk '$1 ~ /^libblas\.so\.3/ && !n++ {print $1}')
if [[ -n "$blas_alt" ]]; then
  current=$(update-alternatives --query "$blas_alt" | awk '/^Value:/ {print $2}')
  if [[ "$current" != *openblas* ]]; then
    openblas=$(update-alternatives --list "$blas_alt" | awk '/openblas/ && !n++' || true)
    if [[ -n "$openblas" ]]; then
      "${sudo_cmd[@]}" update-alternatives --set "$blas_alt" "$openblas" >/dev/null
      echo "[setup] libblas.so.3 -> $openblas"
    else
      echo "[setup] warning: libblas.so.3 is $current (slow); OpenBLAS is not registered" >&2
    fi
  fi
fi
echo "[setup] done"
