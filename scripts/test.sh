#!/usr/bin/env bash
# Installs what is missing, builds the Release and the sanitizer (ASan+UBSan) trees,
# and runs the test suite through CTest: every test in the Release tree, the unit
# tests (fuzz replays included) and a tiny 2-rank train/resume/eval run again under
# the sanitizers. This is the command README.md gives and CI runs.
# Then it builds the clang libFuzzer tree and runs each fuzz target for
# RETNET_FUZZ_SECONDS (15 s; about 2 minutes in all, build included);
# RETNET_TEST_FUZZ=0 leaves that out.
# Usage: scripts/test.sh [extra ctest args, e.g. -L unit or -R model]
# The slurm-labelled tests (jobs/ on a one-node SLURM, and on a 4-node one across
# emulated nodes, which they start themselves: root) are on; RETNET_TEST_SLURM=OFF
# in the environment leaves them out. The cluster-labelled tests (2 to 4 nodes
# emulated with network namespaces: mpirun across them, node failures, network
# partitions) run as root and skip, saying why, where namespaces cannot be made.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz=${RETNET_TEST_FUZZ:-1}
if [ "$fuzz" = 1 ]; then scripts/install-deps.sh --with-fuzz; else scripts/install-deps.sh; fi
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRETNET_TEST_SLURM="${RETNET_TEST_SLURM:-ON}"
cmake --build build -j"$jobs"
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Sanitize
cmake --build build-sanitize -j"$jobs"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== tests (Release)"
ctest --test-dir build --output-on-failure "$@"
echo "== unit tests and a 2-rank run (ASan+UBSan)"
ctest --test-dir build-sanitize --output-on-failure -L 'unit|sanitize' "$@"
if [ "$fuzz" = 1 ]; then
  echo "== libFuzzer targets (clang, ASan+UBSan)"
  CC=clang cmake -S . -B build-fuzz -DRETNET_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRETNET_FUZZ_SECONDS="${RETNET_FUZZ_SECONDS:-15}"
  cmake --build build-fuzz -j"$jobs" --target fuzz_config fuzz_shard fuzz_ckpt_meta
  ctest --test-dir build-fuzz --output-on-failure -L '^fuzz$'
fi
