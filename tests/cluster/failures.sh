#!/usr/bin/env bash
# Node failures and network partitions on 2 emulated nodes (tests/cluster/cluster.sh),
# with jobs/train-mpirun.sh as a user runs it (HOSTFILE, 2 ranks per node, DP=2 x
# TP=2: ranks 0-1 on node 1, ranks 2-3 on node 2). Checks:
#  (a) every process of node 2 killed at once mid-step: the job ends within 30 s
#      with a message naming node 2 and its ranks 2-3, no rank left on node 1, and
#      the latest checkpoint loads on one node (training resumes from it on 1 rank);
#  (b) the same in the middle of a checkpoint save (RETNET_CKPT_TEST_PAUSE holds
#      rank 0 after the first tensor is written): latest still names the previous
#      checkpoint, and it loads on one node;
#  (c) node 2's link down for longer than --distributed-timeout-minutes (0.2, i.e.
#      12 s): every rank's watchdog says where it waited and ends the job, exit
#      status 5, the ranks behind the partition end too, and the script ends the
#      mpirun that still waits for the unreachable node;
#  (d) node 2's link down for 3 s, less than the timeout (0.3): the run goes on and
#      logs the losses of an uninterrupted run, to the bit.
# Prints how long each job took to end after the failure.
# Skips (77) where emulated nodes cannot be made (not root, no namespaces).
# Usage: failures.sh BUILD_DIR CORPUS_PREFIX     Knobs: CASES (abcd), KEEP=1 keeps the files.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: failures.sh BUILD_DIR CORPUS_PREFIX}" && pwd)
CORPUS=$(cd "$(dirname "${2:?usage}")" && pwd)/$(basename "$2") # the jobs run elsewhere
source "$REPO/tests/cli/lib.sh"
source "$HERE/cluster.sh"
cluster_require

T=$(mktemp -d "${RN_CLUSTER_TMP:-/var/tmp}/rn_cluster_fail.XXXXXX")
CLUSTER_ON_EXIT='[[ ${KEEP:-0} == 1 ]] && echo "kept $T" || rm -rf "$T"'
CLUSTER_OWNED=$T # what is left of the jobs if this test is killed
cluster_setup 2 "$T/nodes" || { bad "2 emulated nodes set up"; finish; exit 1; }
N1=${CLUSTER_NODES[0]}
N2=${CLUSTER_NODES[1]}
export CLUSTER_STATE OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive RETNET_CEILING_SIZE=64
export OMPI_MCA_plm_rsh_agent=$CLUSTER_AGENT OMPI_MCA_btl_tcp_if_include=$CLUSTER_SUBNET \
	OMPI_MCA_oob_tcp_if_include=$CLUSTER_SUBNET OMPI_MCA_mpi_yield_when_idle=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
printf '%s slots=2\n' "${CLUSTER_NODES[@]}" >"$T/hosts"

cat >"$T/tiny.cfg" <<EOF
num-layers 2
hidden-size 32
num-heads 2
seq-length 32
chunk-size 8
micro-batch-size 2
global-batch-size 4
lr 1e-3
seed 3
log-interval 10
EOF
export RETNET_BUILD=$BUILD CONFIG=$T/tiny.cfg DATA=$CORPUS-train.bin VALID_DATA=
export RANKS=4 TP=2 HOSTFILE=$T/hosts BIND=none THREADS=1 KEEP_LAST=0 SAVE_INTERVAL=20
export MPIRUN_ARGS="-x OMP_WAIT_POLICY -x RETNET_CEILING_SIZE"
JOB=
CASES=${CASES:-abcd} # a subset, to debug one case

