#!/usr/bin/env bash
# A tiny end-to-end run on 2 ranks for the sanitizer tree (ASan + UBSan + LSan):
# retnet-prep on a few chapters, 3 iterations at DP=2 saved, resumed at TP=2 to
# iteration 5 and saved again, then retnet-eval of that checkpoint at PP=2, and
# retnet-generate at TP=2; and 2 iterations of 4 layers on PP=2 virtual stages
# (interleaved 1F1B, recomputing activations, a held-out estimate). Passes when
# every step exits 0 and no sanitizer said
# anything (a report aborts the rank, and mpiexec fails, but the output is also
# searched, in case a report does not change the exit status).
# Seconds in the Release tree; about a minute under the sanitizers.
# Usage: train_tiny.sh BUILD_DIR
set -u
BUILD=${1:?usage: train_tiny.sh BUILD_DIR}
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_tiny.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
MPI=("${MPIEXEC:-mpiexec}" -n 2 ${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none})
MODEL=(--num-layers 2 --hidden-size 32 --num-heads 2 --seq-length 16 --chunk-size 8
	--micro-batch-size 2 --global-batch-size 4 --lr 3e-3 --seed 7 --eval-iters 1)

# step LABEL CMD...: runs CMD with its output in $T/log.N, passes on exit 0 and a
# clean output
n=0
step() {
	local label=$1 log
	shift
	n=$((n + 1))
	log="$T/log.$n"
	"$@" >"$log" 2>&1
	local rc=$?
	if [[ $rc -ne 0 ]] || grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: [A-Za-z]*Sanitizer" "$log"; then
		bad "$label (exit $rc)"
		head -c 20000 "$log" >&2
	else
		ok "$label"
	fi
}

bible -f Gen1:1-Gen11:32 >"$T/text.txt"
step "retnet-prep" "$BUILD/data/retnet-prep" --output-prefix "$T/c" "$T/text.txt"
step "train 3 iterations, DP=2, save" "${MPI[@]}" "$BUILD/retnet-train" "${MODEL[@]}" \
	--data-path "$T/c-train.bin" --valid-data-path "$T/c-valid.bin" --train-iters 3 \
	--save "$T/ckpt" --metrics "$T/m1.jsonl"
step "resume to 5 at TP=2, save" "${MPI[@]}" "$BUILD/retnet-train" "${MODEL[@]}" \
	--data-path "$T/c-train.bin" --train-iters 5 --tensor-model-parallel-size 2 \
	--load "$T/ckpt" --save "$T/ckpt" --keep-last 1
check "iteration 5 is latest" grep -qx 5 "$T/ckpt/latest"
step "retnet-eval at PP=2" "${MPI[@]}" "$BUILD/retnet-eval" --load "$T/ckpt" \
	--data "$T/c-valid.bin" --pipeline-model-parallel-size 2 --output "$T/eval.jsonl"
check "eval wrote its line" grep -q bits_per_byte "$T/eval.jsonl"
step "retnet-generate at TP=2" "${MPI[@]}" "$BUILD/retnet-generate" --load "$T/ckpt" \
	--prompt "In the" --max-new-tokens 16 --tensor-model-parallel-size 2
step "interleaved 1F1B on PP=2 virtual stages" "${MPI[@]}" "$BUILD/retnet-train" "${MODEL[@]}" \
	--data-path "$T/c-train.bin" --valid-data-path "$T/c-valid.bin" --train-iters 2 \
	--num-layers 4 --micro-batch-size 1 --pipeline-model-parallel-size 2 \
	--num-layers-per-virtual-pipeline-stage 1 --recompute-activations
finish
