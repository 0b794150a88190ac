#!/usr/bin/env bash
# The golden curve: the first 20 losses of the tiny configuration on the default
# corpus, one rank, against tests/golden/tiny_kjv_losses.txt at 1e-4 relative
# (Megatron-LM and llm.c keep such curves). A change that moves them must say why
# in its commit message, and regenerate the file with --update.
# Usage: golden.sh BUILD_DIR CORPUS_PREFIX [--update]
set -u
BUILD=${1:?usage: golden.sh BUILD_DIR CORPUS_PREFIX [--update]}
CORPUS=${2:?usage}
GOLDEN="$(dirname "$0")/../golden/tiny_kjv_losses.txt"
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_golden.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1

check "tiny run of 20 iterations" "$BUILD/retnet-train" --data-path "$CORPUS-train.bin" \
	--num-layers 2 --hidden-size 64 --num-heads 4 --seq-length 32 --chunk-size 8 \
	--micro-batch-size 4 --global-batch-size 8 --train-iters 20 --lr 3e-3 \
	--lr-warmup-iters 5 --seed 1234 --metrics "$T/m.jsonl" >"$T/log"
json_column "$T/m.jsonl" loss >"$T/loss"
if [[ ${3:-} == --update ]]; then
	cp "$T/loss" "$GOLDEN"
	echo "golden: wrote $GOLDEN"
fi
check "20 losses" test "$(wc -l <"$T/loss")" -eq 20
check "losses = golden curve (1e-4 rel)" close_columns "$T/loss" "$GOLDEN" 1e-4
finish
