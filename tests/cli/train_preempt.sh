#!/usr/bin/env bash
# Preemption under mpirun: SIGUSR1 to mpirun (which forwards it to the ranks)
# mid-run makes all ranks stop at the next iteration boundary, write a checkpoint
# and exit with status 3 ("requeue me"); the same command run again resumes by
# itself and ends with the uninterrupted run's final loss to the last bit. Likewise
# --exit-duration-in-mins; a stop before the first step exits 4 and saves nothing.
# (The SLURM version of this is tests/slurm/.)
# Usage: train_preempt.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_preempt.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_preempt
ITERS=800
ARGS=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --global-batch-size 4
	--train-iters "$ITERS" --lr 1e-3 --seed 5 --log-interval 100)
export OMP_NUM_THREADS=1

last_loss() { json_column "$1" loss | tail -n 1; }

run() { # run NAME [flags]: the job's command line, same every time
	local name=$1
	shift
	"$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${ARGS[@]}" \
		--save "$T/$name" --load "$T/$name" --save-interval 1000 \
		--metrics "$T/$name.jsonl" "$@" >>"$T/$name.log" 2>&1
}

mkdir "$T/full" "$T/sig" "$T/dur"
t0=$EPOCHREALTIME
run full
check "uninterrupted run exits 0" test $? -eq 0
# start-up and a third of the training, whatever the machine's speed: the whole run
# took D s, of which the training R (its last elapsed_s)
third=$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v r="$(json_column "$T/full.jsonl" elapsed_s | tail -n 1)" \
	'BEGIN { d = b - a; printf "%.4f", (d - r + r / 3) / 60 }')

run sig &
pid=$!
# Signal once the run is under way (its first log line, iteration 100), whatever
# the machine's speed.
for _ in $(seq 600); do
	[[ -s $T/sig.jsonl ]] && break
	sleep 0.1
done
# $pid is the subshell running `run`; the signal goes to its child, mpiexec.
pkill -USR1 -P "$pid"
wait "$pid"
rc=$?
check "SIGUSR1: exit status 3" test "$rc" -eq 3
check "SIGUSR1: stopped before the end, checkpoint written" \
	grep -qE "stopped at iteration [0-9]+ of $ITERS \(signal\); checkpoint written" "$T/sig.log"
check "SIGUSR1: latest names the stop" bash -c "grep -q \"stopped at iteration \$(cat '$T/sig/latest') \" '$T/sig.log'"
run sig
check "requeued run finishes with exit 0" test $? -eq 0
check "requeued run resumed by itself" grep -q "resumed from" "$T/sig.log"
check "final loss = uninterrupted final loss (bitwise)" \
	test "$(last_loss "$T/sig.jsonl")" = "$(last_loss "$T/full.jsonl")"

# --exit-duration-in-mins counts from the process's start (start-up and resume
# included), as Megatron-LM's does.
run dur --exit-duration-in-mins "$third"
check "--exit-duration-in-mins: exit status 3" test $? -eq 3
check "--exit-duration-in-mins: checkpoint written" \
	grep -qE "stopped at iteration [0-9]+ of $ITERS \(--exit-duration-in-mins\); checkpoint written" "$T/dur.log"
# Over the budget before the first step (3.6 ms: start-up takes longer): exit status
# 4, nothing new saved, latest unchanged. The job scripts requeue this too.
before=$(cat "$T/dur/latest")
run dur --exit-duration-in-mins 0.00006
check "stopped before its first step: exit status 4" test $? -eq 4
check "... saying so: $(grep -o 'stopped at iteration.*' "$T/dur.log" | tail -n 1)" grep -q \
	"stopped at iteration $before of $ITERS (--exit-duration-in-mins); before any step of this run: nothing new to save" "$T/dur.log"
check "... latest unchanged ($before)" test "$(cat "$T/dur/latest")" = "$before"
run dur
check "and the next run finishes with the same final loss" \
	test "$(last_loss "$T/dur.jsonl")" = "$(last_loss "$T/full.jsonl")"
finish
