#!/usr/bin/env bash
# RetNet training with plain mpirun (Open MPI), for machines without SLURM, one or
# several (HOSTFILE): the same knobs and the same run directory as jobs/train.sbatch.
#
#   jobs/train-mpirun.sh [retnet-train flags...]      (from the repository root)
#   HOSTFILE=hosts RANKS=8 jobs/train-mpirun.sh       (hosts: "node1 slots=4" lines;
#                                                     mpirun reaches them with ssh)
#
# Stopping and resuming: Ctrl-C, or SIGTERM or SIGUSR1 to this script (`kill PID`),
# goes on to the ranks as USR1; they agree to stop at the next iteration, write a
# checkpoint and exit with status 3 (4 if stopped before the first step), and so
# does this script. EXIT_DURATION_MINS does the same after that many minutes (counted
# from the trainer's start). Run the same command again and it resumes from
# RUN_DIR/ckpt by itself. Exit status: 0 done; 3 or 4 stopped (run again to
# resume); 5 the watchdog ended a stalled job (no progress for TIMEOUT_MINS: run
# again once the network is back); 2 a user error; anything else failed (a lost
# node is named with the ranks it held).
#
# Knobs (environment variables):
#   RETNET_BUILD     (build)                          the build directory
#   CONFIG           (jobs/configs/kjv-small.cfg)     model and schedule; empty: none
#   DATA             (out/main-job/kjv-train.bin)     training shards (retnet-prep)
#   VALID_DATA       (out/main-job/kjv-valid.bin)     held-out shards; empty: none
#   RUN_DIR          ($SCRATCH/retnet, else $HOME/retnet-runs/retnet)
#                    RUN_DIR/ckpt, metrics.jsonl, logs/; with HOSTFILE on a file
#                    system all the hosts share; one run at a time (RUN_DIR/lock)
#   SAVE_INTERVAL    (100)                            steps between checkpoints
#   KEEP_LAST        (3)                              checkpoints kept (0: all)
#   RANKS            (2)                              MPI ranks
#   THREADS          (1)                              OpenMP threads per rank
#   TP, PP           (1, 1)                           tensor-parallel size, pipeline
#                    stages (DP = RANKS / (TP x PP)); the micro-batch is lowered when
#                    needed so that the global batch splits over DP
#   HOSTFILE         ("")                             mpirun --hostfile (empty: this machine)
#   BIND             (core)                           core: each rank on THREADS cores of
#                    its own (--map-by slot:PE=THREADS --bind-to core), its threads one
#                    per core (OMP_PROC_BIND=close OMP_PLACES=cores); none: no binding,
#                    for more ranks x threads than cores
#   EXIT_DURATION_MINS (0)                            stop with a checkpoint after this many
#                                                     minutes; 0: never
#   TIMEOUT_MINS     (10)                             --distributed-timeout-minutes (0: off)
#   STALL_GRACE_SECS (10)    how long mpirun may go on waiting after the watchdog
#                            ended the job (for a host it cannot reach)
#   ENV_SCRIPT       ("")                             a file sourced first (modules)
#   MPIRUN_ARGS      ("")                             more mpirun options, space-separated
# Arguments after the script go to retnet-train and win over CONFIG and the knobs.
set -uo pipefail
# shellcheck source=jobs/lib.sh
source "$(dirname "$0")/lib.sh"
rn_source_env_script
RETNET_BUILD=${RETNET_BUILD-build}
CONFIG=${CONFIG-jobs/configs/kjv-small.cfg}
DATA=${DATA-out/main-job/kjv-train.bin}
VALID_DATA=${VALID_DATA-out/main-job/kjv-valid.bin}
RUN_DIR=${RUN_DIR-${SCRATCH:-$HOME/retnet-runs}/retnet}
SAVE_INTERVAL=${SAVE_INTERVAL-100}
KEEP_LAST=${KEEP_LAST-3}
RANKS=${RANKS-2}
THREADS=${THREADS-1}
TP=${TP-1}
PP=${PP-1}
HOSTFILE=${HOSTFILE-}
BIND=${BIND-core}
EXIT_DURATION_MINS=${EXIT_DURATION_MINS-0}
TIMEOUT_MINS=${TIMEOUT_MINS-10}
STALL_GRACE_SECS=${STALL_GRACE_SECS-10}
MPIRUN_ARGS=${MPIRUN_ARGS-}
read -r -a extra <<<"$MPIRUN_ARGS"

