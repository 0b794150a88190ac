#!/usr/bin/env bash
# retnet-eval on a checkpoint trained with --reset-attention-mask (each verse a
# document, ended by <|endoftext|> of the small GPT-2 vocabulary of tests/fixtures):
#  (1) the checkpoint records config/reset_attention_mask = 1 and
#      config/eod_mask_loss = 0;
#  (2) windows mode applies the resets by default: its nll equals the trainer's own
#      held-out loss on the same windows (1e-5 relative, as eval.sh allows), and
#      --no-reset-attention-mask gives another number;
#  (3) stream mode restarts the state at each document: chunkwise = recurrent, and
#      pieces of 24 = pieces of 64 (a start on a piece's first token too), unlike the
#      stream without resets;
#  (4) without an end-of-document id, or with both flags: one line, exit 2.
# Usage: eval_docs.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR
set -u
BUILD=${1:?usage: eval_docs.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR}
CORPUS=${2:?usage}
FX=${3:?usage}
source "$(dirname "$0")/lib.sh"
test_setup eval_docs
export OMP_NUM_THREADS=1
EVAL="$BUILD/retnet-eval"

PREP=("$BUILD/data/retnet-prep" --force --tokenizer-type GPT2BPETokenizer
	--vocab-file "$FX/gpt2_vocab.json" --merge-file "$FX/gpt2_merges.txt" --append-eod
	--split-documents blank-line)
docs() { awk '{ print; print "" }'; } # each verse a document
head -c 1000000 "$CORPUS.txt" | docs >"$T/train.txt"
head -c 2000000 "$CORPUS.txt" | tail -c 40000 | docs >"$T/held-all.txt"
# A held-out shard of exactly 96 x 64 + 1 tokens, whole windows of 64 for both
# programs: the longest prefix of held-all.txt (bisection on its bytes) that makes
# no more tokens, which with one token more or less per byte makes exactly that many.
held_tokens() { # held_tokens BYTES: tokens of that prefix, EOD tokens included
	head -c "$1" "$T/held-all.txt" >"$T/held.txt"
	"${PREP[@]}" --output-prefix "$T/c" --held-out "$T/held.txt" "$T/train.txt" 2>&1 |
		sed -n 's/.*c-valid.bin: \([0-9]*\) tokens.*/\1/p'
}
want=$((96 * 64 + 1))
lo=1 hi=$(stat -c %s "$T/held-all.txt")
while ((lo < hi)); do
	mid=$(((lo + hi + 1) / 2))
	if (($(held_tokens "$mid") <= want)); then lo=$mid; else hi=$((mid - 1)); fi
done
check "held-out shard of $want tokens" test "$(held_tokens "$lo")" = "$want"
check "tiny model trained with --reset-attention-mask" "$BUILD/retnet-train" \
	--data-path "$T/c-train.bin" --valid-data-path "$T/c-valid.bin" --vocab-size 558 --num-layers 2 \
	--hidden-size 64 --num-heads 4 --seq-length 64 --chunk-size 8 --micro-batch-size 4 \
	--train-iters 10 --lr 3e-3 --eval-iters 24 --reset-attention-mask --save "$T/ck" \
	--metrics "$T/train.jsonl" >"$T/train.log" 2>&1

# (1)
attr() { # attr NAME: the value of attribute config/NAME in the checkpoint
	h5dump -a "/config/$1" "$T/ck/$(cd "$T/ck" && ls iter_*.h5 | tail -n 1)" |
		awk '/\(0\):/ { print $2 }'
}
check "config/reset_attention_mask = 1" test "$(attr reset_attention_mask)" = 1
check "config/eod_mask_loss = 0" test "$(attr eod_mask_loss)" = 0

nll() { # nll NAME RANKS [flags]: runs the evaluator, prints the first corpus's nll
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" -n "$ranks" "${MPI_EXTRA[@]}" "$EVAL" --load "$T/ck" --output "$T/$name.jsonl" \
		"$@" >"$T/$name.log" 2>&1 || { cat "$T/$name.log" >&2; return 1; }
	json_column "$T/$name.jsonl" nll | head -n 1 >"$T/$name.nll"
}
close() { close_columns "$T/$1.nll" "$T/$2.nll" 1e-5; }
differ() { ! close_columns "$T/$1.nll" "$T/$2.nll" 1e-4 >/dev/null; }

# (2)
check "windows, the checkpoint's resets" nll w 1 --data "$T/c-valid.bin" --micro-batch-size 4
check "JSON says reset_attention_mask true" grep -q '"reset_attention_mask":true' "$T/w.jsonl"
json_column "$T/train.jsonl" val_loss | tail -n 1 >"$T/trainer.nll"
check "windows nll = the trainer's held-out loss (1e-5)" close w trainer
check "windows, 2 ranks (CP=2) = 1 rank" nll wcp 2 --data "$T/c-valid.bin" \
	--context-parallel-size 2 --micro-batch-size 4 && close wcp w
check "windows, --no-reset-attention-mask" nll wn 1 --data "$T/c-valid.bin" \
	--no-reset-attention-mask --micro-batch-size 4
check "JSON says reset_attention_mask false" grep -q '"reset_attention_mask":false' "$T/wn.jsonl"
check "--no-reset-attention-mask gives another nll" differ wn w

# (3)
check "stream, chunkwise, resets" nll s64 1 --data "$T/c-valid.bin" --mode stream
check "stream, recurrent = chunkwise" nll srec 1 --data "$T/c-valid.bin" --mode stream \
	--form recurrent && close srec s64
check "stream in pieces of 24 = pieces of 64" nll s24 1 --data "$T/c-valid.bin" \
	--mode stream --seq-length 24 && close s24 s64
check "stream without resets" nll sn 1 --data "$T/c-valid.bin" --mode stream \
	--no-reset-attention-mask
check "stream: the resets change the nll" differ sn s64

# (4)
expect_user_error "both flags" "--no-reset-attention-mask: not with --reset-attention-mask" \
	"$EVAL" --load "$T/ck" --data "$T/c-valid.bin" --reset-attention-mask \
	--no-reset-attention-mask
"$BUILD/data/retnet-prep" --output-prefix "$T/bytes" --held-out-fraction 0.5 "$T/held.txt" \
	>/dev/null
check "a byte-tokenizer model without resets" "$BUILD/retnet-train" \
	--data-path "$T/bytes-train.bin" --num-layers 1 --hidden-size 32 --num-heads 2 \
	--seq-length 16 --chunk-size 8 --micro-batch-size 1 --global-batch-size 1 \
	--train-iters 1 --save "$T/ck-bytes" >"$T/bytes.log" 2>&1
expect_user_error "resets without an end-of-document id" \
	"--reset-attention-mask \\(given\\): the checkpoint's tokenizer has no end-of-document token" \
	"$EVAL" --load "$T/ck-bytes" --data "$T/bytes-valid.bin" --reset-attention-mask
finish
