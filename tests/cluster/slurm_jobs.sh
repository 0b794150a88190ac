#!/usr/bin/env bash
# jobs/ on a real SLURM across 4 emulated nodes (tests/cluster/cluster.sh and
# slurm_nodes.sh: one slurmd per node with its own NodeName, NodeAddr and hostname;
# slurmctld and munged outside), submitted as a user would. Checks:
#  (a) jobs/submit.sh, --nodes=2: training with srun --mpi=pmix, one rank on each of
#      two nodes, then the evaluation array; outputs named by the checkpoints' real
#      iterations ("latest" resolved), EVAL_ARGS passed to retnet-eval,
#      EVAL_MAX_PARALLEL throttling the array, ENV_SCRIPT sourced, knobs intact
#      under SBATCH_EXPORT=NONE; before that, ITERATIONS naming a checkpoint
#      KEEP_LAST will prune is refused at submit time;
#  (b) the same, USR1 mid-run: requeued, resumed, (a)'s final checkpoint to the bit;
#      meanwhile a second job on its RUN_DIR is refused (by submit.sh, and by the
#      job itself when submitted with sbatch);
#  (c) train.sbatch's default layout (2 nodes x 4 tasks: TP 4 x DP 2) with the
#      default config's batch runs, and so does --nodes=4 (16 ranks: DP 4, the
#      micro-batch lowered to 2); small model flags, 3 steps; retnet does not warn
#      about the PMIx fence (the scripts set a ring);
#  (d) LAUNCHER=mpirun across 2 nodes, --time=2 with STOP_LEAD_MINS=1.5: runs (the
#      SLURM world-size check does not misfire on mpirun's daemons), mpirun's daemon
#      step gets all the job's CPUs on its node, not one task's (SRUN_CPUS_PER_TASK
#      not passed on), and the run stops at the deadline (the job's end less the
#      lead, 30 s in) with a checkpoint and is requeued;
#  (e) SRUN_MPI naming a plugin SLURM lacks: the job fails at once, exit 2, naming
#      the plugins there are; a step whose tasks did not form one MPI world: every
#      task exits 2 with one line saying so; that plain srun --mpi=pmix line across
#      2 nodes, without SLURM_PMIX_FENCE, gets retnet's one-line warning about it;
#  (f) node failure under srun: every process of a node killed (slurmd included)
#      mid-step: the job script ends the step within 30 s (srun alone would wait for
#      SlurmdTimeout), names the lost node and ranks, and requeues;
#  (g) a stop before the first step (exit status 4) is requeued, MAX_REQUEUES=1
#      times: the second one in a row fails the job (runs beside (c));
#  (h) under the jobs' srun settings the PMIx barrier that ends MPI_Init (timed in
#      MPI_Finalize, which ends with the same kind) waits for every node, and under
#      SLURM 22.05's default fences it does not (why jobs/lib.sh sets a ring).
# Every wait has a timeout; on failure it prints the job logs and the daemons'.
# Skips (77) where emulated nodes cannot be made (not root, no namespaces); fails,
# saying what is missing, without the SLURM packages.
# Usage: slurm_jobs.sh BUILD_DIR CORPUS_PREFIX     Knobs: KEEP=1 keeps the files,
# CASES (abcdefgh) runs a subset, BUDGET (480) caps the waits.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: slurm_jobs.sh BUILD_DIR CORPUS_PREFIX}" && pwd)
CORPUS=$(cd "$(dirname "${2:?usage}")" && pwd)/$(basename "$2") # the jobs run elsewhere
source "$REPO/tests/cli/lib.sh"
source "$HERE/cluster.sh"
source "$HERE/slurm_nodes.sh"
cluster_require
for cmd in munged slurmctld slurmd sbatch squeue scontrol scancel; do
	command -v "$cmd" >/dev/null || {
		echo "slurm_jobs: FAIL: '$cmd' missing: run scripts/install-deps.sh (slurmctld slurmd slurm-client munge)" >&2
		echo "0 passed, 1 failed"
		exit 1
	}