mkdir -p "$RUN_DIR/ckpt" "$RUN_DIR/logs" || rn_die 2 "cannot create RUN_DIR $RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
rn_lock_take || exit 2
trap 'rn_lock_release' EXIT
log=$RUN_DIR/logs/train-$(date '+%Y%m%d-%H%M%S').log
: >"$log"

args=(--save "$RUN_DIR/ckpt" --load "$RUN_DIR/ckpt" --save-interval "$SAVE_INTERVAL"
	--keep-last "$KEEP_LAST" --metrics "$RUN_DIR/metrics.jsonl" --data-path "$DATA"
	--tensor-model-parallel-size "$TP" --pipeline-model-parallel-size "$PP"
	--distributed-timeout-minutes "$TIMEOUT_MINS")
[[ -n $CONFIG ]] && args+=(--config "$CONFIG")
[[ -n $VALID_DATA ]] && args+=(--valid-data-path "$VALID_DATA")
[[ $EXIT_DURATION_MINS != 0 ]] && args+=(--exit-duration-in-mins "$EXIT_DURATION_MINS")
micro=$(rn_fit_micro_batch "$RANKS" "$TP" "$PP" "${args[@]}" "$@") || rn_die 2 \
	"the layout does not fit the batch (see above)"
[[ -n $micro ]] && args+=(--micro-batch-size "$micro")

export OMP_NUM_THREADS=$THREADS
launch=(mpirun -n "$RANKS" -x OMP_NUM_THREADS)
[[ -n $HOSTFILE ]] && launch+=(--hostfile "$HOSTFILE")
case $BIND in
core)
	export OMP_PROC_BIND=close OMP_PLACES=cores
	launch+=(--map-by "slot:PE=$THREADS" --bind-to core -x OMP_PROC_BIND -x OMP_PLACES)
	;;
none) launch+=(--bind-to none) ;; # mpirun would bind each rank to one core
*) rn_die 2 "BIND is core or none, not '$BIND'" ;;
esac
# Open MPI refuses root without these (containers and CI run as root).
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

before=$(rn_latest)
echo "== $(date '+%F %T') $RANKS ranks x $THREADS threads (bind $BIND) on" \
	"${HOSTFILE:-this machine}, run directory $RUN_DIR, resuming from checkpoint $before"
echo "== knobs:"
rn_show_knobs RETNET_BUILD CONFIG DATA VALID_DATA RUN_DIR SAVE_INTERVAL KEEP_LAST RANKS \
	THREADS TP PP HOSTFILE BIND EXIT_DURATION_MINS TIMEOUT_MINS STALL_GRACE_SECS ENV_SCRIPT \
	MPIRUN_ARGS
echo "== layout: $RANKS ranks = DP $((RANKS / (TP * PP))) x PP $PP x TP $TP${micro:+, micro-batch}" \
	"${micro:+$micro (lowered to split the global batch)}; log $log"
# setsid: mpirun in a session of its own, so that Ctrl-C reaches only this script,
# which passes it on as USR1 (mpirun passes USR1 to every rank, but ends the job on
# INT or TERM, exit status 1, whatever the ranks did).
rn_launch "$log" setsid "${launch[@]}" "${extra[@]}" "$RETNET_BUILD/retnet-train" \
	"${args[@]}" "$@"
rc=$RN_STATUS

case $rc in
0) rn_say "training finished" ;;
3 | 4) rn_say "stopped with checkpoint $(rn_latest) in $RUN_DIR/ckpt (exit status $rc):" \
	"run the same command again to resume" ;;
5)
	rn_explain "$log" "$rc"
	rn_say "checkpoint $(rn_latest) in $RUN_DIR/ckpt: run the same command again to resume" \
		"once every host is reachable"
	;;
*)
	rn_explain "$log" "$rc"
	rn_say "retnet-train failed with exit status $rc; checkpoint $(rn_latest) is the latest" >&2
	;;
esac
exit "$rc"
