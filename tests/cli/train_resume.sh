#!/usr/bin/env bash
# Checkpoints through retnet-train: (1) a run stopped at iteration 5 and resumed
# gives the uninterrupted run's losses to the last bit (printed with 9 significant
# digits, which identify a float32) and the same final checkpoint (h5diff), on 1
# rank and on DP=2 x TP=2; (2) a checkpoint written at TP=2 x PP=2 loads at TP=1,
# TP=4, PP=1 x DP=2 and DP=2 x PP=2 and continues within 1e-5 relative of
# continuing at the original layout, and saved again right after loading it is the
# same file (h5diff); (3) a damaged checkpoint, a model that does not match it and
# a missing --load directory are clear errors; an empty one starts fresh; (4) with
# virtual pipeline stages (4 layers, PP=2, 2 chunks of 1 layer per rank, interleaved
# 1F1B): resumed to the last bit and to the same file, its checkpoint loaded on one
# rank continues within 1e-5 and saves the same file again, and one rank's
# checkpoint loaded on the virtual stages saves the same file again.
# Usage: train_resume.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_resume.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_resume
COMMON=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --global-batch-size 8 --lr 3e-3
	--lr-warmup-iters 2 --seed 11 --log-interval 1 --lr-decay-iters 10)
export OMP_NUM_THREADS=1

train() { # train NAME RANKS TP PP [flags]
	local name=$1 ranks=$2 tp=$3 pp=$4
	shift 4
	train_run "$name" "$ranks" --tensor-model-parallel-size "$tp" \
		--pipeline-model-parallel-size "$pp" "$@"
}

# (1) bit-exact resume
for layout in "1 1 1 1rank" "4 2 1 dp2tp2"; do
	read -r ranks tp pp name <<<"$layout"
	check "$name: 10 iterations uninterrupted" train "$name-full" "$ranks" "$tp" "$pp" \
		--train-iters 10 --save "$T/$name-full" --save-interval 5
	check "$name: 5 iterations, checkpoint" train "$name-a" "$ranks" "$tp" "$pp" \
		--train-iters 5 --save "$T/$name-split"
	check "$name: resumed to 10" train "$name-b" "$ranks" "$tp" "$pp" \
		--train-iters 10 --load "$T/$name-split" --save "$T/$name-split"
	check "$name: resumed at iteration 5" grep -q "resumed from .*iteration 5" "$T/$name-b.log"
	tail -n 5 "$T/$name-full.loss" >"$T/$name-full.tail"
	check "$name: losses 6..10 identical to the last bit" cmp "$T/$name-full.tail" "$T/$name-b.loss"
	check "$name: identical final checkpoints" same_ckpt \
		"$T/$name-full/iter_0000010.h5" "$T/$name-split/iter_0000010.h5"
done

# (2) another layout
check "TP=2 x PP=2: 5 iterations, checkpoint" train src 4 2 2 --train-iters 5 --save "$T/src"
check "TP=2 x PP=2: continued to 10" train cont 4 2 2 --train-iters 10 --load "$T/src" \
	--save "$T/cont"
for layout in "1 1 1 tp1" "4 4 1 tp4" "2 1 1 dp2" "4 1 2 dp2pp2"; do
	read -r ranks tp pp name <<<"$layout"
	cp -r "$T/src" "$T/src-$name"
	check "loaded at $name, continued" train "re-$name" "$ranks" "$tp" "$pp" \
		--train-iters 10 --load "$T/src-$name"
	check "$name: losses = original layout's (1e-5 rel)" \
		close_columns "$T/re-$name.loss" "$T/cont.loss" 1e-5
	check "$name: loaded and saved again = the original file" train "rt-$name" "$ranks" \
		"$tp" "$pp" --train-iters 5 --load "$T/src-$name" --save "$T/rt-$name"
	check "$name: round trip identical" same_ckpt "$T/src/iter_0000005.h5" \
		"$T/rt-$name/iter_0000005.h5"
done

# (3) errors
expect_user_error "model does not match the checkpoint" \
	"--hidden-size: 128 does not match 64 in .*iter_0000005.h5" \
	"$BUILD/retnet-train" "${COMMON[@]}" --hidden-size 128 --train-iters 6 --load "$T/src"
expect_user_error "missing --load directory" "--load: '$T/nowhere' is not a directory" \
	"$BUILD/retnet-train" "${COMMON[@]}" --train-iters 6 --load "$T/nowhere"
mkdir "$T/empty"
check "an empty --load directory starts fresh" train fresh 1 1 1 --train-iters 1 --load "$T/empty"
cp -r "$T/src" "$T/bad"
f="$T/bad/iter_0000005.h5"
size=$(stat -c %s "$f")
# Flip one byte in the middle of the file: inside some tensor's data.
printf '\xff' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect_user_error "a flipped byte is caught, naming the tensor" "tensor [a-z_/0-9]+.*" \
	"$BUILD/retnet-train" "${COMMON[@]}" --train-iters 6 --load "$T/bad"
truncate -s $((size / 3)) "$f"
expect_user_error "a truncated checkpoint is caught" "iter_0000005.h5" \
	"$BUILD/retnet-train" "${COMMON[@]}" --train-iters 6 --load "$T/bad"

# (4) virtual pipeline stages
V=(--num-layers 4 --num-layers-per-virtual-pipeline-stage 1)
check "virtual: 10 iterations uninterrupted" train v-full 2 1 2 "${V[@]}" --train-iters 10 \
	--save "$T/v-full" --save-interval 5
check "virtual: 5 iterations, checkpoint" train v-a 2 1 2 "${V[@]}" --train-iters 5 \
	--save "$T/v-split"
cp -r "$T/v-split" "$T/v-src"
check "virtual: resumed to 10" train v-b 2 1 2 "${V[@]}" --train-iters 10 --load "$T/v-split" \
	--save "$T/v-split"
tail -n 5 "$T/v-full.loss" >"$T/v-full.tail"
check "virtual: losses 6..10 identical to the last bit" cmp "$T/v-full.tail" "$T/v-b.loss"
check "virtual: identical final checkpoints" same_ckpt "$T/v-full/iter_0000010.h5" \
	"$T/v-split/iter_0000010.h5"
check "virtual stages' checkpoint loaded on one rank, continued" train v-one 1 1 1 \
	--num-layers 4 --train-iters 10 --load "$T/v-src"
check "... losses = the virtual stages' (1e-5 rel)" close_columns "$T/v-one.loss" "$T/v-b.loss" 1e-5
check "... loaded on one rank and saved again = the original file" train v-rt 1 1 1 \
	--num-layers 4 --train-iters 5 --load "$T/v-src" --save "$T/v-rt"
check "... round trip identical" same_ckpt "$T/v-src/iter_0000005.h5" "$T/v-rt/iter_0000005.h5"
check "one rank, 4 layers: 5 iterations, checkpoint" train one4 1 1 1 --num-layers 4 \
	--train-iters 5 --save "$T/one4"
check "one rank's checkpoint loaded on virtual stages and saved again" train one4-rt 2 1 2 \
	"${V[@]}" --train-iters 5 --load "$T/one4" --save "$T/one4-rt"
check "... round trip identical" same_ckpt "$T/one4/iter_0000005.h5" "$T/one4-rt/iter_0000005.h5"
finish