# start NAME KNOB=VALUE... -- [flags]: jobs/train-mpirun.sh in the background (JOB).
start() {
	local name=$1
	shift
	local -a knobs=()
	while [[ $# -gt 0 && $1 != -- ]]; do knobs+=("$1"); shift; done
	[[ ${1:-} == -- ]] && shift
	env "${knobs[@]}" RUN_DIR="$T/$name" "$REPO/jobs/train-mpirun.sh" "$@" >"$T/$name.out" 2>&1 &
	JOB=$!
}
# wait_until SECONDS CMD...: poll CMD every 0.05 s.
wait_until() {
	local limit=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS >= limit)) && return 1
		sleep 0.05
	done
}
past() { [[ $(json_column "$T/$1/metrics.jsonl" iteration 2>/dev/null | tail -n 1) -ge $2 ]]; }
running() { kill -0 "$JOB" 2>/dev/null; }
# end_of_job LIMIT: waits for JOB (killing it after LIMIT s); sets rc and secs (since t0).
end_of_job() {
	local limit=$((SECONDS + $1))
	while running && ((SECONDS < limit)); do sleep 0.05; done
	if running; then
		kill -9 "$JOB"
		echo "     (killed after $1 s)"
	fi
	wait "$JOB"
	rc=$?
	secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	JOB=
}
ranks_left() { # retnet-train processes of run NAME still alive, anywhere
	pgrep -f -- "--save $T/$1/ckpt " | xargs -r ps -o comm= -p 2>/dev/null | grep -c retnet-train
}
show() { sed 's/^/    | /' "$T/$1.out" | tail -n "${2:-25}" >&2; }
# loads_on_one_node NAME: training resumes from NAME's latest on one rank, 2 steps.
loads_on_one_node() {
	local latest
	latest=$(cat "$T/$1/ckpt/latest" 2>/dev/null) || return 1
	env RUN_DIR="$T/$1" RANKS=1 TP=1 HOSTFILE= "$REPO/jobs/train-mpirun.sh" \
		--train-iters $((latest + 2)) >"$T/$1-resume.out" 2>&1 &&
		grep -q "resumed from $T/$1/ckpt/iter_$(printf %07d "$latest").h5" "$T/$1-resume.out"
}

# ---- (a) node 2 dies mid-step -----------------------------------------------------
if [[ $CASES == *a* ]]; then
echo "== (a) every process of $N2 killed at once, mid-step"
start a SAVE_INTERVAL=100 -- --train-iters 1000000
# past 110: checkpoint 100 is written, the next save is 90 steps away
if wait_until 60 past a 110; then
	at=$(json_column "$T/a/metrics.jsonl" iteration | tail -n 1)
	t0=$EPOCHREALTIME
	cluster_kill_node 2
	end_of_job 60
	echo "     killed after iteration $at; the job ended $secs s later, exit $rc"
	check "(a) the job ended within 30 s ($secs s), exit status $rc (not 0)" \
		awk -v s="$secs" -v r="$rc" 'BEGIN { exit !(s <= 30 && r != 0) }'
	check "(a) the script names the lost node and its ranks: $(grep -o "lost: node.*" "$T/a.out")" \
		grep -q "lost: node $N2, ranks 2-3" "$T/a.out"
	echo "     where the ranks of $N1 were: $(grep -o '\[rank [0-9]*\] SIGTERM while in .*' "$T/a.out" | xargs)"
	check "(a) no rank left running" test "$(ranks_left a)" -eq 0
	check "(a) checkpoint $(cat "$T/a/ckpt/latest" 2>/dev/null) (100) loads on one node (resumed on 1 rank)" \
		loads_on_one_node a
else
	bad "(a) training across 2 nodes got under way"
	show a
fi
[[ -n $JOB ]] && { kill -9 "$JOB"; wait "$JOB"; }
cluster_teardown
cluster_setup 2 "$T/nodes2" >/dev/null || { bad "nodes set up again"; finish; exit 1; }
fi

# ---- (b) node 2 dies mid-save -------------------------------------------------------
if [[ $CASES == *b* ]]; then
echo "== (b) every process of $N2 killed at once, in the middle of the save of iteration 40"
start b RETNET_CKPT_TEST_PAUSE=write:40 MPIRUN_ARGS="$MPIRUN_ARGS -x RETNET_CKPT_TEST_PAUSE" \
	-- --train-iters 1000000
if wait_until 60 grep -q "ckpt test pause: after write (iteration 40)" "$T/b.out"; then
	t0=$EPOCHREALTIME
	cluster_kill_node 2
	end_of_job 60
	echo "     killed while rank 0 was writing iteration 40; the job ended $secs s later, exit $rc"
	check "(b) the job ended within 30 s ($secs s), exit status $rc (not 0)" \
		awk -v s="$secs" -v r="$rc" 'BEGIN { exit !(s <= 30 && r != 0) }'
	check "(b) the script names the lost node and its ranks" grep -q "lost: node $N2, ranks 2-3" "$T/b.out"
	check "(b) no rank left running" test "$(ranks_left b)" -eq 0
	check "(b) latest still names the previous checkpoint, 20 ($(cat "$T/b/ckpt/latest" 2>/dev/null))" \
		test "$(cat "$T/b/ckpt/latest" 2>/dev/null)" = 20
	check "(b) checkpoint 20 loads on one node (resumed on 1 rank)" loads_on_one_node b
