#!/usr/bin/env bash
# Evaluation of trained checkpoints on held-out corpora with plain mpirun (Open MPI),
# for machines without SLURM: what jobs/eval.sbatch's array does, one pair after the
# other. Each (corpus, checkpoint) pair writes one JSON line (keys corpus tokens bytes
# nll perplexity bits_per_byte mode form) to RUN_DIR/eval/<corpus file name>-<iteration>.jsonl.
#
#   jobs/eval-mpirun.sh [retnet-eval flags...]      (from the repository root)
#   jobs/train-mpirun.sh && jobs/eval-mpirun.sh     (train, then evaluate)
#
# Knobs (environment variables):
#   RETNET_BUILD  (build)                        the build directory
#   RUN_DIR       (out/retnet)                   checkpoints in RUN_DIR/ckpt
#   EVAL_DATA     (out/main-job/kjv-valid.bin)   corpora, space-separated: raw text
#                                                (plain or gzip) or token shards; their
#                                                file names must differ
#   ITERATIONS    (latest)                       checkpoints, space-separated: iteration
#                                                numbers (kept by KEEP_LAST) or "latest"
#   RANKS (1), THREADS (2), HOSTFILE, BIND, MPIRUN_ARGS   as in train-mpirun.sh
# Arguments after the script go to retnet-eval (--seq-length, --mode, --form,
# --tensor-model-parallel-size, ...). Exit status: 0, or the first failure's.
set -uo pipefail
RETNET_BUILD=${RETNET_BUILD-build}
RUN_DIR=${RUN_DIR-out/retnet}
EVAL_DATA=${EVAL_DATA-out/main-job/kjv-valid.bin}
ITERATIONS=${ITERATIONS-latest}
RANKS=${RANKS-1}
THREADS=${THREADS-2}
HOSTFILE=${HOSTFILE-}
BIND=${BIND-core}
read -r -a extra <<<"${MPIRUN_ARGS-}"
read -r -a corpora <<<"$EVAL_DATA"
read -r -a iterations <<<"$ITERATIONS"
if ((${#corpora[@]} == 0 || ${#iterations[@]} == 0)); then
	echo "eval-mpirun.sh: EVAL_DATA or ITERATIONS is empty" >&2
	exit 2
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
*)
	echo "eval-mpirun.sh: BIND is core or none, not '$BIND'" >&2
	exit 2
	;;
esac
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

mkdir -p "$RUN_DIR/eval"
status=0
for iteration in "${iterations[@]}"; do
	for corpus in "${corpora[@]}"; do
		args=(--load "$RUN_DIR/ckpt" --data "$corpus")
		[[ $iteration != latest ]] && args+=(--iteration "$iteration")
		out=$RUN_DIR/eval/$(basename "$corpus")-$iteration.jsonl
		rm -f "$out"
		echo "== $(date '+%F %T') $corpus at checkpoint $iteration -> $out"
		"${launch[@]}" "${extra[@]}" "$RETNET_BUILD/retnet-eval" "${args[@]}" \
			--output "$out" "$@"
		rc=$?
		((rc != 0 && status == 0)) && status=$rc
	done
done
exit "$status"
