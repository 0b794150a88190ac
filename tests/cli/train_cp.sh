#!/usr/bin/env bash
# Context parallelism (--context-parallel-size CP): each sequence cut into CP pieces,
# one per rank, the retention state passed between them. Against the single-rank run
# on the same seed and data:
#  (1) CP=2 and CP=4 with T = 64, C = 8 (pieces of several chunks) and T = 32,
#      CP = 4 (pieces of exactly one chunk), TP=2 x CP=2, CP=2 x DP=2 x PP=2 (8 ranks),
#      CP=2 with --recompute-activations and with --use-distributed-optimizer over
#      CP=2 x DP=2: 10 losses within 1e-5 relative; CP=2 x PP=2 with virtual stages
#      (4 layers, interleaved 1F1B over 4 micro-batches) the same against CP=2 on one
#      stage (with 4 layers the pieces' own float reordering moves the 10th loss 2e-5
#      from the single rank's, with or without a pipeline); with --bf16 (where the CPU has
#      AVX512-BF16) within 1e-3 of the single rank in bf16, as train_bf16 allows DP=2:
#      the pieces round other products to bf16 than one pass does (measured 2.6e-4);
#  (2) the held-out estimate during training and retnet-eval's windows scored across
#      CP ranks equal the single rank's (1e-5);
#  (3) a checkpoint written at CP=2 (nothing written by the second piece's ranks) holds
#      the single rank's parameters within 1e-4 absolute (magnitudes ~0.1 to 1; AdamW
#      divides by sqrt(v), so where a gradient is near zero the float32 reordering of
#      the pieces' sums moves a parameter by up to ~5e-5 in 10 steps, as measured), and
#      continues at CP=1 as at CP=2 within 1e-5;
#  (4) a piece that is not a multiple of the chunk, stream mode and a form other than
#      chunkwise are one-line errors before any work.
# Usage: train_cp.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_cp.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_cp
COMMON=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--chunk-size 8 --micro-batch-size 2 --global-batch-size 4 --lr 3e-3 --seed 11
	--log-interval 1 --train-iters 10)
export OMP_NUM_THREADS=1


# (1) losses
check "T=64: one rank" train_run one64 1 --seq-length 64
check "T=32: one rank" train_run one32 1 --seq-length 32
check "T=64, 4 layers: CP=2 on one stage" train_run cp2l4 2 --seq-length 64 --num-layers 4 \
	--context-parallel-size 2
cases=("cp2 2 one64 --seq-length 64 --context-parallel-size 2"
	"cp4 4 one64 --seq-length 64 --context-parallel-size 4"
	"cp4-onechunk 4 one32 --seq-length 32 --context-parallel-size 4"
	"tp2cp2 4 one64 --seq-length 64 --context-parallel-size 2 --tensor-model-parallel-size 2"
	"cp2dp2pp2 8 one64 --seq-length 64 --context-parallel-size 2 --pipeline-model-parallel-size 2 --micro-batch-size 1"
	"cp2-recompute 2 one64 --seq-length 64 --context-parallel-size 2 --recompute-activations"
	"cp2dp2-zero 4 one64 --seq-length 64 --context-parallel-size 2 --use-distributed-optimizer"
	"cp2pp2v 4 cp2l4 --seq-length 64 --num-layers 4 --context-parallel-size 2 --pipeline-model-parallel-size 2 --micro-batch-size 1 --num-layers-per-virtual-pipeline-stage 1")
if grep -qw avx512_bf16 /proc/cpuinfo; then
	check "T=64: one rank, bf16" train_run one64-bf16 1 --seq-length 64 --bf16
	cases+=("cp2-bf16 2 one64-bf16 --seq-length 64 --context-parallel-size 2 --bf16")
fi
for c in "${cases[@]}"; do
	read -r name ranks ref flags <<<"$c"
	tol=1e-5
	[[ $name == *bf16 ]] && tol=1e-3
	# shellcheck disable=SC2086 # flags is a list of words
	check "$name: 10 iterations" train_run "$name" "$ranks" $flags
	check "$name: losses within $tol of $ref" \
		close_columns "$T/$name.loss" "$T/$ref.loss" "$tol"
done

# (2) held-out estimates and retnet-eval across the pieces
check "one rank: held-out at the end, checkpoint" train_run v1 1 --seq-length 64 \
	--valid-data-path "$CORPUS-valid.bin" --save "$T/ck1"
check "CP=2: held-out at the end, checkpoint" train_run v2 2 --seq-length 64 \
	--context-parallel-size 2 --valid-data-path "$CORPUS-valid.bin" --save "$T/ck2"
json_column "$T/v1.jsonl" val_loss >"$T/v1.val"
json_column "$T/v2.jsonl" val_loss >"$T/v2.val"
check "CP=2: the held-out loss within 1e-5 of the single rank's" \
	close_columns "$T/v2.val" "$T/v1.val" 1e-5
eval_nll() { # eval_nll NAME RANKS [flags]: retnet-eval's nll of the held-out shard
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" --quiet -n "$ranks" "${MPI_EXTRA[@]}" "$BUILD/retnet-eval" --load "$T/ck1" \
		--data "$CORPUS-valid.bin" --output "$T/$name.out" "$@" >"$T/$name.log" 2>&1 ||
		{ cat "$T/$name.log" >&2; return 1; }
	json_column "$T/$name.out" nll >"$T/$name.nll"
}
check "retnet-eval, one rank" eval_nll e1 1
check "retnet-eval, CP=2" eval_nll e2 2 --context-parallel-size 2
check "retnet-eval, CP=2 x TP=2, 2 windows a batch" eval_nll e4 4 --context-parallel-size 2 \
	--tensor-model-parallel-size 2 --micro-batch-size 2
check "retnet-eval: CP=2 = one rank (1e-5)" close_columns "$T/e2.nll" "$T/e1.nll" 1e-5
check "retnet-eval: CP=2 x TP=2 = one rank (1e-5)" close_columns "$T/e4.nll" "$T/e1.nll" 1e-5

# (3) checkpoints: the single rank's file, and another layout continues
check "CP=2's checkpoint holds the single rank's parameters (1e-4)" \
	h5diff -r -d 1e-4 "$T/ck1/iter_0000010.h5" "$T/ck2/iter_0000010.h5" /model /model
check "continued at CP=1 from CP=2's checkpoint" train_run c1 1 --seq-length 64 \
	--train-iters 12 --lr-decay-iters 10 --load "$T/ck2"
check "continued at CP=2 from it" train_run c2 2 --seq-length 64 --context-parallel-size 2 \
	--train-iters 12 --lr-decay-iters 10 --load "$T/ck2"
check "... the same losses (1e-5)" close_columns "$T/c1.loss" "$T/c2.loss" 1e-5

# (4) refused before any work
expect_user_error "a piece not a multiple of the chunk" \
	"--context-parallel-size: 2 pieces of --seq-length 24 are not each a multiple of --chunk-size 8" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" \
	--seq-length 24 --context-parallel-size 2
expect_user_error "retnet-eval: stream mode" "--context-parallel-size: stream mode" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-eval" --load "$T/ck1" \
	--data "$CORPUS-valid.bin" --context-parallel-size 2 --mode stream
expect_user_error "retnet-eval: the parallel form" "--context-parallel-size: .*not --form parallel" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-eval" --load "$T/ck1" \
	--data "$CORPUS-valid.bin" --context-parallel-size 2 --form parallel
finish
