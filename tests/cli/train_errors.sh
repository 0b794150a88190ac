#!/usr/bin/env bash
# retnet-train's bad input, from the outside: each case is one line
# "retnet: error: <flag or file:line>: <rule>" and exit status 2, on one rank and
# on several (the ranks agree, one prints, no MPI_ABORT banner), before any work.
# Usage: train_errors.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_errors.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_err
export OMP_NUM_THREADS=1
TRAIN=("$BUILD/retnet-train")
DATA=(--data-path "$CORPUS-train.bin")

expect_user_error "unknown flag" "--hidden-sise: unknown flag" "${TRAIN[@]}" "${DATA[@]}" --hidden-sise 64
expect_user_error "missing value" "--lr: missing value" "${TRAIN[@]}" "${DATA[@]}" --lr
expect_user_error "non-numeric" "--num-layers: 'two' is not an integer" "${TRAIN[@]}" "${DATA[@]}" --num-layers two
expect_user_error "zero size" "--hidden-size: 0 is out of range" "${TRAIN[@]}" "${DATA[@]}" --hidden-size 0
expect_user_error "negative size" "--micro-batch-size: -4 is out of range" "${TRAIN[@]}" "${DATA[@]}" --micro-batch-size -4
expect_user_error "chunk does not divide T" "--chunk-size: 12 does not divide --seq-length 32" \
	"${TRAIN[@]}" "${DATA[@]}" --chunk-size 12
expect_user_error "heads do not divide d" "--num-heads: 5 does not divide --hidden-size 64" \
	"${TRAIN[@]}" "${DATA[@]}" --num-heads 5
expect_user_error "no data" "--data-path: required" "${TRAIN[@]}"
expect_user_error "missing shard" "$T/none.bin" "${TRAIN[@]}" --data-path "$T/none.bin"
printf 'not a shard at all, just text\n' >"$T/text.bin"
expect_user_error "not a shard" "$T/text.bin" "${TRAIN[@]}" --data-path "$T/text.bin"
expect_user_error "bad decay style" "--lr-decay-style: 'steep'" "${TRAIN[@]}" "${DATA[@]}" --lr-decay-style steep
expect_user_error "watchdog timeout too short" "--distributed-timeout-minutes: 0.01 is below 0.05" \
	"${TRAIN[@]}" "${DATA[@]}" --distributed-timeout-minutes 0.01

printf '# tiny\nnum-layers 2\nhidden-size = 64\nlearning-rate 0.1\n' >"$T/bad.cfg"
expect_user_error "config file, unknown key" "$T/bad.cfg:4: learning-rate: unknown key" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/bad.cfg"
printf 'seq-length 32\nchunk-size\n' >"$T/bad2.cfg"
expect_user_error "config file, missing value" "$T/bad2.cfg:2: chunk-size: missing value" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/bad2.cfg"
printf 'train-iters 1e3\n' >"$T/bad3.cfg"
expect_user_error "config file, not an integer" "$T/bad3.cfg:1: train-iters: '1e3' is not an integer" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/bad3.cfg"
expect_user_error "missing config file" "--config: cannot open '$T/none.cfg'" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/none.cfg"

# Several ranks: the layout rules, and one line for the whole job (--quiet keeps
# mpiexec's own banner about a non-zero exit out of the count).
expect_user_error "world not divisible by TP x PP" "world size 3 is not divisible by TP 2" \
	"$MPIEXEC" --quiet -n 3 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --tensor-model-parallel-size 2
expect_user_error "TP does not divide the heads" "--tensor-model-parallel-size: 3 does not divide --num-heads 4" \
	"$MPIEXEC" --quiet -n 3 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --tensor-model-parallel-size 3
expect_user_error "more stages than layers" "--pipeline-model-parallel-size: 4 stages for --num-layers 2" \
	"$MPIEXEC" --quiet -n 4 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --pipeline-model-parallel-size 4
expect_user_error "bad flag on 2 ranks" "--seed: 'x' is not an integer" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --seed x
expect_user_error "global batch not a multiple" "--global-batch-size: 6 is not a multiple of --micro-batch-size 2 x data-parallel size 2" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --global-batch-size 6
VIRTUAL=(--num-layers-per-virtual-pipeline-stage 1)
expect_user_error "virtual stages without a pipeline" \
	"--num-layers-per-virtual-pipeline-stage: needs --pipeline-model-parallel-size 2 or more" \
	"${TRAIN[@]}" "${DATA[@]}" "${VIRTUAL[@]}"
expect_user_error "virtual stages that do not divide the layers" \
	"--num-layers-per-virtual-pipeline-stage: --num-layers 6 is not a multiple of --pipeline-model-parallel-size 2 x 2" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --num-layers 6 \
	--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 2
expect_user_error "interleaved micro-batches not a multiple of PP" \
	"--num-layers-per-virtual-pipeline-stage: .* = 3\) must be a multiple of --pipeline-model-parallel-size 2" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" --num-layers 4 \
	--pipeline-model-parallel-size 2 "${VIRTUAL[@]}" --global-batch-size 6

# Launched as an srun step of 2 tasks (SLURM_STEP_NUM_TASKS) but a world of 1: the
# tasks did not wire up into one MPI job (srun's --mpi plugin does not fit this MPI).
expect_user_error "srun step not one MPI world" \
	"srun started 2 tasks \(SLURM_STEP_NUM_TASKS\) but MPI_COMM_WORLD has 1 rank" \
	env SLURM_STEP_NUM_TASKS=2 SLURM_PROCID=0 "${TRAIN[@]}" "${DATA[@]}"

# A PMIx step of srun across nodes on SLURM's default fence: task 0 warns before
# MPI_Init (the variables as srun and its PMIx plugin set them), and the run goes on;
# no warning with the fence set, on other tasks, or on one node.
fence_warning="retnet: warning: srun started this step on 2 nodes through PMIx and SLURM_PMIX_FENCE is not set"
fence_run() { env "$@" "${TRAIN[@]}" --help 2>&1 >/dev/null; }
fence_runs_on() { fence_run "$@" >/dev/null; }
check "PMIx step across 2 nodes, default fence: task 0 warns once" \
	test "$(fence_run SLURM_STEP_NUM_NODES=2 SLURM_PROCID=0 PMIX_RANK=0 | grep -c "$fence_warning")" -eq 1
check "... and runs on (--help, exit 0)" fence_runs_on SLURM_STEP_NUM_NODES=2 SLURM_PROCID=0 PMIX_RANK=0
for quiet in "SLURM_PMIX_FENCE=ring SLURM_PROCID=0 SLURM_STEP_NUM_NODES=2" \
	"SLURM_PROCID=1 SLURM_STEP_NUM_NODES=2" "SLURM_PROCID=0 SLURM_STEP_NUM_NODES=1"; do
	check "no fence warning with $quiet" test -z "$(fence_run $quiet PMIX_RANK=0)"
done

# The command line wins over the config file; --help works.
printf 'train-iters 1000\nhidden-size 64\n' >"$T/ok.cfg"
check "command line overrides the config file" "${TRAIN[@]}" "${DATA[@]}" --config "$T/ok.cfg" \
	--train-iters 2 --log-interval 1 --metrics "$T/m.jsonl"
check "... and ran 2 iterations" test "$(grep -c '"loss"' "$T/m.jsonl")" -eq 2
check "--help" bash -c "'$BUILD/retnet-train' --help | grep -q -- --global-batch-size"
finish