else
	bad "(b) the save of iteration 40 reached its pause"
	show b
fi
[[ -n $JOB ]] && { kill -9 "$JOB"; wait "$JOB"; }
cluster_teardown
cluster_setup 2 "$T/nodes3" >/dev/null || { bad "nodes set up again"; finish; exit 1; }
fi

# ---- (c) a partition longer than the timeout ----------------------------------------
if [[ $CASES == *c* ]]; then
echo "== (c) $N2's link down for good, --distributed-timeout-minutes 0.2 (12 s)"
start c TIMEOUT_MINS=0.2 STALL_GRACE_SECS=5 SAVE_INTERVAL=100 -- --train-iters 1000000
if wait_until 60 past c 110; then
	t0=$EPOCHREALTIME
	cluster_link_down 2
	end_of_job 90
	echo "     link down; the job ended $secs s later, exit $rc"
	check "(c) the job ended with exit status 5 ($rc) within 12 s + 5 s grace + 15 s ($secs s)" \
		awk -v s="$secs" -v r="$rc" 'BEGIN { exit !(r == 5 && s >= 12 && s <= 32) }'
	check "(c) ranks 0 and 1 said where they waited: $(grep -m1 -o '\[rank 0\] no progress.*' "$T/c.out")" \
		eval 'grep -q "^retnet: error: \[rank 0\] no progress for 0.2.* minutes: waiting in .*; ending the job (--distributed-timeout-minutes)" "$T/c.out" &&
		      grep -q "^retnet: error: \[rank 1\] no progress for 0.2" "$T/c.out"'
	check "(c) the script ended the launcher still waiting for $N2 and said why" \
		grep -q "the watchdog ended the job" "$T/c.out"
	check "(c) no rank left on $N1" eval '! ip netns pids "$N1" | xargs -r ps -o comm= -p | grep -q retnet-train'
	check "(c) the ranks behind the partition ended too (their own watchdog)" \
		eval '! ip netns pids "$N2" | xargs -r ps -o comm= -p | grep -q retnet-train'
else
	bad "(c) training across 2 nodes got under way"
	show c
fi
cluster_link_up 2
[[ -n $JOB ]] && { kill -9 "$JOB"; wait "$JOB"; }
cluster_teardown
cluster_setup 2 "$T/nodes4" >/dev/null || { bad "nodes set up again"; finish; exit 1; }
fi

# ---- (d) a partition that heals before the timeout ----------------------------------
if [[ $CASES == *d* ]]; then
echo "== (d) $N2's link down for 3 s, --distributed-timeout-minutes 0.3 (18 s)"
ITERS=1000
t0=$EPOCHREALTIME
start dref TIMEOUT_MINS=0.3 SAVE_INTERVAL=0 -- --train-iters $ITERS
end_of_job 120
echo "     uninterrupted run: $secs s, exit $rc"
start d TIMEOUT_MINS=0.3 SAVE_INTERVAL=0 -- --train-iters $ITERS
if wait_until 60 past d 200; then
	at=$(json_column "$T/d/metrics.jsonl" iteration | tail -n 1)
	t0=$EPOCHREALTIME
	cluster_link_down 2
	sleep 3
	cluster_link_up 2
	end_of_job 120
	echo "     link down for 3 s after iteration $at; the run ended $secs s after the cut, exit $rc"
	check "(d) the run went on and finished (exit $rc)" test "$rc" -eq 0
	check "(d) no watchdog message" eval '! grep -q "no progress for" "$T/d.out"'
	check "(d) all $(json_column "$T/d/metrics.jsonl" loss | wc -l) losses = the uninterrupted run's, to the bit (final $(json_column "$T/d/metrics.jsonl" loss | tail -n 1))" \
		eval '[[ -s $T/dref/metrics.jsonl ]] && cmp -s <(json_column "$T/d/metrics.jsonl" loss) \
			<(json_column "$T/dref/metrics.jsonl" loss)'
else
	bad "(d) training across 2 nodes got under way"
	show d
fi
[[ -n $JOB ]] && { kill -9 "$JOB"; wait "$JOB"; }
fi

((fail > 0)) && for f in a b c d; do [[ -f $T/$f.out ]] && { echo "---- $f" >&2; show "$f" 15; }; done
finish
