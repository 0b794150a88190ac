#!/usr/bin/env bash
# The jobs/ scripts on a real SLURM: starts a one-node cluster (munged, slurmctld,
# slurmd; 2 CPUs) under a temporary directory with slurm_cluster.sh, trains a tiny
# model with 2 ranks x 1 thread through sbatch and checks:
#  (a) jobs/submit.sh: training, then the evaluation array (2 corpora x 2
#      checkpoints) after it with afterok; every task writes its JSON with a finite
#      bits_per_byte; the ranks run on CPUs of their own;
#  (b) the same, signalled mid-run (scancel --batch --signal=USR1): the ranks
#      checkpoint, the job is requeued (Restarts=1, SLURM_RESTART_COUNT in the log),
#      resumes from that checkpoint and ends with (a)'s final loss to the bit; the
#      evaluation waited through the requeue and wrote exactly (a)'s JSON;
#  (c) a plain scancel: the ranks still checkpoint, but the job is not requeued.
# Every wait has a timeout (the whole test: BUDGET seconds); on failure it prints
# the job logs and the daemons' logs. The cluster is stopped on any exit, and by a
# detached watcher if this script is killed outright (CTest's timeout).
# Needs root and Debian's slurmctld slurmd slurm-client munge (scripts/install-deps.sh);
# without them it fails and says so.
# Usage: test_jobs.sh BUILD_DIR      Knobs: BUDGET (600), KEEP=1 keeps the directory.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: test_jobs.sh BUILD_DIR}" && pwd)
source "$REPO/tests/cli/lib.sh"
CLUSTER=$HERE/slurm_cluster.sh
BUDGET=${BUDGET:-600}
deadline=$((SECONDS + BUDGET))
ITERS=300

