#!/usr/bin/env bash
# Pipeline bubble: PP=2 on 2 ranks x 1 thread, a model of 4 layers (d=256, T=512,
# micro-batch 1) split 2 + 2, for m = 1, 2, 4, 8 micro-batches per step. The
# measured idle fraction (time in the schedule not spent in forward or backward,
# mean of the stages) beside 1F1B's (P-1)/(m+P-1) for equal stage times.
# Usage: bench/bench_pipeline.sh [BUILD_DIR] [ITERS]
set -euo pipefail
BUILD=${1:-build}
ITERS=${2:-6}
cd "$(dirname "$0")/.."
CORPUS=$BUILD/bench-corpus/kjv
[[ -f $CORPUS-train.bin ]] || bash tests/cli/make_corpus.sh "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

echo "| micro-batches m | measured idle | 1F1B (P-1)/(m+P-1) | tokens/s |"
echo "|---|---|---|---|"
for m in 1 2 4 8; do
	mpirun -n 2 --bind-to none -x OMP_NUM_THREADS=1 "$BUILD/retnet-train" \
		--num-layers 4 --hidden-size 256 --num-heads 4 --seq-length 512 --chunk-size 64 \
		--micro-batch-size 1 --global-batch-size "$m" --pipeline-model-parallel-size 2 \
		--train-iters "$ITERS" --log-interval "$((ITERS - 2))" --lr 1e-3 \
		--data-path "$CORPUS-train.bin" --metrics "$T/m$m.jsonl" >"$T/m$m.log" 2>&1 ||
		{ cat "$T/m$m.log"; exit 1; }
	tail -n 1 "$T/m$m.jsonl" | awk -v m="$m" '{
		match($0, /"pipeline_idle":[^,}]*/); idle = substr($0, RSTART + 16, RLENGTH - 16)
		match($0, /"tokens_per_sec":[^,}]*/); tps = substr($0, RSTART + 17, RLENGTH - 17)
		printf "| %d | %.3f | %.3f | %.0f |\n", m, idle, 1 / (m + 1), tps }'
done
