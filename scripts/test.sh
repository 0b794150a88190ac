#!/usr/bin/env bash
# Installs what is missing, builds the Release and the sanitizer (ASan+UBSan) trees,
# and runs the test suite through CTest: every test in the Release tree, the unit
# tests (fuzz replays included) and a tiny 2-rank train/resume/eval run again under
# the sanitizers. This is the command README.md gives and CI runs.
# Usage: scripts/test.sh [extra ctest args, e.g. -L unit or -R model]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Sanitize
cmake --build build-sanitize -j"$jobs"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== tests (Release)"
ctest --test-dir build --output-on-failure "$@"
echo "== unit tests and a 2-rank run (ASan+UBSan)"
ctest --test-dir build-sanitize --output-on-failure -L 'unit|sanitize' "$@"
