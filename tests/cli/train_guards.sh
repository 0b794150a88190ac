#!/usr/bin/env bash
# The guards of a long run, driven by --inject-fault on the last rank only:
# a NaN gradient on one rank makes every rank skip that step (one decision) and go
# on; --max-skipped-iters NaN steps in a row end the run with exit 2; a parameter
# perturbed on one data-parallel replica is caught by the hash check, which names
# that rank; the check finds nothing on clean runs (DP 3, DP 2 x TP 2).
# Usage: train_guards.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_guards.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup guards
export OMP_NUM_THREADS=1
train() { # train NP ARGS...
	local np=$1
	shift
	timeout 120 "$MPIEXEC" -n "$np" "${MPI_EXTRA[@]}" "$BUILD/retnet-train" \
		--data-path "$CORPUS-train.bin" --hidden-size 32 --num-heads 2 "$@"
}
last_value() { json_column "$1" "$2" | tail -n 1; }

# One NaN step on rank 1 of a DP 2 run: skipped everywhere, the run goes on.
train 2 --train-iters 6 --inject-fault nan-grad@3 --metrics "$T/nan.jsonl" \
	>"$T/nan.out" 2>"$T/nan.err"
check "one NaN step: exit 0" test $? -eq 0
check "one NaN step: one warning, from one rank" \
	test "$(grep -c 'iteration 3: .*not finite, step skipped (1 in a row, 1 in all' "$T/nan.err")" -eq 1
check "one NaN step: its loss is null in the metrics" \
	test "$(json_column "$T/nan.jsonl" loss | sed -n 3p)" = null
check "one NaN step: counted (skipped_iters 1 at the end)" \
	test "$(last_value "$T/nan.jsonl" skipped_iters)" = 1
check "one NaN step: later losses finite" \
	grep -qE '"iteration":6,"loss":[0-9]' "$T/nan.jsonl"

# NaN at every step from 4 on, PP 2 x DP 2, checkpoints every 2 steps.
train 4 --pipeline-model-parallel-size 2 --train-iters 30 --inject-fault nan-grad@4-30 \
	--max-skipped-iters 3 --save "$T/ck" --save-interval 2 >"$T/div.out" 2>"$T/div.err"
rc=$?
check "diverged: exit 2" test "$rc" -eq 2
check "diverged: one error line naming --max-skipped-iters" \
	test "$(grep -c '^retnet: error: --max-skipped-iters: 3 steps in a row .*iteration 6' "$T/div.err")" -eq 1
check "diverged: the last checkpoint is the last one due (iteration 4)" \
	grep -qx 4 "$T/ck/latest"

# A parameter of rank 3 (DP 2 x TP 2) perturbed after step 3; checked every 2 steps.
train 4 --tensor-model-parallel-size 2 --train-iters 8 --inject-fault drift@3 \
	--check-weight-hash-across-dp-replicas-interval 2 >"$T/drift.out" 2>"$T/drift.err"
rc=$?
check "drift: exit 2" test "$rc" -eq 2
check "drift: caught at the next check, naming rank 3" \
	grep -q '^retnet: error: --check-weight-hash-across-dp-replicas-interval: at iteration 4 rank 3 ' \
	"$T/drift.err"

# No false alarm: replicas stay bit-identical through the real all-reduce.
train 3 --train-iters 12 --check-weight-hash-across-dp-replicas-interval 1 >"$T/c3.out" 2>&1
check "clean DP 3, checked every step: exit 0" test $? -eq 0
train 4 --tensor-model-parallel-size 2 --train-iters 12 \
	--check-weight-hash-across-dp-replicas-interval 1 >"$T/c4.out" 2>&1
check "clean DP 2 x TP 2, checked every step: exit 0" test $? -eq 0

expect_user_error "bad --inject-fault" "--inject-fault: 'nan@3' is not KIND@ITER" \
	"$BUILD/retnet-train" --data-path "$CORPUS-train.bin" --inject-fault nan@3
finish
