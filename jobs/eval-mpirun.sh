#!/usr/bin/env bash
# Evaluation of trained checkpoints on held-out corpora with plain mpirun (Open MPI),
# for machines without SLURM: what jobs/eval.sbatch's array does, one pair after the
# other. Each (corpus, checkpoint) pair writes one JSON line (keys corpus tokens bytes
# nll perplexity bits_per_byte mode form) to RUN_DIR/eval/<corpus file name>-<iteration>.jsonl,
# named by the checkpoint's real iteration ("latest" is resolved first).
#
#   jobs/eval-mpirun.sh [retnet-eval flags...]      (from the repository root)
#   jobs/train-mpirun.sh && jobs/eval-mpirun.sh     (train, then evaluate)
#
# Knobs (environment variables):
#   RETNET_BUILD  (build)                        the build directory
#   RUN_DIR       ($SCRATCH/retnet, else $HOME/retnet-runs/retnet)   as train-mpirun.sh
#   EVAL_DATA     (out/main-job/kjv-valid.bin)   corpora, space-separated: raw text
#                                                (plain or gzip) or token shards; their
#                                                file names must differ
#   ITERATIONS    (latest)                       checkpoints, space-separated: iteration
#                                                numbers (kept by KEEP_LAST) or "latest"
#   RANKS (1), THREADS (2), HOSTFILE, BIND, MPIRUN_ARGS, ENV_SCRIPT   as in train-mpirun.sh
# Arguments after the script go to retnet-eval (--seq-length, --mode, --form,
# --tensor-model-parallel-size, ...). Exit status: 0, or the first failure's.
set -uo pipefail
# shellcheck source=jobs/lib.sh
source "$(dirname "$0")/lib.sh"
rn_source_env_script
RETNET_BUILD=${RETNET_BUILD-build}
RUN_DIR=${RUN_DIR-${SCRATCH:-$HOME/retnet-runs}/retnet}
EVAL_DATA=${EVAL_DATA-out/main-job/kjv-valid.bin}
ITERATIONS=${ITERATIONS-latest}
RANKS=${RANKS-1}
THREADS=${THREADS-2}
HOSTFILE=${HOSTFILE-}
BIND=${BIND-core}
MPIRUN_ARGS=${MPIRUN_ARGS-}
read -r -a extra <<<"$MPIRUN_ARGS"
read -r -a corpora <<<"$EVAL_DATA"
read -r -a iterations <<<"$ITERATIONS"
if ((${#corpora[@]} == 0 || ${#iterations[@]} == 0)); then
	rn_die 2 "EVAL_DATA or ITERATIONS is empty"
fi

export OMP_NUM_THREADS=$THREADS
launch=(mpirun -n "$RANKS" -x OMP_NUM_THREADS)
[[ -n $HOSTFILE ]] && launch+=(--hostfile "$HOSTFILE")
case $BIND in
core)
	export OMP_PROC_BIND=close OMP_PLACES=cores
	launch+=(--map-by "slot:PE=$THREADS" --bind-to core -x OMP_PROC_BIND -x OMP_PLACES)
	;;
none) launch+=(--bind-to none) ;;
*) rn_die 2 "BIND is core or none, not '$BIND'" ;;
esac
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== knobs:"
rn_show_knobs RETNET_BUILD RUN_DIR EVAL_DATA ITERATIONS RANKS THREADS HOSTFILE BIND \
	MPIRUN_ARGS ENV_SCRIPT

mkdir -p "$RUN_DIR/eval"
status=0
for iteration in "${iterations[@]}"; do
	if [[ $iteration == latest ]]; then
		iteration=$(cat "$RUN_DIR/ckpt/latest" 2>/dev/null) || {
			echo "== error: no checkpoint in $RUN_DIR/ckpt (no 'latest')" >&2
			status=2
			continue
		}
	fi
	for corpus in "${corpora[@]}"; do
		out=$RUN_DIR/eval/$(basename "$corpus")-$iteration.jsonl
		rm -f "$out"
		echo "== $(date '+%F %T') $corpus at checkpoint $iteration -> $out"
		"${launch[@]}" "${extra[@]}" "$RETNET_BUILD/retnet-eval" --load "$RUN_DIR/ckpt" \
			--iteration "$iteration" --data "$corpus" --output "$out" "$@"
		rc=$?
		((rc != 0 && status == 0)) && status=$rc
	done
done
exit "$status"
