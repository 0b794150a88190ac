#!/usr/bin/env bash
# Evaluation throughput of each retention form at bench-small (d=512, L=6, H=4,
# f=1024, T=2048, C=128): a bench-small checkpoint is made with one training step,
# then retnet-eval scores 64k tokens of the KJV in windows (micro-batch 4) with the
# chunkwise, parallel and recurrent forms, and as one stream (chunkwise), on 1 rank
# x THREADS threads. Prints tokens/s per form (the nll must agree too), and the
# ratio to training tokens/s of the same model and batch (retnet-bench-step, forward
# + backward + AdamW) measured in the same run.
# Usage: bench/bench_eval.sh [BUILD_DIR] [THREADS]
set -euo pipefail
BUILD=${1:-build}
THREADS=${2:-2}
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS="$THREADS"
bible -f Gen1:1-Rev22:21 >"$T/kjv.txt"
head -c 65537 "$T/kjv.txt" >"$T/eval.txt"
"$BUILD/data/retnet-prep" --output-prefix "$T/c" "$T/kjv.txt" >/dev/null
"$BUILD/retnet-train" --data-path "$T/c-train.bin" --num-layers 6 --hidden-size 512 \
	--num-heads 4 --ffn-hidden-size 1024 --seq-length 2048 --chunk-size 128 \
	--micro-batch-size 1 --train-iters 1 --save "$T/ck" >"$T/train.log" 2>&1
echo "| mode | form | tokens/s | nll |"
echo "|---|---|---|---|"
for run in "windows chunkwise" "windows parallel" "windows recurrent" "stream chunkwise"; do
	read -r mode form <<<"$run"
	"$BUILD/retnet-eval" --load "$T/ck" --data "$T/eval.txt" --mode "$mode" --form "$form" \
		--micro-batch-size 4 --output "$T/o.jsonl" >"$T/eval.log" 2>&1
	awk -v m="$mode" -v f="$form" '$1 ~ /eval.txt$/ { printf "| %s | %s | %s | %s |\n", m, f, $7, $4 }' "$T/eval.log" |
		tee -a "$T/table"
done
train_tps=$("$BUILD/retnet-bench-step" --config bench-small --steps 2 | grep -o '"tokens_per_sec":[0-9.]*' | cut -d: -f2)
awk -v t="$train_tps" -F'|' '$3 ~ /chunkwise/ && $2 ~ /windows/ {
	printf "training (bench-small step, fwd+bwd+AdamW): %.0f tokens/s; evaluation, windows, chunkwise: %.0f tokens/s = %.2fx\n", t, $4, $4 / t }' "$T/table"
