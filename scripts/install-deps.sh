#!/usr/bin/env bash
# Installs what retnet needs from Debian 12's packages. Idempotent: packages already
# present are skipped, so a second run does nothing but check.
# Usage: scripts/install-deps.sh [--with-torch] [--with-fuzz]
#   --with-torch: PyTorch, to regenerate fixtures and for the PyTorch baseline of
#   bench/bench_vs_torch.sh and bench/bench_quality.sh. libopenblas0-pthread: without
#   it torch's float32 matmuls go to Debian's reference BLAS (netlib), 10x or more
#   slower; the benchmark scripts run torch on OpenBLAS when it is installed. The
#   other BLAS builds are the ones bench/bench_torch_configs.sh tries.
#   --with-fuzz: clang and libFuzzer's runtime for the -DRETNET_FUZZ=ON tree
#   (docs/fuzzing.md)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers
  libhdf5-openmpi-dev hdf5-tools
  zlib1g-dev
  # GPT-2's tokenizer: tokenizer.json and vocab.json (data/gpt2bpe_load.c), and
  # its Unicode pre-tokenizer pattern (data/gpt2bpe.c)
  libjansson-dev libpcre2-dev
  bible-kjv
  gnuplot-nox
  # Test dependency: the slurm-labelled test (tests/slurm/) runs jobs/ on a one-node
  # SLURM it starts itself. Installing them starts no daemon that needs systemd:
  # slurmd's and slurmctld's init scripts exit 0 without /etc/slurm/slurm.conf, and
  # munge's starts a system munged only where invoke-rc.d allows it (not in Docker,
  # whose policy-rc.d exits 101); the test runs its own munged either way.
  slurmctld slurmd slurm-client munge
  # Test dependency: the cluster-labelled tests (tests/cluster/) make emulated nodes
  # with network namespaces, a bridge and veths (ip), and look at processes (ps).
  iproute2 procps
  valgrind
)
for arg in "$@"; do
  case "$arg" in
    --with-torch) packages+=(python3-torch python3-numpy libopenblas0-pthread libopenblas0-openmp
      libblis4-pthread libblis4-openmp) ;;
    --with-fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps: unknown argument $arg" >&2; exit 2 ;;
  esac
done

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
