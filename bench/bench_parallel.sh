#!/usr/bin/env bash
# Tensor and data parallelism on this machine: bench-small (d=512, L=6, H=4,
# f=1024, C=128), global batch 4 x 2048 tokens, the whole training step (forward,
# backward, all-reduces, AdamW), in four layouts on the same cores:
#   1 rank x 2 threads | 2 ranks x 1 thread, DP=2 | 2 ranks x 1 thread, TP=2 |
#   1 rank x 1 thread (for reference)
# Prints tokens/s, MFU (against the sgemm ceiling every rank measures at start-up)
# and the communication time per step that was not hidden behind compute: TP
# all-reduces and the wait for the DP gradient buckets.
# Usage: bench/bench_parallel.sh [BUILD_DIR] [ITERS]   (needs the KJV shards; it
# makes them in BUILD_DIR/bench-corpus if missing)
set -euo pipefail
BUILD=${1:-build}
ITERS=${2:-6}
cd "$(dirname "$0")/.."
CORPUS=$BUILD/bench-corpus/kjv
[[ -f $CORPUS-train.bin ]] || bash tests/cli/make_corpus.sh "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MODEL=(--num-layers 6 --hidden-size 512 --num-heads 4 --ffn-hidden-size 1024
	--seq-length 2048 --chunk-size 128 --global-batch-size 4 --train-iters "$ITERS"
	--log-interval "$((ITERS - 2))" --lr 1e-3 --data-path "$CORPUS-train.bin")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

run() { # run LABEL RANKS THREADS MICRO TP
	# The first log interval (ITERS-2 steps) includes warm-up; the last 2 steps count.
	mpirun -n "$2" --bind-to none -x OMP_NUM_THREADS="$3" "$BUILD/retnet-train" "${MODEL[@]}" \
		--micro-batch-size "$4" --tensor-model-parallel-size "$5" --metrics "$T/$1.jsonl" \
		>"$T/$1.log" 2>&1 || { cat "$T/$1.log"; exit 1; }
	tail -n 1 "$T/$1.jsonl" | awk -v label="$1" '{
		match($0, /"tokens_per_sec":[^,}]*/); tps = substr($0, RSTART + 17, RLENGTH - 17)
		match($0, /"mfu":[^,}]*/); mfu = substr($0, RSTART + 6, RLENGTH - 6)
		match($0, /"tp_allreduce_ms":[^,}]*/); tp = substr($0, RSTART + 18, RLENGTH - 18)
		match($0, /"dp_wait_ms":[^,}]*/); dp = substr($0, RSTART + 13, RLENGTH - 13)
		printf "| %-26s | %8.0f | %5.1f%% | %8.0f | %8.0f |\n", label, tps, 100 * mfu, tp, dp }'
}

echo "| layout                     | tokens/s |   MFU  | TP ms/step | DP wait ms/step |"
echo "|---|---|---|---|---|"
run "1 rank x 2 threads" 1 2 4 1
run "2 ranks x 1 thread, DP=2" 2 1 2 1
run "2 ranks x 1 thread, TP=2" 2 1 4 2
run "1 rank x 1 thread" 1 1 4 1
