#!/usr/bin/env bash
# The matmul ceiling that retnet-train's MFU is against, on 2 ranks (DP=2): a log
# line measures it again when that costs at most 1% of the time since the last
# measurement, and the ceiling is the best of the measurements.
#   - A cheap measurement (RETNET_CEILING_SIZE=16: 3-6 ms the first time, for
#     oneDNN's JIT, on a loaded machine, then about 0.1 ms) is due again at the later
#     of the 6 lines, whose 5 steps take about 0.4 s: 3 measurements at least (the
#     first line is due when the first measurement took up to 4 ms, the fifth up to
#     20), a ceiling in the metrics that never falls, and each line's MFU against
#     that line's ceiling.
#   - The default one (a 1024^3 product, 60 ms and more) is not due again in a run
#     of about 3 s: 1 measurement.
# Usage: train_mfu.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_mfu.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup mfu
export OMP_NUM_THREADS=1
train() { # train METRICS ARGS...
	local metrics=$1
	shift
	timeout 120 "$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" \
		--data-path "$CORPUS-train.bin" --hidden-size 64 --num-heads 2 --num-layers 2 \
		--seq-length 2048 --chunk-size 16 --micro-batch-size 1 --global-batch-size 2 \
		--train-iters 30 --log-interval 5 --metrics "$metrics" "$@"
}
measurements() { sed -n 's/.*the best of \([0-9]*\) measurements.*/\1/p' "$1"; }

RETNET_CEILING_SIZE=16 train "$T/cheap.jsonl" >"$T/cheap.out" 2>&1
check "cheap ceiling: exit 0" test $? -eq 0
n=$(measurements "$T/cheap.out")
check "cheap ceiling: measured at start-up and again at later lines (said: ${n:-nothing})" \
	test "${n:-0}" -ge 3
json_column "$T/cheap.jsonl" ceiling_gflops >"$T/ceilings"
check "cheap ceiling: one per line, never falling" \
	awk 'NR > 1 && $1 < prev { exit 1 } { prev = $1 } END { exit NR != 6 }' "$T/ceilings"
# mfu x ceiling / tokens_per_sec is the FLOPs per token: the same on every line
paste <(json_column "$T/cheap.jsonl" mfu) "$T/ceilings" \
	<(json_column "$T/cheap.jsonl" tokens_per_sec) >"$T/cols"
check "cheap ceiling: each line's MFU is against that line's ceiling" \
	awk '{ f = $1 * $2 / $3 } NR == 1 { f1 = f }
	     f <= 0 || (f - f1) / f1 > 1e-3 || (f1 - f) / f1 > 1e-3 { exit 1 }' "$T/cols"

train "$T/default.jsonl" >"$T/default.out" 2>&1
check "default ceiling: exit 0" test $? -eq 0
n=$(measurements "$T/default.out")
check "default ceiling: measured once in a short run (said: ${n:-nothing})" test "${n:-0}" -eq 1
finish
