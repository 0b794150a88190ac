#!/usr/bin/env bash
# SIGKILL during a checkpoint save of retnet-train, at each moment of it, on 2 ranks
# (DP=2): RETNET_CKPT_TEST_PAUSE holds rank 0 of the save of iteration 4 after
# "write" (inside the HDF5 writes: one tensor of iter_0000004.h5.tmp written),
# "tmp" (the .tmp file complete, not renamed), "renamed" (iter_0000004.h5 in place,
# `latest` not yet moved) or "latest" (latest moved); then every rank is killed.
# `latest` must name iteration 2 (4 once it moved), and the same command run again
# must resume from it by itself and end with the uninterrupted run's final loss, to
# the last bit. Flags after CORPUS_PREFIX go to every run: with --async-save the
# pause holds the writer thread while training goes on (and its final save waits).
# Usage: train_save_kill.sh BUILD_DIR CORPUS_PREFIX [retnet-train flags]
set -u
BUILD=${1:?usage: train_save_kill.sh BUILD_DIR CORPUS_PREFIX [flags]}
CORPUS=${2:?usage}
shift 2
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_save_kill.XXXXXX)
MPIEXEC=${MPIEXEC:-mpiexec}
read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
export OMP_NUM_THREADS=1
unset RETNET_CKPT_TEST_PAUSE RETNET_CKPT_TEST_NO_RESERVE
JOB=
ARGS=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 32 --num-heads 2
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --train-iters 6 --lr 3e-3
	--seed 3 --log-interval 1 --save-interval 2 "$@")

kill_all() { # SIGKILL every process of the job at once (ranks by their --metrics path)
	local pids
	pids=$(pgrep -f -- "$T/$1.jsonl")
	[[ -n $pids ]] && kill -9 $pids 2>/dev/null
	kill -9 "$JOB" 2>/dev/null
	wait "$JOB" 2>/dev/null
	JOB=
}

cleanup() {
	[[ -n $JOB ]] && kill -9 $(pgrep -f -- "$T/") "$JOB" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

run() { # run NAME [env...]: the job's command line, the same every time
	local name=$1
	shift
	env "$@" "$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${ARGS[@]}" \
		--save "$T/$name" --load "$T/$name" --metrics "$T/$name.jsonl" >>"$T/$name.log" 2>&1
}

last_loss() { json_column "$1" loss | tail -n 1; }

mkdir "$T/full"
run full
check "uninterrupted run of 6 iterations exits 0" test $? -eq 0
full=$(last_loss "$T/full.jsonl")

for phase in write tmp renamed latest; do
	D=$T/$phase
	mkdir "$D"
	run "$phase" RETNET_CKPT_TEST_PAUSE="$phase:4" &
	JOB=$!
	for ((i = 0; i < 3000; i++)); do
		grep -qs "ckpt test pause: after $phase (iteration 4)" "$T/$phase.log" && break
		kill -0 "$JOB" 2>/dev/null || break
		sleep 0.02
	done
	check "$phase: the save of iteration 4 paused after $phase" \
		grep -q "ckpt test pause: after $phase (iteration 4)" "$T/$phase.log"
	kill_all "$phase"
	want=2
	[[ $phase == latest ]] && want=4
	check "$phase: killed; latest = $want" test "$(cat "$D/latest" 2>/dev/null)" = "$want"
	case $phase in
	write | tmp) check "$phase: iteration 4 only as iter_0000004.h5.tmp" \
		test -f "$D/iter_0000004.h5.tmp" -a ! -e "$D/iter_0000004.h5" ;;
	renamed) check "renamed: iter_0000004.h5 in place, not yet named by latest" \
		test -f "$D/iter_0000004.h5" ;;
	esac
	: >"$T/$phase.jsonl"
	run "$phase"
	rc=$?
	check "$phase: the rerun exits 0" test $rc -eq 0
	check "$phase: it resumed from iteration $want by itself" \
		grep -q "resumed from .*iter_000000$want.h5 (iteration $want" "$T/$phase.log"
	check "$phase: final loss = the uninterrupted run's ($full), to the bit" \
		test "$(last_loss "$T/$phase.jsonl")" = "$full"
	check "$phase: no .tmp left behind" test -z "$(compgen -G "$D/*.tmp")"
done
finish
