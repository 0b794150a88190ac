#!/usr/bin/env bash
# Data parallelism against the single-rank run on the same seed and data: the same
# global batch on 1 rank (2 micro-batches accumulated), on DP=2 (1 micro-batch each)
# and on DP=2 with 2 micro-batches each gives the same 10 losses within 1e-5
# relative and the same parameters afterwards within 5e-5 of the largest magnitude
# (measured 7e-6: AdamW divides by sqrt(v), so entries whose gradient is near zero
# turn summation-order differences into visible ones; a DP bug moves them by 1e-3+).
# Usage: train_dp.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_dp.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_train_dp.XXXXXX)
trap 'rm -rf "$T"' EXIT
MPIEXEC=${MPIEXEC:-mpiexec}
read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
COMMON=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--seq-length 32 --chunk-size 8 --global-batch-size 8 --train-iters 10 --lr 3e-3
	--lr-warmup-iters 2 --seed 7 --log-interval 1)
export OMP_NUM_THREADS=1

run() { # run NAME RANKS MICRO
	"$MPIEXEC" -n "$2" "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" \
		--micro-batch-size "$3" --metrics "$T/$1.jsonl" --save-raw-params "$T/$1.params" \
		>"$T/$1.log" 2>&1 || { cat "$T/$1.log" >&2; return 1; }
	json_column "$T/$1.jsonl" loss >"$T/$1.loss"
	json_column "$T/$1.jsonl" grad_norm >"$T/$1.gnorm"
}

check "single rank, 2 micro-batches of 4" run ref 1 4
check "DP=2, 1 micro-batch of 4 each" run dp2 2 4
check "DP=2, 2 micro-batches of 2 each" run dp2acc 2 2
check "10 losses logged" test "$(wc -l <"$T/ref.loss")" -eq 10
for run in dp2 dp2acc; do
	check "$run losses = single-rank losses (1e-5 rel)" close_columns "$T/$run.loss" "$T/ref.loss" 1e-5
	# AdamW barely sees a gradient scaled by a constant: the norm does.
	check "$run gradient norms = single-rank norms (1e-4 rel)" \
		close_columns "$T/$run.gnorm" "$T/ref.gnorm" 1e-4
	check "$run parameters = single-rank parameters" \
		"$BUILD/tests/cmp_floats" "$T/$run.params" "$T/ref.params" 5e-5
done
check "the loss falls" awk 'NR==1{a=$1} END{exit !($1 < a - 0.3)}' "$T/ref.loss"
finish
