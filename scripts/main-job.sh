#!/usr/bin/env bash
# The main job on the built-in default corpus: installs what is missing, builds, and
# runs what exists of the pipeline. See README.md ("Status") for what each step is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

echo "== one training step of bench-small on one rank (forward + backward)"
OMP_NUM_THREADS=$(nproc) ./build/retnet-bench-step --config bench-small --steps 2
