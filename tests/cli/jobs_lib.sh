#!/usr/bin/env bash
# The job scripts' shared logic (jobs/lib.sh), without SLURM or MPI: settings read
# from flags and the config file; the micro-batch lowered to split the global batch
# over DP (and the refusal when it cannot); the srun --mpi probe against the 22.05
# list; the run directory's lock; what a failed run's log says was lost; and the
# launcher supervision (the save-time warning against the stop lead, a launcher
# ended after the watchdog's line, USR1 passed on). A few seconds.
# Usage: jobs_lib.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/../../jobs/lib.sh"
test_setup jobs_lib

# ---- settings and the batch split -------------------------------------------
printf '# c\nmicro-batch-size 4\nglobal-batch-size = 8 # eight\n' >"$T/a.cfg"
CONFIG=$T/a.cfg
check "rn_setting from the config file (key value)" test "$(rn_setting micro-batch-size)" = 4
check "rn_setting from the config file (key = value # comment)" test "$(rn_setting global-batch-size)" = 8
check "rn_setting: the flag wins, the last one" \
	test "$(rn_setting micro-batch-size --micro-batch-size 2 --x 1 --micro-batch-size=1)" = 1
check "rn_setting: absent" test -z "$(rn_setting seq-length --lr 1)"
check "fit: 8 ranks, TP 4: DP 2 takes micro-batch 4 as it is" test -z "$(rn_fit_micro_batch 8 4 1)"
check "fit: 16 ranks, TP 4: DP 4 lowers micro-batch 4 to 2" test "$(rn_fit_micro_batch 16 4 1)" = 2
check "fit: 8 ranks, TP 1: DP 8 lowers it to 1" test "$(rn_fit_micro_batch 8 1 1)" = 1
out=$(rn_fit_micro_batch 16 1 1 2>&1)
rc=$?
check "fit: 16 ranks, TP 1: global batch 8 cannot split over DP 16 (status $rc): $out" \
	eval '[[ $rc == 2 && $out == *"global batch 8 does not split over data-parallel size 16"* ]]'
check "fit: a micro-batch given on the command line is the user's" \
	test -z "$(rn_fit_micro_batch 16 4 1 --micro-batch-size 4)"
CONFIG=
check "tasks per node: 4(x2) of 8 tasks is 4 (train.sbatch's default TP)" \
	test "$(SLURM_NTASKS=8 SLURM_TASKS_PER_NODE='4(x2)' rn_tasks_per_node)" = 4
check "tasks per node: none when nodes differ (3,2)" \
	test -z "$(SLURM_NTASKS=5 SLURM_TASKS_PER_NODE=3,2 rn_tasks_per_node)"
check "tasks per node: none above the tasks (--ntasks=1 under a header's 4 per node)" \
	test -z "$(SLURM_NTASKS=1 SLURM_TASKS_PER_NODE=4 rn_tasks_per_node)"

# ---- srun --mpi=list, as 22.05 prints it -------------------------------------
mkdir "$T/bin"
cat >"$T/bin/srun" <<'EOF'
#!/bin/sh
printf 'MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\nspecific pmix plugin versions available: pmix_v4\n'
EOF
chmod +x "$T/bin/srun"
check "srun --mpi=pmix is listed" env PATH="$T/bin:$PATH" bash -c "source '$HERE/../../jobs/lib.sh'; rn_srun_mpi_check pmix"
check "srun --mpi=pmix_v4 is listed" env PATH="$T/bin:$PATH" bash -c "source '$HERE/../../jobs/lib.sh'; rn_srun_mpi_check pmix_v4"
out=$(PATH="$T/bin:$PATH" rn_srun_mpi_check pmi9 2>&1)
rc=$?
check "srun --mpi=pmi9: status $rc, naming the plugins: $out" \
	eval '[[ $rc == 2 && $out == *"(srun --mpi=list: pmix none cray_shasta pmi2 pmix_v4)"* ]]'
fence=$(unset SLURM_PMIX_FENCE; rn_srun_pmix_fence pmix_v4; echo "${SLURM_PMIX_FENCE-unset}")
check "a pmix step's fences go around a ring: SLURM_PMIX_FENCE=$fence" test "$fence" = ring
fence=$(SLURM_PMIX_FENCE=tree; rn_srun_pmix_fence pmix; echo "$SLURM_PMIX_FENCE")
check "... unless the user chose ($fence)" test "$fence" = tree
fence=$(unset SLURM_PMIX_FENCE; rn_srun_pmix_fence pmi2; echo "${SLURM_PMIX_FENCE-unset}")
check "... and only for pmix (pmi2: $fence)" test "$fence" = unset

