#!/usr/bin/env bash
# RetNet training with plain mpirun (Open MPI), for machines without SLURM: the same
# knobs and the same run directory as jobs/train.sbatch.
#
#   jobs/train-mpirun.sh [retnet-train flags...]      (from the repository root)
#
# Stopping and resuming: Ctrl-C, or SIGTERM or SIGUSR1 to this script (`kill PID`),
# goes on to the ranks as USR1; they agree to stop at the next iteration, write a
# checkpoint and exit with status 3, and so does this script. EXIT_DURATION_MINS
# does the same after that many minutes. Run the same command again and it resumes
# from RUN_DIR/ckpt by itself. Exit status: 0 done, 3 stopped with a checkpoint,
# anything else failed.
#
# Knobs (environment variables):
#   RETNET_BUILD     (build)                          the build directory
#   CONFIG           (jobs/configs/kjv-small.cfg)     model and schedule; empty: none
#   DATA             (out/main-job/kjv-train.bin)     training shards (retnet-prep)
#   VALID_DATA       (out/main-job/kjv-valid.bin)     held-out shards; empty: none
#   RUN_DIR          (out/retnet)                     RUN_DIR/ckpt, RUN_DIR/metrics.jsonl
#   SAVE_INTERVAL    (100)                            steps between checkpoints
#   KEEP_LAST        (3)                              checkpoints kept (0: all)
#   RANKS            (2)                              MPI ranks
#   THREADS          (1)                              OpenMP threads per rank
#   HOSTFILE         ("")                             mpirun --hostfile (empty: this machine)
#   BIND             (core)                           core: each rank on THREADS cores of
#                    its own (--map-by slot:PE=THREADS --bind-to core), its threads one
#                    per core (OMP_PROC_BIND=close OMP_PLACES=cores); none: no binding,
#                    for more ranks x threads than cores
#   EXIT_DURATION_MINS (0)                            stop with a checkpoint after this many
#                                                     minutes of training; 0: never
#   MPIRUN_ARGS      ("")                             more mpirun options, space-separated
# Arguments after the script go to retnet-train and win over CONFIG.
set -uo pipefail
RETNET_BUILD=${RETNET_BUILD-build}
CONFIG=${CONFIG-jobs/configs/kjv-small.cfg}
DATA=${DATA-out/main-job/kjv-train.bin}
VALID_DATA=${VALID_DATA-out/main-job/kjv-valid.bin}
RUN_DIR=${RUN_DIR-out/retnet}
SAVE_INTERVAL=${SAVE_INTERVAL-100}
KEEP_LAST=${KEEP_LAST-3}
RANKS=${RANKS-2}
THREADS=${THREADS-1}
HOSTFILE=${HOSTFILE-}
BIND=${BIND-core}
EXIT_DURATION_MINS=${EXIT_DURATION_MINS-0}
read -r -a extra <<<"${MPIRUN_ARGS-}"

mkdir -p "$RUN_DIR/ckpt" # --load needs the directory; empty means start fresh
args=(--save "$RUN_DIR/ckpt" --load "$RUN_DIR/ckpt" --save-interval "$SAVE_INTERVAL"
	--keep-last "$KEEP_LAST" --metrics "$RUN_DIR/metrics.jsonl" --data-path "$DATA")
[[ -n $CONFIG ]] && args+=(--config "$CONFIG")
[[ -n $VALID_DATA ]] && args+=(--valid-data-path "$VALID_DATA")
[[ $EXIT_DURATION_MINS != 0 ]] && args+=(--exit-duration-in-mins "$EXIT_DURATION_MINS")

export OMP_NUM_THREADS=$THREADS
launch=(mpirun -n "$RANKS" -x OMP_NUM_THREADS)
[[ -n $HOSTFILE ]] && launch+=(--hostfile "$HOSTFILE")
case $BIND in
core)
	export OMP_PROC_BIND=close OMP_PLACES=cores
	launch+=(--map-by "slot:PE=$THREADS" --bind-to core -x OMP_PROC_BIND -x OMP_PLACES)
	;;
none) launch+=(--bind-to none) ;; # mpirun would bind each rank to one core
*)
	echo "train-mpirun.sh: BIND is core or none, not '$BIND'" >&2
	exit 2
	;;
esac
# Open MPI refuses root without these (containers and CI run as root).
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== $(date '+%F %T') $RANKS ranks x $THREADS threads (bind $BIND), run directory $RUN_DIR," \
	"resuming from checkpoint $(cat "$RUN_DIR/ckpt/latest" 2>/dev/null || echo none)"
# mpirun runs in the background because bash runs a trap only between commands or
# while in `wait`, and in a session of its own so that Ctrl-C reaches only this
# script. INT and TERM go on as USR1: mpirun passes USR1 to every rank, but ends
# the job on INT or TERM (exit status 1, whatever the ranks did).
setsid "${launch[@]}" "${extra[@]}" "$RETNET_BUILD/retnet-train" "${args[@]}" "$@" &
job=$!
signalled=0
# shellcheck disable=SC2317 # run by the traps
forward() {
	echo "== $(date '+%T') got SIG$1: asking the ranks to checkpoint and stop"
	signalled=1
	kill -USR1 "$job" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT
wait "$job"
rc=$?
while ((signalled)); do # a trap cut `wait` short: wait for the real exit status
	signalled=0
	wait "$job"
	rc=$?
done

case $rc in
0) echo "== $(date '+%T') training finished" ;;
3) echo "== $(date '+%T') stopped with checkpoint $(cat "$RUN_DIR/ckpt/latest" 2>/dev/null ||
	echo none) in $RUN_DIR/ckpt: run the same command again to resume" ;;
*) echo "== $(date '+%T') retnet-train failed with exit status $rc" >&2 ;;
esac
exit "$rc"
