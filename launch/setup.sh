#!/usr/bin/env bash
# Installs every Debian package selfsup needs. Idempotent: packages already installed are skipped,
# and apt is not touched at all when nothing is missing.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/setup.sh [--help]

Installs the Debian packages selfsup needs to build, test and run (LibTorch, Open MPI, OpenCV,
nlohmann-json, spdlog, CLI11, GoogleTest, zlib, Fashion-MNIST, Python PyTorch for reference
benchmarks, OpenBLAS, gnuplot for plots, ccache). Runs apt-get only for what is missing.
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
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[setup] all ${#packages[@]} packages already installed"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "[setup] error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi

echo "[setup] installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

# Make sure libblas.so.3 resolves to OpenBLAS rather than the reference BLAS.
if command -v update-alternatives >/dev/null; then
  blas=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -m1 openblas || true)
  if [[ -n "$blas" ]]; then
    "${sudo_cmd[@]}" update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null
    echo "[setup] libblas.so.3 -> $blas"
  fi
fi
echo "[setup] done"
