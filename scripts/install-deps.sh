#!/usr/bin/env bash
# Installs what retnet needs from Debian 12's packages. Idempotent: packages already
# present are skipped, so a second run does nothing but check.
# Usage: scripts/install-deps.sh [--with-torch]
#   --with-torch: PyTorch, to regenerate fixtures and for the PyTorch baseline of
#   bench/bench_vs_torch.sh and bench/bench_quality.sh. libopenblas0-pthread: without
#   it torch's float32 matmuls go to Debian's reference BLAS (netlib), 10x or more
#   slower; the benchmark scripts run torch on OpenBLAS when it is installed.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers
  libhdf5-openmpi-dev hdf5-tools
  zlib1g-dev
  bible-kjv
  gnuplot-nox
)
[ "${1:-}" = "--with-torch" ] && packages+=(python3-torch python3-numpy libopenblas0-pthread)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
