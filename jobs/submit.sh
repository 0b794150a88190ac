#!/usr/bin/env bash
# Submits training (jobs/train.sbatch), then the evaluation array (jobs/eval.sbatch)
# that starts only when training has finished with exit 0: afterok waits through
# train.sbatch's requeues, and --kill-on-invalid-dep=yes removes the array if
# training fails.
#
#   jobs/submit.sh [retnet-train flags...]      (from the repository root)
#
# Before submitting it checks what would fail later: RUN_DIR in use by a live job
# (RUN_DIR/lock), and checkpoints named in ITERATIONS that training will not keep
# (not a save point, or pruned by KEEP_LAST). Both jobs get --export=ALL on the
# command line, which wins over a site's SBATCH_EXPORT=NONE.
#
# Knobs (environment): those of train.sbatch and eval.sbatch (RETNET_BUILD, RUN_DIR,
# LAUNCHER, ... reach both jobs), and
#   TRAIN_SBATCH_ARGS  ("")   extra sbatch options for training, e.g. "--nodes=4 --time=12:00:00"
#   EVAL_SBATCH_ARGS   ("")   extra sbatch options for the evaluation array
#   EVAL_DATA, ITERATIONS     as in eval.sbatch: the array has one task per pair
#   EVAL_ARGS          ("")   retnet-eval flags, e.g. "--mode stream --form recurrent"
#   EVAL_MAX_PARALLEL  (4)    evaluation tasks running at once (--array=...%N)
# Prints "train job: ID" and "eval job: ID".
set -euo pipefail
RETNET_JOBS=$(cd "$(dirname "$0")" && pwd)
export RETNET_JOBS # the batch scripts run from a copy in SLURM's spool: lib.sh is here
# shellcheck source=jobs/lib.sh
source "$RETNET_JOBS/lib.sh"
read -r -a train_opts <<<"${TRAIN_SBATCH_ARGS:-}"
read -r -a eval_opts <<<"${EVAL_SBATCH_ARGS:-}"
read -r -a eval_args <<<"${EVAL_ARGS:-}"
read -r -a corpora <<<"${EVAL_DATA-out/main-job/kjv-valid.bin}"
read -r -a iterations <<<"${ITERATIONS-latest}"
RUN_DIR=${RUN_DIR-${SCRATCH:-$HOME/retnet-runs}/retnet}
CONFIG=${CONFIG-jobs/configs/kjv-small.cfg}
tasks=$((${#corpora[@]} * ${#iterations[@]}))
if ((tasks == 0)); then
	echo "submit.sh: EVAL_DATA or ITERATIONS is empty" >&2
	exit 2
fi

# A live job in RUN_DIR: the new one would be refused when it starts.
if [[ -f $RUN_DIR/lock/owner ]]; then
	job=$(sed -n 's/.*job=\([^ ]*\).*/\1/p' "$RUN_DIR/lock/owner")
	if [[ -n $job && $job != none && -n $(squeue -h -j "$job" -o %i 2>/dev/null) ]]; then
		echo "submit.sh: RUN_DIR $RUN_DIR is in use by job $job: wait for it, chain after it" \
			"(TRAIN_SBATCH_ARGS=--dependency=afterany:$job) or use another RUN_DIR" >&2
		exit 2
	fi
fi

# The checkpoints training will keep: every SAVE_INTERVAL steps and the last, the
# newest KEEP_LAST of them (a stop for preemption or the deadline saves one more,
# which counts too: keep a margin, or KEEP_LAST=0).
iters=$(rn_setting train-iters "$@")
save_interval=${SAVE_INTERVAL-100}
keep=${KEEP_LAST-3}
if [[ $iters =~ ^[0-9]+$ && $save_interval =~ ^[0-9]+$ ]]; then
	points=$( (
		((save_interval > 0)) && seq "$save_interval" "$save_interval" "$iters"
		echo "$iters"
	) | sort -n -u)
	kept=$points
	((keep > 0)) && kept=$(tail -n "$keep" <<<"$points")
	for it in "${iterations[@]}"; do
		[[ $it == latest ]] && continue
		if ! grep -qx "$it" <<<"$points"; then
			echo "submit.sh: ITERATIONS: $it is not a checkpoint training will write (every" \
				"SAVE_INTERVAL=$save_interval steps and the last, $iters)" >&2
			exit 2
		fi
		if ! grep -qx "$it" <<<"$kept"; then
			echo "submit.sh: ITERATIONS: checkpoint $it will be pruned: KEEP_LAST=$keep keeps" \
				"$(xargs <<<"$kept"); raise KEEP_LAST (0 keeps all) or evaluate later ones" >&2
			exit 2
		fi
	done
fi

train_id=$(sbatch --parsable --export=ALL "${train_opts[@]}" "$RETNET_JOBS/train.sbatch" "$@")
train_id=${train_id%%;*} # "id;cluster" on federated sites
echo "train job: $train_id"
eval_id=$(sbatch --parsable --export=ALL --dependency="afterok:$train_id" \
	--kill-on-invalid-dep=yes --array="0-$((tasks - 1))%${EVAL_MAX_PARALLEL:-4}" \
	"${eval_opts[@]}" "$RETNET_JOBS/eval.sbatch" "${eval_args[@]}")
echo "eval job: ${eval_id%%;*}"
