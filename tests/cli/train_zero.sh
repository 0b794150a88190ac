#!/usr/bin/env bash
# --use-distributed-optimizer (ZeRO-1) against the same run without it:
#  (1) DP=2, DP=4, TP=2 x DP=2, PP=2 x DP=2, PP=2 x DP=2 with virtual stages (4
#      layers, interleaved 1F1B), DP=2 with --recompute-activations and
#      (where the CPU has AVX512-BF16) with --bf16: 20 losses within 1e-6 relative of
#      the same layout without the flag (the reduce-scatter sums what the all-reduce
#      sums, perhaps in another order);
#  (2) a checkpoint written with the flag holds the same whole tensors as one written
#      without it (h5diff, parameters and moments), although each data-parallel rank
#      wrote only its own shard of the moments;
#  (3) stopped at 10 and resumed with the flag: the losses of the uninterrupted run to
#      the last bit, and the same final checkpoint;
#  (4) saved with the flag at DP=4 and resumed without it at DP=1, and saved without
#      it at DP=1 and resumed with it at DP=4: within 1e-5 of the uninterrupted run;
#  (5) the optimizer state per rank falls as 1/DP (the log's count of moments).
# Usage: train_zero.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_zero.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_zero
COMMON=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --global-batch-size 8 --lr 3e-3
	--lr-warmup-iters 2 --seed 11 --log-interval 1 --lr-decay-iters 20)
export OMP_NUM_THREADS=1


# (1) the losses of every layout with and without the flag
layouts=("2 dp2" "4 dp4" "4 tp2dp2 --tensor-model-parallel-size 2"
	"4 pp2dp2 --pipeline-model-parallel-size 2"
	"4 pp2dp2v --pipeline-model-parallel-size 2 --num-layers 4 --num-layers-per-virtual-pipeline-stage 1"
	"2 recompute --recompute-activations")
grep -qw avx512_bf16 /proc/cpuinfo && layouts+=("2 bf16 --bf16")
for layout in "${layouts[@]}"; do
	read -r ranks name flags <<<"$layout"
	# shellcheck disable=SC2086 # flags is a list of words
	check "$name: 20 iterations" train_run "$name" "$ranks" --train-iters 20 $flags
	# shellcheck disable=SC2086
	check "$name: 20 iterations, distributed optimizer" train_run "$name-z" "$ranks" \
		--train-iters 20 --use-distributed-optimizer $flags
	check "$name: losses within 1e-6" close_columns "$T/$name-z.loss" "$T/$name.loss" 1e-6
done

# (2) the file: the same whole tensors, written shard by shard
check "DP=4: checkpoint at 10 without the flag" train_run plain 4 --train-iters 10 --save "$T/plain"
check "DP=4: checkpoint at 10 with the flag" train_run zero 4 --train-iters 10 --save "$T/zero" \
	--use-distributed-optimizer
check "the same tensors and moments in both files" same_ckpt "$T/plain/iter_0000010.h5" \
	"$T/zero/iter_0000010.h5"

# (3) bit-exact resume with the flag
check "DP=4: 20 iterations uninterrupted, with the flag" train_run full 4 --train-iters 20 \
	--save "$T/full" --save-interval 10 --use-distributed-optimizer
check "resumed from 10 with the flag" train_run resumed 4 --train-iters 20 --load "$T/zero" \
	--save "$T/zero" --use-distributed-optimizer
tail -n 10 "$T/full.loss" >"$T/full.tail"
check "losses 11..20 identical to the last bit" cmp "$T/full.tail" "$T/resumed.loss"
check "identical final checkpoints" same_ckpt "$T/full/iter_0000020.h5" "$T/zero/iter_0000020.h5"

# (4) across the flag and the data-parallel size
cp -r "$T/full" "$T/from4"
echo 10 >"$T/from4/latest"
rm -f "$T/from4/iter_0000020.h5"
check "resumed at DP=1 without the flag" train_run to1 1 --train-iters 20 --load "$T/from4"
check "... within 1e-5 of the uninterrupted run" close_columns "$T/to1.loss" "$T/full.tail" 1e-5
check "DP=1 without the flag: 20 iterations, checkpoint at 10" train_run one 1 --train-iters 20 \
	--save "$T/one" --save-interval 10
tail -n 10 "$T/one.loss" >"$T/one.tail"
echo 10 >"$T/one/latest"
rm -f "$T/one/iter_0000020.h5"
check "resumed at DP=4 with the flag" train_run to4 4 --train-iters 20 --load "$T/one" \
	--use-distributed-optimizer
check "... within 1e-5 of the uninterrupted run" close_columns "$T/to4.loss" "$T/one.tail" 1e-5

# (5) the moments a rank keeps
for dp in 1 2 4; do
	check "DP=$dp: the optimizer state of rank 0 logged" train_run state$dp "$dp" --train-iters 1 \
		--use-distributed-optimizer
done
state() { grep -o 'optimizer state [0-9]* floats' "$T/state$1.log" | grep -o '[0-9]*'; }
s1=$(state 1) s2=$(state 2) s4=$(state 4)
check "moments per rank fall as 1/DP: $s1, $s2, $s4 floats" \
	awk -v a="$s1" -v b="$s2" -v c="$s4" 'BEGIN { exit !(a > 0 && b <= a / 2 * 1.05 && c <= a / 4 * 1.1) }'
finish
