#!/usr/bin/env bash
# One rank of a 4-rank training job killed with SIGKILL: the whole job ends with a
# non-zero status within 30 s and no rank is left running, whichever layout and
# whichever rank (a data-parallel all-reduce, a pipeline stage's blocking
# send/receive, a tensor-parallel all-reduce, the rank that logs, a collective
# checkpoint write). Prints the seconds from the kill to mpiexec's exit.
#
# What ends the job is Open MPI's runtime, not retnet: mpiexec sees the rank die
# (orte_abort_on_non_zero_status, on by default), sends the other ranks SIGTERM,
# then SIGKILL. retnet catches SIGTERM (it means "preempted: checkpoint at the next
# iteration boundary"), so the ranks blocked in a collective with the dead one are
# ended by the SIGKILL: about twice odls_base_sigkill_timeout (1 s) after the kill
# (measured 2.2 to 2.7 s; 10.2 s with the timeout set to 5).
#
# The ranks are found by a unique --metrics path on their command line, and a
# rank's number is read from OMPI_COMM_WORLD_RANK in its environment.
# Usage: kill_rank.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: kill_rank.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_kill_rank.XXXXXX)
MPIEXEC=${MPIEXEC:-mpiexec}
read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
export OMP_NUM_THREADS=1
LIMIT=30   # seconds the job may take to end after the kill
GUARD=90   # past this the test kills everything itself and fails
JOB=

COMMON=(--data-path "$CORPUS-train.bin" --hidden-size 32 --num-heads 2 --seq-length 32
	--chunk-size 8 --micro-batch-size 2 --train-iters 1000000 --log-interval 5 --lr 1e-3)

ranks_of() { # ranks_of TAG: "pid rank" of every retnet-train process of the job
	local pid r
	for pid in $(pgrep -f -- "$T/$1.jsonl"); do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == retnet-train ]] || continue
		r=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
		[[ -n $r ]] && echo "$pid $r"
	done
}

cleanup() {
	local p
	if [[ -n $JOB ]]; then
		for p in $(pgrep -f -- "$T/"); do kill -9 "$p" 2>/dev/null; done
		kill -9 "$JOB" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

# kill_case TAG VICTIM WAIT_FOR_LINES [flags]: start 4 ranks, wait until the metrics
# file has WAIT_FOR_LINES lines (training is under way), SIGKILL rank VICTIM.
kill_case() {
	local tag=$1 victim=$2 lines=$3 i pid=
	shift 3
	local tstart=$EPOCHREALTIME
	"$MPIEXEC" -n 4 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" \
		--metrics "$T/$tag.jsonl" "$@" >"$T/$tag.log" 2>&1 &
	JOB=$!
	for ((i = 0; i < 6000; i++)); do
		[[ -f $T/$tag.jsonl && $(wc -l <"$T/$tag.jsonl") -ge $lines ]] && break
		kill -0 "$JOB" 2>/dev/null || break
		sleep 0.01
	done
	local all
	all=$(ranks_of "$tag")
	pid=$(awk -v r="$victim" '$2 == r {print $1}' <<<"$all")
	if [[ -z $pid || $(wc -l <<<"$all") -ne 4 ]]; then
		bad "$tag: training never got under way (ranks: $(tr '\n' ' ' <<<"$all")): $(tail -5 "$T/$tag.log")"
		kill -9 $(awk '{print $1}' <<<"$all") "$JOB" 2>/dev/null
		wait "$JOB" 2>/dev/null
		JOB=
		return
	fi
	local at t0=$EPOCHREALTIME
	at=$(json_column "$T/$tag.jsonl" iteration | tail -1)
	kill -9 "$pid"
	for ((i = 0; i < GUARD * 20; i++)); do
		kill -0 "$JOB" 2>/dev/null || break
		sleep 0.05
	done
	local hung=0
	if kill -0 "$JOB" 2>/dev/null; then
		hung=1
		kill -9 $(awk '{print $1}' <<<"$all") "$JOB" 2>/dev/null
	fi
	wait "$JOB"
	local rc=$? t1=$EPOCHREALTIME
	JOB=
	local secs left
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
	left=$(ranks_of "$tag" | wc -l)
	if [[ $hung -eq 0 && $rc -ne 0 && $left -eq 0 ]] &&
		awk -v s="$secs" -v l="$LIMIT" 'BEGIN {exit !(s <= l)}'; then
		ok "$tag: rank $victim killed after iteration $at ($(awk -v a="$tstart" -v b="$t0" 'BEGIN {printf "%.1f", b - a}') s in); job ended in $secs s, exit $rc, no rank left"
	else
		bad "$tag: rank $victim killed; hung $hung, ended after $secs s, exit $rc, $left ranks left: $(tail -5 "$T/$tag.log")"
	fi
}

kill_case dp4-rank2 2 2 --num-layers 2
kill_case pp4-rank1 1 2 --num-layers 4 --pipeline-model-parallel-size 4 --global-batch-size 8
kill_case pp4-rank3 3 2 --num-layers 4 --pipeline-model-parallel-size 4 --global-batch-size 8
kill_case tp2pp2-rank0 0 2 --num-layers 2 --tensor-model-parallel-size 2 \
	--pipeline-model-parallel-size 2 --global-batch-size 4
kill_case dp2tp2-rank3 3 2 --num-layers 2 --tensor-model-parallel-size 2

# In the middle of checkpoint saves (one every iteration: collective MPI-IO writes
# with a dead rank); the checkpoint `latest` names still loads and training resumes.
kill_case dp2pp2-save 2 1 --num-layers 2 --pipeline-model-parallel-size 2 \
	--save "$T/ck" --save-interval 1 --keep-last 2
check "dp2pp2-save: latest names a complete checkpoint" \
	test -f "$T/ck/iter_$(printf %07d "$(cat "$T/ck/latest" 2>/dev/null || echo 9999999)").h5"
"$MPIEXEC" --quiet -n 4 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" --num-layers 2 \
	--pipeline-model-parallel-size 2 --load "$T/ck" --save "$T/ck" \
	--train-iters $(($(cat "$T/ck/latest" 2>/dev/null || echo 0) + 2)) \
	--metrics "$T/resume.jsonl" >"$T/resume.log" 2>&1
rc=$?
check "dp2pp2-save: the rerun resumes from latest and trains 2 more iterations" \
	eval '[[ $rc -eq 0 ]] && grep -q "resumed from" "$T/resume.log"' ||
	sed 's/^/    /' "$T/resume.log" >&2
finish
