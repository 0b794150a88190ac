#!/usr/bin/env bash
# Pipeline bubble, as retnet-train logs it (pipeline_idle: the time in the schedule
# not spent in forward or backward, mean of the stages) beside the schedule's bubble
# for equal op times.
#  (1) 1F1B: PP=2 on 2 ranks x 1 thread, a model of 4 layers (d=256, T=512,
#      micro-batch 1) split 2 + 2, for m = 1, 2, 4, 8 micro-batches per step, against
#      (P-1)/(m+P-1).
#  (2) plain against interleaved 1F1B: PP=4 over 8 layers, m = 8, plain (2 layers per
#      stage) and with --num-layers-per-virtual-pipeline-stage 1 (2 chunks of 1 layer
#      per rank, 8 virtual stages), against (P-1)/(vm+P-1): 27% and 16%. Four ranks
#      on fewer cores share them, so the measured idle then includes the time a
#      stage waits for a core, not only for its neighbours.
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

# idle_row NAME LABEL BUBBLE: a table row from the last metrics line of run NAME
idle_row() {
	tail -n 1 "$T/$1.jsonl" | awk -v label="$2" -v bubble="$3" '{
		match($0, /"pipeline_idle":[^,}]*/); idle = substr($0, RSTART + 16, RLENGTH - 16)
		match($0, /"tokens_per_sec":[^,}]*/); tps = substr($0, RSTART + 17, RLENGTH - 17)
		printf "| %s | %.3f | %.3f | %.0f |\n", label, idle, bubble, tps }'
}

# train NAME RANKS [flags]
train() {
	local name=$1 ranks=$2
	shift 2
	mpirun -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
		"$BUILD/retnet-train" --hidden-size 256 --num-heads 4 --seq-length 512 \
		--chunk-size 64 --micro-batch-size 1 --train-iters "$ITERS" \
		--log-interval "$((ITERS - 2))" --lr 1e-3 --data-path "$CORPUS-train.bin" \
		--metrics "$T/$name.jsonl" "$@" >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; exit 1; }
}

echo "| micro-batches m | measured idle | 1F1B (P-1)/(m+P-1) | tokens/s |"
echo "|---|---|---|---|"
for m in 1 2 4 8; do
	train "m$m" 2 --num-layers 4 --global-batch-size "$m" --pipeline-model-parallel-size 2
	idle_row "m$m" "$m" "$(awk -v m="$m" 'BEGIN { print 1 / (m + 1) }')"
done

echo
echo "PP=4 over 8 layers, 8 micro-batches per step:"
echo "| schedule | measured idle | (P-1)/(vm+P-1) | tokens/s |"
echo "|---|---|---|---|"
train plain 4 --num-layers 8 --global-batch-size 8 --pipeline-model-parallel-size 4
idle_row plain "1F1B, 2 layers per stage" "$(awk 'BEGIN { print 3 / 11 }')"
train interleaved 4 --num-layers 8 --global-batch-size 8 --pipeline-model-parallel-size 4 \
	--num-layers-per-virtual-pipeline-stage 1
idle_row interleaved "interleaved 1F1B, 2 chunks of 1 layer" "$(awk 'BEGIN { print 3 / 19 }')"