cannot_run() {
	echo "test_jobs: FAIL: cannot run: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}
[[ $(id -u) -eq 0 ]] || cannot_run "needs root: it starts munged, slurmctld and slurmd"
for cmd in munged slurmctld slurmd sbatch squeue scontrol scancel bible; do
	command -v "$cmd" >/dev/null ||
		cannot_run "'$cmd' missing: run scripts/install-deps.sh (slurmctld slurmd slurm-client munge bible-kjv)"
done
for exe in retnet-train retnet-eval data/retnet-prep; do
	[[ -x $BUILD/$exe ]] || cannot_run "$BUILD/$exe missing: build first"
done
# Nothing from a surrounding job or the caller's sbatch defaults reaches ours.
for v in $(compgen -v | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_'); do unset "$v"; done

T=$(mktemp -d /tmp/rn_slurm_jobs.XXXXXX)
chmod 755 "$T" # munged runs as the munge user and keeps its socket in $T/cluster
cleanup() {
	bash "$CLUSTER" stop "$T/cluster" >/dev/null 2>&1
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A watcher outside this process tree (double fork, own session) stops the daemons
# if this shell dies without running its EXIT trap.
# shellcheck disable=SC2016 # $1.. are the watcher's own arguments
(setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done
	bash "$2" stop "$3"; [[ $5 == 1 ]] || rm -rf "$4"' watcher $$ "$CLUSTER" "$T/cluster" "$T" \
	"${KEEP:-0}" </dev/null >/dev/null 2>&1 &)

# wait_for LABEL SECONDS CMD...: until CMD succeeds; fails after SECONDS or at the
# test's deadline.
wait_for() {
	local label=$1 limit=$((SECONDS + $2))
	shift 2
	((limit > deadline)) && limit=$deadline
	until "$@"; do
		if ((SECONDS >= limit)); then
			echo "test_jobs: timed out waiting for: $label" >&2
			return 1
		fi
		sleep 0.5
	done
}
gone() { [[ -z $(squeue -h -j "$1" 2>/dev/null) ]]; } # neither pending nor running
at_iteration() { grep -q "\"iteration\":$2," "$1" 2>/dev/null; }
field() { scontrol show job -o "$1" 2>/dev/null | grep -o " $2=[^ ]*" | cut -d= -f2-; }
summary() { echo "$(field "$1" JobState) $(field "$1" ExitCode) restarts=$(field "$1" Restarts)"; }
last_loss() { json_column "$1" loss | tail -n 1; }
finite_bpb() { # the file's bits_per_byte values are all finite and positive
	local v
	v=$(json_column "$1" bits_per_byte)
	[[ -n $v ]] && awk '{ if (!($1 + 0 > 0 && $1 + 0 < 100)) bad = 1 } END { exit bad }' <<<"$v"
}
# The CPUs each rank of the run in DIR may use, one line per rank.
rank_cpus() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(cat "$p/comm" 2>/dev/null) == retnet-train ]] &&
			tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "--save $1/ckpt " &&
			awk '/^Cpus_allowed_list/ { print $2 }' "$p/status"
	done | sort
}
one_cpu_each() { # one_cpu_each "A B ": two ranks, each on one CPU, not the same one
	local a b
	read -r a b <<<"$1"
	[[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ && $a != "$b" ]]
}

show_logs() {
	local f
	for f in "$T"/*.out; do
		[[ -f $f ]] || continue
		echo "---- last 40 lines of $(basename "$f")"
		tail -n 40 "$f"
	done
	bash "$CLUSTER" logs "$T/cluster"
}

# ---- cluster, corpus, model --------------------------------------------------
t0=$SECONDS
if ! bash "$CLUSTER" start "$T/cluster"; then
	bad "cluster started"
	show_logs
	finish
	exit 1
fi
export SLURM_CONF=$T/cluster/slurm.conf
ok "cluster up in $((SECONDS - t0)) s: $(sinfo -h -o '%n %c CPUs %T')"

bible -f Gen1:1-Rev22:21 >"$T/kjv-all.txt"
head -c 1000000 "$T/kjv-all.txt" >"$T/kjv.txt"
tail -c +1000001 "$T/kjv-all.txt" | head -c 40000 | gzip >"$T/held.txt.gz"
"$BUILD/data/retnet-prep" --output-prefix "$T/kjv" "$T/kjv.txt" >/dev/null
cat >"$T/tiny.cfg" <<EOF
num-layers 2
hidden-size 64
num-heads 4
ffn-hidden-size 128
seq-length 64
chunk-size 16
micro-batch-size 4
global-batch-size 8
train-iters $ITERS
lr 2e-3
lr-warmup-iters 20
lr-decay-style cosine
seed 7
log-interval 10
eval-interval 100
eval-iters 4
EOF
cd "$T" || exit 1 # the jobs' logs (%x-%j.out) land here
export RETNET_BUILD=$BUILD CONFIG=$T/tiny.cfg DATA=$T/kjv-train.bin VALID_DATA=$T/kjv-valid.bin
# TP=1: data parallelism over the 2 ranks (train.sbatch's default is TP = tasks per node)
export SAVE_INTERVAL=100 KEEP_LAST=0 TP=1
export TRAIN_SBATCH_ARGS="--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=15"
export EVAL_SBATCH_ARGS="--cpus-per-task=1 --time=5"

# submit RUN_DIR: jobs/submit.sh with RUN_DIR; sets train_id and eval_id.
submit() {
	local out
	out=$(RUN_DIR=$1 "$REPO/jobs/submit.sh" 2>&1)
	echo "$out"
	train_id=$(sed -n 's/^train job: //p' <<<"$out")
	eval_id=$(sed -n 's/^eval job: //p' <<<"$out")
	[[ -n $train_id && -n $eval_id ]]
}

# ---- (a) training, then the evaluation array ---------------------------------
echo "== (a) jobs/submit.sh: training, then evaluation (2 corpora x 2 checkpoints)"
t0=$SECONDS
export EVAL_DATA="$T/kjv-valid.bin $T/held.txt.gz" ITERATIONS="100 latest"
if submit "$T/a"; then
	ok "(a) submitted: train $train_id, eval array $eval_id"
	if wait_for "(a) iteration 20" 120 at_iteration "$T/a/metrics.jsonl" 20; then
		cpus=$(rank_cpus "$T/a" | tr '\n' ' ')
		check "(a) srun --cpu-bind=cores: one CPU per rank, not shared (ranks on CPUs: $cpus)" \
			one_cpu_each "$cpus"
	fi
	wait_for "(a) training" 300 gone "$train_id" && wait_for "(a) evaluation" 120 gone "$eval_id"
	s=$(summary "$train_id")
	check "(a) training: $s (want COMPLETED 0:0 restarts=0)" test "$s" = "COMPLETED 0:0 restarts=0"
	states=$(field "$eval_id" JobState | sort | uniq -c | xargs)
	check "(a) evaluation array: 4 tasks COMPLETED ($states)" test "$states" = "4 COMPLETED"
	# "latest" resolved: outputs are named by the checkpoint's real iteration
	for f in kjv-valid.bin-100 kjv-valid.bin-$ITERS held.txt.gz-100 held.txt.gz-$ITERS; do
		check "(a) $f.jsonl: bits_per_byte $(json_column "$T/a/eval/$f.jsonl" bits_per_byte 2>/dev/null)" \
			finite_bpb "$T/a/eval/$f.jsonl"
	done
	check "(a) checkpoint 100 scores worse than the final one" awk -v a="$(json_column \
		"$T/a/eval/kjv-valid.bin-100.jsonl" nll)" -v b="$(json_column \
		"$T/a/eval/kjv-valid.bin-$ITERS.jsonl" nll)" 'BEGIN { exit !(a > b) }'
else
	bad "(a) submit.sh printed both job ids"
fi
echo "== (a) took $((SECONDS - t0)) s"

# ---- (b) signalled mid-run: checkpoint, requeue, resume ---------------------
echo "== (b) the same run, USR1 to the batch shell once past iteration 120"
t0=$SECONDS
export EVAL_DATA=$T/kjv-valid.bin ITERATIONS=latest
if submit "$T/b"; then
	if wait_for "(b) iteration 120" 180 at_iteration "$T/b/metrics.jsonl" 120; then
		scancel --batch --signal=USR1 "$train_id"
		ok "(b) scancel --batch --signal=USR1 $train_id after iteration 120"
	else
		bad "(b) training reached iteration 120"
	fi
	wait_for "(b) training" 300 gone "$train_id" && wait_for "(b) evaluation" 120 gone "$eval_id"
	log=$T/retnet-train-$train_id.out
	s=$(summary "$train_id")
	check "(b) training: $s (want COMPLETED 0:0 restarts=1)" test "$s" = "COMPLETED 0:0 restarts=1"
	stop=$(sed -n "s/.*stopped at iteration \([0-9]*\) of $ITERS (signal); checkpoint written.*/\1/p" "$log")
	check "(b) the ranks stopped at iteration ${stop:-?} (>= 120) with a checkpoint" \
		test "${stop:-0}" -ge 120 -a "${stop:-0}" -lt "$ITERS"
	check "(b) the batch script requeued the job" grep -q "checkpoint ${stop:-x} written: requeueing job $train_id" "$log"
	check "(b) second run: SLURM_RESTART_COUNT=1" grep -q "job $train_id (restart 1)" "$log"
	check "(b) second run resumed from iteration ${stop:-?}" \
		grep -q "resumed from $T/b/ckpt/iter_0*${stop:-x}.h5 (iteration ${stop:-x}," "$log"
	requeued=$(sed -n 's/^== \([0-9:]*\) checkpoint .* requeueing.*/\1/p' "$log")
	restarted=$(sed -n 's/^== [0-9-]* \([0-9:]*\) job .* (restart 1).*/\1/p' "$log")
	[[ -n $requeued && -n $restarted ]] && echo "     requeued at $requeued, started again at $restarted"
	check "(b) final loss $(last_loss "$T/b/metrics.jsonl") = uninterrupted $(last_loss "$T/a/metrics.jsonl") (bitwise)" \
		test "$(last_loss "$T/b/metrics.jsonl")" = "$(last_loss "$T/a/metrics.jsonl")" \
		-a -n "$(last_loss "$T/a/metrics.jsonl")"
	check "(b) evaluation after the requeued training: COMPLETED ($(field "$eval_id" JobState))" \
		test "$(field "$eval_id" JobState)" = COMPLETED
	check "(b) its JSON = (a)'s for the final checkpoint (byte for byte)" \
		cmp -s "$T/b/eval/kjv-valid.bin-$ITERS.jsonl" "$T/a/eval/kjv-valid.bin-$ITERS.jsonl"
else
	bad "(b) submit.sh printed both job ids"
fi
echo "== (b) took $((SECONDS - t0)) s"

# ---- (c) scancel cancels: checkpoint kept, no requeue -------------------------
echo "== (c) train.sbatch, plain scancel once past iteration 50"
t0=$SECONDS
read -r -a opts <<<"$TRAIN_SBATCH_ARGS"
train_id=$(RUN_DIR=$T/c sbatch --parsable "${opts[@]}" "$REPO/jobs/train.sbatch")
train_id=${train_id%%;*}
if [[ -n $train_id ]] && wait_for "(c) iteration 50" 180 at_iteration "$T/c/metrics.jsonl" 50; then
	scancel "$train_id"
	wait_for "(c) the cancelled job" 60 gone "$train_id"
	s=$(summary "$train_id")
	check "(c) job: $s (want CANCELLED restarts=0)" grep -Eq '^CANCELLED .* restarts=0$' <<<"$s"
	check "(c) the ranks checkpointed (iteration $(cat "$T/c/ckpt/latest" 2>/dev/null)); the script did not requeue" \
		grep -q "job cancelled (COMPLETING.*): checkpoint $(cat "$T/c/ckpt/latest" 2>/dev/null) kept, not requeueing" \
		"$T/retnet-train-$train_id.out"
else
	bad "(c) training submitted and past iteration 50"
fi
echo "== (c) took $((SECONDS - t0)) s"

if ((fail > 0)); then
	show_logs
fi
finish
