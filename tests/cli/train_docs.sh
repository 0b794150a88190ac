#!/usr/bin/env bash
# Documents inside windows: --reset-attention-mask and --eod-mask-loss.
#  (1) without an end-of-document token in the corpus's tokenizer, either flag is a
#      one-line error (exit 2);
#  (2) with one (the small GPT-2 vocabulary of tests/fixtures, whose <|endoftext|>
#      retnet-prep --append-eod puts after each document of three verses, so
#      documents start anywhere, on piece and chunk boundaries too), CP=2, TP=2,
#      PP=2 and DP=2 give the single rank's 10 losses within 1e-5 relative, as
#      train_cp and train_parallel allow, with both flags and with reset alone;
#  (3) the flags change the losses (they are not ignored).
# Usage: train_docs.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR
set -u
BUILD=${1:?usage: train_docs.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR}
CORPUS=${2:?usage}
FX=${3:?usage}
source "$(dirname "$0")/lib.sh"
test_setup train_docs
MODEL=(--num-layers 2 --hidden-size 64 --num-heads 4 --chunk-size 8 --seq-length 64
	--micro-batch-size 2 --global-batch-size 4 --lr 3e-3 --seed 11 --log-interval 1
	--train-iters 10 --eval-iters 2)
COMMON=(--data-path "$CORPUS-train.bin" --valid-data-path "$CORPUS-valid.bin" "${MODEL[@]}")
export OMP_NUM_THREADS=1

# (1)
for flag in --reset-attention-mask --eod-mask-loss; do
	expect_user_error "$flag without an end-of-document token" \
		"$flag: the corpus's tokenizer has no end-of-document token; prepare it with retnet-prep --append-eod" \
		"$MPIEXEC" --quiet -n 1 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" $flag
done

# (2) documents of three verses: a blank line after every third
head -c 300000 "$CORPUS.txt" | awk '{ print } NR % 3 == 0 { print "" }' >"$T/docs.txt"
check "documents prepared with --append-eod" "$BUILD/data/retnet-prep" \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$FX/gpt2_vocab.json" \
	--merge-file "$FX/gpt2_merges.txt" --append-eod --split-documents blank-line \
	--held-out-fraction 0.05 --output-prefix "$T/docs" "$T/docs.txt"
COMMON=(--data-path "$T/docs-train.bin" --valid-data-path "$T/docs-valid.bin" --vocab-size 558
	"${MODEL[@]}")
check "one rank, no flags" train_run plain 1
check "one rank, both flags" train_run one 1 --reset-attention-mask --eod-mask-loss
check "one rank, reset" train_run one-reset 1 --reset-attention-mask
cases=("cp2 2 one --context-parallel-size 2 --reset-attention-mask --eod-mask-loss"
	"tp2 2 one --tensor-model-parallel-size 2 --reset-attention-mask --eod-mask-loss"
	"pp2 2 one --pipeline-model-parallel-size 2 --micro-batch-size 1 --reset-attention-mask --eod-mask-loss"
	"dp2 2 one --reset-attention-mask --eod-mask-loss"
	"cp2-reset 2 one-reset --context-parallel-size 2 --reset-attention-mask")
for c in "${cases[@]}"; do
	read -r name ranks ref flags <<<"$c"
	# shellcheck disable=SC2086 # flags is a list of words
	check "$name: 10 iterations" train_run "$name" "$ranks" $flags
	check "$name: losses within 1e-5 of $ref" close_columns "$T/$name.loss" "$T/$ref.loss" 1e-5
	json_column "$T/$name.jsonl" val_loss >"$T/$name.val"
	json_column "$T/$ref.jsonl" val_loss >"$T/$ref.val"
	check "$name: held-out loss within 1e-5 of $ref" \
		close_columns "$T/$name.val" "$T/$ref.val" 1e-5
done

# (3)
differ() { ! close_columns "$1" "$2" 1e-4 >/dev/null; }
check "reset changes the losses" differ "$T/one-reset.loss" "$T/plain.loss"
check "the loss mask changes the losses" differ "$T/one.loss" "$T/one-reset.loss"
finish