done
# Nothing from a surrounding job or the caller's sbatch defaults reaches ours.
for v in $(compgen -v | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_'); do unset "$v"; done

T=$(mktemp -d "${RN_CLUSTER_TMP:-/var/tmp}/rn_cluster_slurm.XXXXXX")
chmod 755 "$T" # munged runs as the munge user and keeps its socket in $T/slurm
CLUSTER_ON_TEARDOWN="slurm_nodes_stop '$T/slurm'"
CLUSTER_ON_EXIT='[[ ${KEEP:-0} == 1 ]] && echo "kept $T" || rm -rf "$T"'
CLUSTER_OWNED=$T # what is left of the jobs if this test is killed
cluster_setup 4 "$T/nodes" || { bad "4 emulated nodes set up"; finish; exit 1; }
t0=$SECONDS
slurm_nodes_start "$T/slurm" || { bad "SLURM on the nodes"; finish; exit 1; }
ok "SLURM up on ${CLUSTER_NODES[*]} in $((SECONDS - t0)) s"
N1=${CLUSTER_NODES[0]}

deadline=$((SECONDS + ${BUDGET:-480}))
CASES=${CASES:-abcdefgh} # a subset, to debug one case ((b) needs (a))
wait_for() { # wait_for LABEL SECONDS CMD...
	local label=$1 limit=$((SECONDS + $2))
	shift 2
	((limit > deadline)) && limit=$deadline
	until "$@"; do
		if ((SECONDS >= limit)); then
			echo "slurm_jobs: timed out waiting for: $label" >&2
			return 1
		fi
		sleep 0.25
	done
}
gone() { [[ -z $(squeue -h -j "$1" 2>/dev/null) ]]; }
at_iteration() { [[ $(json_column "$1" iteration 2>/dev/null | tail -n 1) -ge $2 ]]; }
field() { scontrol show job -o "$1" 2>/dev/null | grep -o " $2=[^ ]*" | cut -d= -f2-; }
summary() { echo "$(field "$1" JobState) $(field "$1" ExitCode) restarts=$(field "$1" Restarts)"; }
show_logs() {
	local f
	for f in "$T"/*.out; do
		[[ -f $f ]] || continue
		echo "---- last 25 lines of $(basename "$f")"
		tail -n 25 "$f"
	done
	slurm_nodes_logs "$T/slurm"
}

# ---- the run's settings, as a user sets them -----------------------------------
head -c 20000 "$CORPUS.txt" >"$T/held.txt"
# Big enough that 600 steps outlast (b)'s checks and the USR1's way to the ranks
# (600 steps take about 10 s on 2 cores; with T=32 and d=32, 5 s, and a fast
# machine finished before the signal arrived).
cat >"$T/tiny.cfg" <<EOF
num-layers 2
hidden-size 64
num-heads 2
seq-length 128
chunk-size 16
micro-batch-size 4
global-batch-size 8
train-iters 600
lr 2e-3
lr-warmup-iters 20
seed 7
log-interval 10
EOF
cat >"$T/env.sh" <<'EOF'
# a site's module set-up stands in: it must run before the launch, in the job
RN_ENV_SCRIPT_HOST=$(hostname)
export RN_ENV_SCRIPT_HOST
EOF
cd "$T" || exit 1 # the jobs' logs (%x-%j.out) land here
export RETNET_BUILD=$BUILD CONFIG=$T/tiny.cfg DATA=$CORPUS-train.bin VALID_DATA=
export SAVE_INTERVAL=100 KEEP_LAST=2 ENV_SCRIPT=$T/env.sh
export OMP_WAIT_POLICY=passive RETNET_CEILING_SIZE=64 OMPI_MCA_mpi_yield_when_idle=1 \
	OMPI_MCA_btl_tcp_if_include=$CLUSTER_SUBNET OMPI_MCA_oob_tcp_if_include=$CLUSTER_SUBNET
export TRAIN_SBATCH_ARGS="--nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --time=10"
export EVAL_SBATCH_ARGS="--cpus-per-task=1 --time=5" EVAL_DATA=$T/held.txt
export EVAL_ARGS="--form parallel" EVAL_MAX_PARALLEL=1

submit() { # submit RUN_DIR: jobs/submit.sh; sets train_id, eval_id
	local out
	out=$(RUN_DIR=$1 "$REPO/jobs/submit.sh" 2>&1)
	echo "$out" | sed 's/^/     /'
	train_id=$(sed -n 's/^train job: //p' <<<"$out")
	eval_id=$(sed -n 's/^eval job: //p' <<<"$out")
	[[ -n $train_id && -n $eval_id ]]
}

# ---- (a) training across 2 nodes, then the evaluation array ----------------------
if [[ $CASES == *a* ]]; then
echo "== (a) jobs/submit.sh --nodes=2: training, then evaluation of checkpoints 500 and latest"
t0=$SECONDS
out=$(RUN_DIR=$T/a ITERATIONS="100 latest" "$REPO/jobs/submit.sh" 2>&1)
check "(a) submit.sh refuses ITERATIONS 100 that KEEP_LAST=2 prunes: $out" \
	grep -q "checkpoint 100 will be pruned: KEEP_LAST=2 keeps 500 600" <<<"$out"
if SBATCH_EXPORT=NONE ITERATIONS="500 latest" submit "$T/a"; then
	wait_for "(a) training" 120 gone "$train_id" && wait_for "(a) evaluation" 120 gone "$eval_id"
	log=$T/retnet-train-$train_id.out
	check "(a) training: $(summary "$train_id") (want COMPLETED 0:0 restarts=0)" \
		test "$(summary "$train_id")" = "COMPLETED 0:0 restarts=0"
	check "(a) srun --mpi=pmix: rank 0 on ${CLUSTER_NODES[0]}, rank 1 on ${CLUSTER_NODES[1]}" eval \
		'grep -q "placement: node ${CLUSTER_NODES[0]} ranks 0 " "$log" &&
		 grep -q "placement: node ${CLUSTER_NODES[1]} ranks 1 " "$log"'
	check "(a) knobs reached the job under SBATCH_EXPORT=NONE (RUN_DIR $T/a)" \
		grep -q "^==   RUN_DIR  *$T/a$" "$log"
	check "(a) ENV_SCRIPT sourced in the job" grep -q "sourced ENV_SCRIPT $T/env.sh" "$log"
	states=$(field "$eval_id" JobState | sort | uniq -c | xargs)
	check "(a) evaluation array: 2 tasks COMPLETED ($states)" test "$states" = "2 COMPLETED"
	check "(a) at most EVAL_MAX_PARALLEL=1 task at once (ArrayTaskThrottle=$(field "$eval_id" ArrayTaskThrottle | head -n 1))" \
		test "$(field "$eval_id" ArrayTaskThrottle | head -n 1)" = 1
	for it in 500 600; do
		f=$T/a/eval/held.txt-$it.jsonl
		check "(a) held.txt-$it.jsonl (latest = 600 by name), form $(json_column "$f" form 2>/dev/null) from EVAL_ARGS" \
			grep -q '"form":"parallel"' "$f"
	done
else
	bad "(a) submit.sh printed both job ids"
fi
echo "== (a) took $((SECONDS - t0)) s"
fi

# ---- (b) USR1 mid-run: requeue and resume; a second job on its RUN_DIR refused ---
if [[ $CASES == *b* ]]; then
echo "== (b) the same run, USR1 to the batch shell once past iteration 120"
t0=$SECONDS
if ITERATIONS=latest submit "$T/b"; then
	if wait_for "(b) iteration 60" 120 at_iteration "$T/b/metrics.jsonl" 60; then
		out=$(RUN_DIR=$T/b ITERATIONS=latest "$REPO/jobs/submit.sh" 2>&1)
		check "(b) submit.sh refuses a second job on RUN_DIR: $out" \
			grep -q "RUN_DIR $T/b is in use by job $train_id" <<<"$out"
		second=$(RUN_DIR=$T/b sbatch --parsable --export=ALL $TRAIN_SBATCH_ARGS -o "$T/second-%j.out" \
			"$REPO/jobs/train.sbatch")
		wait_for "(b) the second job" 60 gone "$second"
		check "(b) sbatch of a second job on RUN_DIR: $(summary "$second") (want FAILED 2:0)" \
			test "$(summary "$second")" = "FAILED 2:0 restarts=0"
		check "(b) ... saying who holds it" grep -q "RUN_DIR $T/b is in use (job=$train_id " \
			"$T/second-$second.out"
	fi
	if wait_for "(b) iteration 120" 120 at_iteration "$T/b/metrics.jsonl" 120; then
		scancel --batch --signal=USR1 "$train_id"
		ok "(b) scancel --batch --signal=USR1 $train_id past iteration 120"
	else
		bad "(b) training reached iteration 120"
	fi
	wait_for "(b) training" 180 gone "$train_id" && wait_for "(b) evaluation" 120 gone "$eval_id"
	log=$T/retnet-train-$train_id.out
	check "(b) training: $(summary "$train_id") (want COMPLETED 0:0 restarts=1)" \
		test "$(summary "$train_id")" = "COMPLETED 0:0 restarts=1"
	stop=$(sed -n 's/.*stopped at iteration \([0-9]*\) of 600 (signal); checkpoint written.*/\1/p' "$log")
	check "(b) stopped at iteration ${stop:-?} with a checkpoint, requeued" \
		grep -q "checkpoint ${stop:-x} written: requeueing job $train_id" "$log"
	check "(b) the second run resumed from iteration ${stop:-?}" \
		grep -q "resumed from $T/b/ckpt/iter_0*${stop:-x}.h5 (iteration ${stop:-x}," "$log"
	check "(b) final checkpoint = (a)'s, every model and optimizer tensor to the bit" eval \
		'h5diff -r "$T/a/ckpt/iter_0000600.h5" "$T/b/ckpt/iter_0000600.h5" /model /model >/dev/null &&
		 h5diff -r "$T/a/ckpt/iter_0000600.h5" "$T/b/ckpt/iter_0000600.h5" /optimizer /optimizer >/dev/null'
	check "(b) its evaluation ran after the requeue ($(field "$eval_id" JobState)), (a)'s numbers" \
		cmp -s "$T/b/eval/held.txt-600.jsonl" "$T/a/eval/held.txt-600.jsonl"
else
	bad "(b) submit.sh printed both job ids"
fi
echo "== (b) took $((SECONDS - t0)) s"
fi

# ---- (g), submitted now: it runs beside (c) ----------------------------------------
if [[ $CASES == *g* ]]; then
# the deadline already past at start-up: every run stops before its first step
g_id=$(RUN_DIR=$T/g MAX_REQUEUES=1 sbatch --parsable --export=ALL --nodes=1 --ntasks=1 \
	--cpus-per-task=1 -o "$T/g-%j.out" "$REPO/jobs/train.sbatch" --exit-duration-in-mins 0.00006)
fi

# ---- (c) the default layout, and --nodes=4 ------------------------------------
if [[ $CASES == *c* ]]; then
echo "== (c) train.sbatch's default nodes and tasks with the default config's batch"
t0=$SECONDS
small=(--vocab-size 256 --num-layers 1 --hidden-size 64 --ffn-hidden-size 128 --seq-length 32
	--chunk-size 8 --train-iters 3 --log-interval 1)
for n in default 4; do
	opts=(--cpus-per-task=1)
	[[ $n == 4 ]] && opts+=(--nodes=4)
	id=$(cd "$REPO" && RUN_DIR=$T/c$n CONFIG=jobs/configs/kjv-small.cfg KEEP_LAST=3 sbatch \
		--parsable --export=ALL "${opts[@]}" -o "$T/c$n-%j.out" jobs/train.sbatch "${small[@]}")
	wait_for "(c) $n" 120 gone "$id"
	layout=$(grep -m1 "^== layout" "$T/c$n-$id.out")
	check "(c) --nodes=$n: $(summary "$id"): $layout" test "$(summary "$id")" = "COMPLETED 0:0 restarts=0"
done
check "(c) the default: 8 ranks = DP 2 x TP 4" grep -q "^== layout: 8 ranks = DP 2 x PP 1 x TP 4 " "$T"/cdefault-*.out
check "(c) --nodes=4: 16 ranks = DP 4 x TP 4, micro-batch 2" \
	grep -q "^== layout: 16 ranks = DP 4 x PP 1 x TP 4 .*micro-batch 2 (lowered" "$T"/c4-*.out
check "(c) no warning about the PMIx fence under the scripts' settings" \
	bash -c "! grep -q 'SLURM_PMIX_FENCE is not set' '$T'/cdefault-*.out '$T'/c4-*.out"
echo "== (c) took $((SECONDS - t0)) s"
fi

# ---- (d) LAUNCHER=mpirun across 2 nodes ----------------------------------------
if [[ $CASES == *d* ]]; then
echo "== (d) LAUNCHER=mpirun, 2 nodes x 2 tasks, --time=2, STOP_LEAD_MINS=1.5"
t0=$SECONDS
id=$(RUN_DIR=$T/d LAUNCHER=mpirun STOP_LEAD_MINS=1.5 sbatch --parsable --export=ALL --nodes=2 \
	--ntasks-per-node=2 --cpus-per-task=1 --time=2 -o "$T/d-%j.out" "$REPO/jobs/train.sbatch" \
	--train-iters 1000000)
step_cpus=
if wait_for "(d) training under way" 60 at_iteration "$T/d/metrics.jsonl" 10; then
	step_cpus=$(scontrol show step "$id.0" 2>/dev/null | sed -n 's/.* CPUs=\([0-9]*\) .*/\1/p')
fi
wait_for "(d) the stop at the deadline" 90 grep -q "requeueing job $id" "$T/d-$id.out"
scancel "$id"
wait_for "(d) cancelled" 30 gone "$id"
check "(d) mpirun in the allocation ran, no world-size complaint" eval \
	'grep -q "^iter " "$T/d-$id.out" && ! grep -q "did not wire up" "$T/d-$id.out"'
check "(d) ranks 0-1 on one node, 2-3 on the other" \
	test "$(grep -c "placement: node .* ranks [02]-[13] " "$T/d-$id.out")" -eq 2
check "(d) mpirun's daemon step has the job's 2 CPUs on its node, not one task's (CPUs=$step_cpus)" \
	test "${step_cpus:-0}" -eq 2
deadline_at=$(sed -n 's/^== deadline [0-9-]* \([0-9:]*\):.*/\1/p' "$T/d-$id.out" | head -n 1)
stop=$(grep -o "stopped at iteration [0-9]* of [0-9]* (--exit-duration-in-mins); checkpoint written" "$T/d-$id.out" | head -n 1)
check "(d) stopped at the deadline ($deadline_at, 30 s in) with a checkpoint: $stop" test -n "$stop"
check "(d) ... at $(sed -n 's/^== \([0-9:]*\) checkpoint [0-9]* written: requeueing.*/\1/p' "$T/d-$id.out" | head -n 1), requeued" \
	eval 'at=$(sed -n "s/^== \([0-9:]*\) checkpoint [0-9]* written: requeueing.*/\1/p" "$T/d-$id.out" | head -n 1);
	      d=$(( $(date -d "$at" +%s) - $(date -d "$deadline_at" +%s) )); ((d >= -5 && d <= 15))'
echo "== (d) took $((SECONDS - t0)) s"
fi

# ---- (e) an MPI plugin SLURM lacks; tasks that did not wire up ------------------
if [[ $CASES == *e* ]]; then
echo "== (e) SRUN_MPI=pmi9; a step whose tasks are not one MPI world"
id=$(RUN_DIR=$T/e SRUN_MPI=pmi9 sbatch --parsable --export=ALL --nodes=1 --ntasks=1 \
	--cpus-per-task=1 -o "$T/e-%j.out" "$REPO/jobs/train.sbatch")
wait_for "(e) SRUN_MPI" 60 gone "$id"
check "(e) SRUN_MPI=pmi9: $(summary "$id") (want FAILED 2:0)" test "$(summary "$id")" = "FAILED 2:0 restarts=0"
check "(e) ... naming the plugins there are: $(grep -o 'no such MPI plugin.*' "$T/e-$id.out")" \
	grep -q "srun --mpi=pmi9: this SLURM has no such MPI plugin (srun --mpi=list: .*pmix.*)" "$T/e-$id.out"
# SLURM_STEP_NUM_TASKS as srun would set it for a step of 3 tasks that came up as a
# world of 2 (Debian's Open MPI refuses to start at all without PMIx, so the
# mismatch is staged: what retnet checks is the variable against the world).
cat >"$T/wire.sbatch" <<EOF
#!/bin/bash
srun --mpi=pmix env SLURM_STEP_NUM_TASKS=3 $BUILD/retnet-train --data-path $CORPUS-train.bin --train-iters 1
EOF
id=$(sbatch --parsable --export=ALL --nodes=2 --ntasks-per-node=1 -o "$T/wire-%j.out" "$T/wire.sbatch")
wait_for "(e) wire" 60 gone "$id"
check "(e) a world of 2 in a step of 3 tasks: exit 2, one line: $(grep -o 'retnet: error: srun started.*' "$T/wire-$id.out" | cut -c1-90)..." \
	eval 'test "$(grep -c "retnet: error: srun started 3 tasks (SLURM_STEP_NUM_TASKS) but MPI_COMM_WORLD has 2 ranks" "$T/wire-$id.out")" -eq 1 &&
	      grep -q "Exited with exit code 2" "$T/wire-$id.out"'
check "(e) ... and task 0 alone warned that the step runs on SLURM's default PMIx fence" \
	test "$(grep -c "retnet: warning: srun started this step on 2 nodes through PMIx and SLURM_PMIX_FENCE is not set" "$T/wire-$id.out")" -eq 1
fi

# ---- (f) a node dies under srun -------------------------------------------------
if [[ $CASES == *f* ]]; then
echo "== (f) every process of a node killed (slurmd too), mid-step, under srun"
t0=$SECONDS
id=$(RUN_DIR=$T/f sbatch --parsable --export=ALL --nodes=2 --ntasks-per-node=2 --cpus-per-task=1 \
	-o "$T/f-%j.out" "$REPO/jobs/train.sbatch" --train-iters 1000000)
if wait_for "(f) training under way" 60 at_iteration "$T/f/metrics.jsonl" 110; then
	victim=$(grep -o "placement: node [^ ]* ranks 2-3 " "$T/f-$id.out" | cut -d' ' -f3)
	k=0
	for ((i = 0; i < ${#CLUSTER_NODES[@]}; i++)); do [[ ${CLUSTER_NODES[i]} == "$victim" ]] && k=$((i + 1)); done
	if ((k > 0)); then
		start=$EPOCHREALTIME
		echo "     killing every process of $victim at $(date +%T.%N | cut -c1-12)"
		cluster_kill_node "$k"
		wait_for "(f) the requeue" 60 grep -q "requeueing job $id" "$T/f-$id.out"
		secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
		echo "     killed $victim; the job script requeued $secs s later"
		check "(f) the step ended and the job was requeued within 30 s ($secs s)" \
			awk -v s="$secs" 'BEGIN { exit !(s <= 30) }'
		check "(f) naming the lost node and ranks: $(grep -o "lost: node .*" "$T/f-$id.out")" \
			grep -q "lost: node $victim, ranks 2-3" "$T/f-$id.out"
	else
		bad "(f) found the node of ranks 2-3 in the placement lines"
	fi
	scancel "$id"
else
	bad "(f) training under way"
fi
echo "== (f) took $((SECONDS - t0)) s"
fi

# ---- (g), checked: requeued once, then not --------------------------------------
if [[ $CASES == *g* ]]; then
echo "== (g) stopped before the first step, again and again, MAX_REQUEUES=1"
wait_for "(g)" 90 gone "$g_id"
check "(g) the job: $(summary "$g_id") (want FAILED 4:0 restarts=1)" test "$(summary "$g_id")" = "FAILED 4:0 restarts=1"
check "(g) the first stop before any step was requeued" \
	grep -q "exit status 4, no checkpoint newer than none: requeueing job $g_id (1 of at most 1 in a row)" "$T/g-$g_id.out"
check "(g) the second was not: $(grep -o 'not requeueing again.*' "$T/g-$g_id.out")" \
	grep -q "exit status 4, and 1 requeues in a row found no checkpoint newer than none: not requeueing again (MAX_REQUEUES=1)" "$T/g-$g_id.out"
fi

# ---- (h) the barrier that ends MPI_Init spans the nodes -------------------------
# Open MPI ends MPI_Init and MPI_Finalize with the same kind of PMIx fence; the
# one in MPI_Finalize can be timed from outside. One rank on each of 2 nodes;
# the one on the job's last node sleeps 4 s first. Under the jobs' srun settings
# the other waits for it; under SLURM's default fences (a tree, none on fewer
# nodes than TreeWidth) it does not, which is how a rank could leave MPI_Init and
# send to a node still inside it (Open MPI 4.1 crashes that node's ranks).
if [[ $CASES == *h* ]]; then
echo "== (h) MPI_Init's and MPI_Finalize's barriers span the nodes under srun --mpi=pmix"
for fences in jobs default; do
	{
		echo '#!/bin/bash'
		echo "source '$REPO/jobs/lib.sh'"
		[[ $fences == jobs ]] && echo 'rn_srun_pmix_fence pmix'
		echo 'late=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | tail -n 1)'
		echo 'echo "SLURM_PMIX_FENCE=${SLURM_PMIX_FENCE-}, late node $late"'
		echo "srun --mpi=pmix '$BUILD/tests/finalize_wait' 4 \"\$late\""
	} >"$T/h-$fences.sbatch"
	id=$(sbatch --parsable --export=ALL --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 \
		-o "$T/h-$fences-%j.out" "$T/h-$fences.sbatch")
	wait_for "(h) $fences" 60 gone "$id"
	late=$(sed -n 's/.*, late node \(.*\)$/\1/p' "$T/h-$fences-$id.out")
	# the rank on the other node: how long MPI_Finalize kept it
	waited=$(awk -v late="${late:-?}" '$1 == "rank" && $4 != late && $5 == "waited" { print $6 }' \
		"$T/h-$fences-$id.out")
	if [[ $fences == jobs ]]; then
		check "(h) with the jobs' settings ($(grep -m1 -o 'SLURM_PMIX_FENCE=[^,]*' "$T/h-$fences-$id.out")) the other node waited in MPI_Finalize for ${late:-?}: ${waited:-?} s (want >= 3)" \
			awk -v w="${waited:-0}" 'BEGIN { exit !(w >= 3) }'
	else
		check "(h) with SLURM's default fences it did not: ${waited:-?} s (want < 2: why the jobs set a ring)" \
			awk -v w="${waited:-9}" 'BEGIN { exit !(w < 2) }'
	fi
done
fi

((fail > 0)) && show_logs
finish