# ---- the run directory's lock ------------------------------------------------
RUN_DIR=$T/run
(rn_lock_take && echo "$RN_LOCKED" >"$T/held") >/dev/null
check "the lock taken names the owner" grep -q "job=none host=$(hostname) pid=" "$RUN_DIR/lock/owner"
sleep 30 &
alive=$!
sed -i "s/pid=[0-9]*/pid=$alive/" "$RUN_DIR/lock/owner"
out=$(rn_lock_take 2>&1)
rc=$?
check "a second run refused while the owner lives (status $rc)" \
	eval '[[ $rc == 2 && $out == *"RUN_DIR $RUN_DIR is in use (job=none host="* ]]'
kill "$alive"
wait "$alive" 2>/dev/null
out=$(rn_lock_take 2>&1)
check "the lock of a run that is gone is taken over: $out" grep -q "pid=$BASHPID\|pid=$$" "$RUN_DIR/lock/owner"

# ---- what a failed run's log says was lost ------------------------------------
cat >"$T/lost.log" <<'EOF'
retnet-train: placement: node n1 ranks 0-1 (CPUs 0 | 1)
retnet-train: placement: node n2 ranks 2-3 (CPUs 0 | 1)
retnet-train: placement: node n3 ranks 4,6 (CPUs 0 | 1)
retnet-train: placement: node n4 ranks 5,7 (CPUs 0 | 1)
retnet: warning: [rank 1] SIGTERM while in the data-parallel gradient reduction
retnet: warning: [rank 0] SIGTERM while in the data-parallel gradient reduction
retnet: warning: [rank 4] SIGTERM while in the data-parallel gradient reduction
retnet: warning: [rank 6] SIGTERM while in the data-parallel gradient reduction
retnet: warning: [rank 7] SIGTERM while in the data-parallel gradient reduction
EOF
out=$(rn_explain "$T/lost.log" 137)
check "ranks silent at the launcher's SIGTERM, by node: $(tr '\n' ' ' <<<"$out")" eval \
	'[[ $out == *"lost: node n2, ranks 2-3 "* && $out == *"from ranks 5 on node n4"* &&
	   $out != *"node n1"* && $out != *"node n3"* ]]'
rn_explain "$T/lost.log" 137 >/dev/null
check "RN_LOST_NODES names the whole node only: '$RN_LOST_NODES'" test "$RN_LOST_NODES" = n2
cat >"$T/tcp.log" <<'EOF'
retnet-train: placement: node localhost ranks 2-3 (CPUs 0 | 1)
retnet: error: [rank 0] the TCP connection from 127.0.0.1 closed (a process there is gone) while waiting in the forward of micro-batch 1 (tensor-parallel all-reduces); ending the job (--distributed-timeout-minutes)
EOF
out=$(rn_explain "$T/tcp.log" 5)
check "a closed connection's address names its node: $(tr '\n' ' ' <<<"$out")" \
	eval '[[ $out == *"[rank 0] the TCP connection from 127.0.0.1 closed"* &&
	       $out == *"lost: node localhost, ranks 2-3 (the ranks left saw its connections close)"* ]]'

# ---- the launcher, supervised ------------------------------------------------
RN_LEAD_SECS=60
rn_launch "$T/l1.log" bash -c 'echo "saved checkpoint /x/iter_0000010.h5 in 0.50 s"
	echo "saved checkpoint /x/iter_0000020.h5 in 40.25 s"; sleep 1.5; exit 3' 2>"$T/l1.err" >/dev/null
check "the launcher's status comes back ($RN_STATUS)" test "$RN_STATUS" = 3
check "a save of 40.25 s is more than half the 60 s lead: $(cat "$T/l1.err")" \
	grep -q "a checkpoint took 40.25 s to save, more than half the stop lead (60 s)" "$T/l1.err"
unset RN_LEAD_SECS
t0=$SECONDS
STALL_GRACE_SECS=1 rn_launch "$T/l2.log" bash -c 'echo "retnet: error: [rank 1] no progress for 0.2 minutes: waiting in the data-parallel gradient reduction; ending the job (--distributed-timeout-minutes)" >&2
	exec sleep 60' >/dev/null 2>"$T/l2.err"
check "after the watchdog's line, a launcher still waiting is ended ($((SECONDS - t0)) s), status 5 ($RN_STATUS)" \
	eval '[[ $RN_STATUS == 5 ]] && ((SECONDS - t0 < 15))'
# USR1 once the launched command has its trap (it says "ready" after setting it):
# a USR1 before that kills it, which no job script can prevent and is not what this
# checks. rn_launch sets its own trap right after starting it, long before.
(for _ in $(seq 300); do grep -q ready "$T/l3.log" 2>/dev/null && break; sleep 0.1; done
 sleep 0.2
 kill -USR1 $$) &
rn_launch "$T/l3.log" bash -c 'trap "echo got USR1; exit 3" USR1; echo ready; sleep 20 & wait' \
	>"$T/l3.out" 2>&1
check "USR1 to the script goes on to the launcher (status $RN_STATUS, signalled $RN_SIGNALLED)" \
	eval '[[ $RN_STATUS == 3 && $RN_SIGNALLED == 1 ]] && grep -q "got USR1" "$T/l3.out"'
finish
