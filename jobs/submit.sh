#!/usr/bin/env bash
# Submits training (jobs/train.sbatch), then the evaluation array (jobs/eval.sbatch)
# that starts only when training has finished with exit 0: afterok waits through
# train.sbatch's requeues, and --kill-on-invalid-dep=yes removes the array if
# training fails.
#
#   jobs/submit.sh [retnet-train flags...]      (from the repository root)
#
# Knobs (environment): those of train.sbatch and eval.sbatch (RETNET_BUILD, RUN_DIR,
# LAUNCHER, ... reach both jobs, since sbatch passes the environment on), and
#   TRAIN_SBATCH_ARGS  ("")   extra sbatch options for training, e.g. "--nodes=4 --time=12:00:00"
#   EVAL_SBATCH_ARGS   ("")   extra sbatch options for the evaluation array
#   EVAL_DATA, ITERATIONS     as in eval.sbatch: the array has one task per pair
# Prints "train job: ID" and "eval job: ID".
set -euo pipefail
jobs_dir=$(dirname "$0")
read -r -a train_opts <<<"${TRAIN_SBATCH_ARGS:-}"
read -r -a eval_opts <<<"${EVAL_SBATCH_ARGS:-}"
read -r -a corpora <<<"${EVAL_DATA-out/main-job/kjv-valid.bin}"
read -r -a iterations <<<"${ITERATIONS-latest}"
tasks=$((${#corpora[@]} * ${#iterations[@]}))
if ((tasks == 0)); then
	echo "submit.sh: EVAL_DATA or ITERATIONS is empty" >&2
	exit 2
fi

train_id=$(sbatch --parsable "${train_opts[@]}" "$jobs_dir/train.sbatch" "$@")
train_id=${train_id%%;*} # "id;cluster" on federated sites
echo "train job: $train_id"
eval_id=$(sbatch --parsable --dependency="afterok:$train_id" --kill-on-invalid-dep=yes \
	--array="0-$((tasks - 1))" "${eval_opts[@]}" "$jobs_dir/eval.sbatch")
echo "eval job: ${eval_id%%;*}"
