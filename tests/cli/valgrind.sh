#!/usr/bin/env bash
# valgrind memcheck on a tiny 1-rank run: retnet-train (2 iterations, a held-out
# evaluation, a checkpoint saved) and retnet-eval of that checkpoint. Fails on any
# definite leak or memory error that tests/valgrind.supp does not suppress (it
# suppresses Open MPI's one-time allocations and oneDNN's JIT vector over-reads,
# nothing of ours). About 2-3 minutes on 2 cores (valgrind runs ~50x slower).
# Usage: valgrind.sh BUILD_DIR   (a non-sanitizer tree; valgrind and ASan do not mix)
set -u
BUILD=${1:?usage: valgrind.sh BUILD_DIR}
SUPP="$(dirname "$0")/../valgrind.supp"
source "$(dirname "$0")/lib.sh"
if ! command -v valgrind >/dev/null; then
	echo "valgrind.sh: valgrind is missing: run scripts/install-deps.sh" >&2
	exit 1
fi
T=$(mktemp -d /tmp/rn_valgrind.XXXXXX)
trap 'rm -rf "$T"' EXIT
# One rank without mpiexec (an MPI singleton); the 1024^3 start-up sgemm that
# measures the MFU ceiling would take minutes under valgrind.
export OMP_NUM_THREADS=1 RETNET_CEILING_SIZE=64
VG=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
	--num-callers=40 --suppressions="$SUPP" --gen-suppressions=all)

# memcheck LABEL CMD...: CMD under valgrind; its log is shown on a failure.
n=0
memcheck() {
	local label=$1
	shift
	n=$((n + 1))
	"${VG[@]}" --log-file="$T/vg.$n" "$@" >"$T/out.$n" 2>&1
	local rc=$?
	if [[ $rc -eq 0 ]]; then
		ok "$label: $(grep -E 'ERROR SUMMARY' "$T/vg.$n" | sed 's/^==[0-9]*== //')"
	else
		bad "$label: exit $rc"
		tail -n 30 "$T/out.$n" >&2
		head -c 60000 "$T/vg.$n" >&2
	fi
}

bible -f Gen1:1-Gen11:32 >"$T/text.txt"
check "retnet-prep" "$BUILD/data/retnet-prep" --output-prefix "$T/c" "$T/text.txt"
memcheck "retnet-train (2 iterations, checkpoint)" "$BUILD/retnet-train" --num-layers 2 \
	--hidden-size 32 --num-heads 2 --seq-length 16 --chunk-size 8 --micro-batch-size 2 \
	--train-iters 2 --data-path "$T/c-train.bin" --valid-data-path "$T/c-valid.bin" \
	--eval-iters 1 --save "$T/ckpt"
memcheck "retnet-eval" "$BUILD/retnet-eval" --load "$T/ckpt" --data "$T/c-valid.bin" \
	--output "$T/eval.jsonl"
check "eval wrote its line" grep -q bits_per_byte "$T/eval.jsonl"
finish
