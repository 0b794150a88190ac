#!/usr/bin/env bash
# A BPE checkpoint carries its tokenizer, from the outside, on a tiny model trained
# here on 2 data-parallel ranks:
#  1. round trip: /tokenizer/merges holds the table (vocab - 256 rows); retnet-prep
#     --tokenizer-from the checkpoint, and from a shard, gives the original shards
#     byte for byte for the same text and split; retnet-eval on raw text (a file, a
#     directory of pieces, gzip) scores exactly what it scores on that text's shard
#     (windows and stream), test part and a corpus never trained on alike;
#     retnet-generate with nothing but the checkpoint writes the same text as a
#     checkpoint whose table came from the shards;
#  2. a checkpoint written before checkpoints carried the table (the dataset and
#     the attribute tokenizer/n_merges removed): retnet-eval scores shards made with
#     its tokenizer as before, and raw text given beside such a shard; raw text
#     alone, retnet-generate and retnet-prep --tokenizer-from it are one line each;
#     training resumes from it, and resuming it for no steps on its shards writes a
#     checkpoint that carries the table (then generation equals the original's);
#  3. bad input, each one line and exit status 2 with --output (or retnet-prep's
#     outputs) untouched: a corpus of another tokenizer, a table with an id beyond
#     the vocabulary, a table that is not its id's hash, a table missing while the
#     attribute says it is there, a count that does not make the vocabulary, a shard
#     with a token beyond the vocabulary.
# Usage: tokenizer.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: tokenizer.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup tokenizer
export OMP_NUM_THREADS=1
PREP=$BUILD/data/retnet-prep
EVAL=$BUILD/retnet-eval
GEN=$BUILD/retnet-generate
DRIVER=$BUILD/tests/ckpt_driver
MODEL=(--vocab-size 400 --num-layers 1 --hidden-size 32 --num-heads 2 --seq-length 64
	--chunk-size 8 --micro-batch-size 2 --global-batch-size 4 --lr 3e-3)

head -c 400000 "$CORPUS.txt" >"$T/text.txt"
tail -c 30000 "$CORPUS.txt" >"$T/new.txt" # never trained on: the end of the corpus
check "prep: train, valid, test" "$PREP" --output-prefix "$T/b" --tokenizer bpe --vocab-size 400 \
	--split 90,5,5 "$T/text.txt" >"$T/prep.log"
check "model trained on 2 ranks, saved" "$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" \
	--data-path "$T/b-train.bin" --valid-data-path "$T/b-valid.bin" "${MODEL[@]}" \
	--train-iters 20 --save "$T/ck" >"$T/train.log" 2>&1
CK=$T/ck/iter_0000020.h5
ID=$(tail -c +17 "$T/b-train.bin" | head -c 32 | tr -d '\0')

# ---- 1. round trip ------------------------------------------------------------
check "/tokenizer/merges: uint16 (144, 2) beside the attributes" bash -c "
	h5ls '$CK/tokenizer' | grep -q 'merges *Dataset {144, 2}' &&
	h5dump -A -g /tokenizer '$CK' | grep -q '\"$ID\"' &&
	h5dump -d /tokenizer/merges -H '$CK' | grep -q H5T_STD_U16LE"
check "prep --tokenizer-from the checkpoint" "$PREP" --output-prefix "$T/fc" --tokenizer-from "$T/ck" \
	--split 90,5,5 "$T/text.txt" >"$T/fc.log"
check "prep --tokenizer-from a shard" "$PREP" --output-prefix "$T/fs" --tokenizer-from "$T/b-test.bin" \
	--split 90,5,5 "$T/text.txt" >/dev/null
for p in fc fs; do
	for s in train valid test; do
		check "$p-$s.bin identical to the original b-$s.bin" cmp -s "$T/b-$s.bin" "$T/$p-$s.bin"
	done
done
check "the checkpoint's tokenizer, nothing learned" bash -c "grep -q 'tokenizer $ID' '$T/fc.log' && ! grep -q learned '$T/fc.log'"

# The test part's text, and the new corpus as a shard, as a directory and as gzip.
ct=$(($(od -An -t u8 -j 64 -N 8 "$T/b-train.bin") + $(od -An -t u8 -j 64 -N 8 "$T/b-valid.bin")))
tail -c +$((ct + 1)) "$T/text.txt" >"$T/test.txt"
check "prep: the new corpus as one shard with the checkpoint's tokenizer" "$PREP" \
	--output-prefix "$T/new" --tokenizer-from "$T/ck" --split 0,0,1 "$T/new.txt" >/dev/null
mkdir "$T/newdir"
split -b 7777 -a 2 "$T/new.txt" "$T/newdir/part-"
gzip -c "$T/new.txt" >"$T/new.txt.gz"
score() { # score NAME [flags]: the evaluator on the checkpoint DIR $CKD, JSON to NAME.jsonl
	local name=$1
	shift
	"$EVAL" --load "${CKD:-$T/ck}" --output "$T/$name.jsonl" "$@" >"$T/$name.log" 2>&1 ||
		{ cat "$T/$name.log" >&2; return 1; }
}
same_scores() { # same_scores A B...: every line's tokens, bytes and nll equal
	[[ $(cat "$@" | grep -o '"tokens":[^,]*,"bytes":[^,]*,"nll":[^,]*' | sort -u | wc -l) -eq 1 ]]
}
check "eval: test part as raw text and as the shard" score wt --data "$T/test.txt" "$T/b-test.bin"
check "eval: raw text = its shard (tokens, bytes, nll)" same_scores "$T/wt.jsonl"
check "eval: a corpus never trained on, as a file, a directory of pieces, gzip, a shard" \
	score wn --data "$T/new.txt" "$T/newdir" "$T/new.txt.gz" "$T/new-test.bin"
check "eval: all four the same" same_scores "$T/wn.jsonl"
check "eval, stream: raw text = its shard" score sn --mode stream --data "$T/new.txt" "$T/new-test.bin"
check "eval, stream: the same" same_scores "$T/sn.jsonl"

gen() { # gen NAME CKPT_DIR [flags]: greedy text
	local name=$1 dir=$2
	shift 2
	"$GEN" --load "$dir" --prompt "And God said" --max-new-tokens 40 --temperature 0 "$@" \
		>"$T/$name.txt" 2>"$T/$name.err" || { cat "$T/$name.err" >&2; return 1; }
}
check "generate with nothing but the checkpoint" gen g "$T/ck"
check "... BPE tokens: more than 40 bytes after the prompt" test "$(wc -c <"$T/g.txt")" -gt $((12 + 40 + 1))

# ---- 2. a checkpoint written before checkpoints carried the table -----------------
cp -r "$T/ck" "$T/old"
OLD=$T/old/iter_0000020.h5
check "old: the table and tokenizer/n_merges removed" bash -c "
	'$DRIVER' unlink '$OLD' /tokenizer/merges && '$DRIVER' del-attr '$OLD' /tokenizer n_merges &&
	! h5ls '$OLD/tokenizer/merges' >/dev/null 2>&1"
echo keep >"$T/out.jsonl"
untouched() { check "$1: --output untouched" grep -qx keep "$T/out.jsonl"; }
CKD=$T/old check "old: eval of shards made with its tokenizer" score ow --data "$T/b-test.bin"
check "old: the same score as with the table" same_scores "$T/ow.jsonl" <(grep b-test.bin "$T/wt.jsonl")
CKD=$T/old check "old: raw text beside such a shard (its table is used)" score ot --data "$T/test.txt" "$T/b-test.bin"
check "old: raw text = its shard" same_scores "$T/ot.jsonl" "$T/wt.jsonl"
expect_user_error "old: raw text alone" \
	"$T/new.txt: raw text needs the merge table of tokenizer '$ID', which $OLD does not carry" \
	"$EVAL" --load "$T/old" --data "$T/new.txt" --output "$T/out.jsonl"
untouched "old: raw text alone"
expect_user_error "old: generate" "$OLD: tokenizer '$ID' without its merge table .* resume it for no steps" \
	"$GEN" --load "$T/old" --prompt x
cp "$T/b-train.bin" "$T/keep-train.bin"
expect_user_error "old: prep --tokenizer-from it" "$OLD: tokenizer '$ID' without its merge table" \
	"$PREP" --force --output-prefix "$T/b" --tokenizer-from "$T/old" "$T/text.txt"
check "old: prep's existing outputs untouched" cmp -s "$T/b-train.bin" "$T/keep-train.bin"
cp -r "$T/old" "$T/old2"
check "old: training resumes from it" "$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" \
	--data-path "$T/b-train.bin" "${MODEL[@]}" --train-iters 22 --load "$T/old2" --save "$T/old2" \
	>"$T/old2.log" 2>&1
check "old: ... and its next checkpoint carries the table" bash -c \
	"h5ls '$T/old2/iter_0000022.h5/tokenizer' | grep -q 'merges *Dataset {144, 2}'"
check "old: resumed for no steps on its shards, saved again" "$BUILD/retnet-train" \
	--data-path "$T/b-train.bin" "${MODEL[@]}" --train-iters 20 --load "$T/old" --save "$T/old" \
	>"$T/up.log" 2>&1
check "old: generation from it now equals the original's" bash -c "
	'$GEN' --load '$T/old' --prompt 'And God said' --max-new-tokens 40 --temperature 0 2>/dev/null |
	cmp -s - '$T/g.txt'"

# ---- 3. bad input ---------------------------------------------------------------
"$PREP" --output-prefix "$T/o" --tokenizer bpe --vocab-size 300 --split 1,0,0 "$T/text.txt" >/dev/null
expect_user_error "a corpus of another tokenizer" \
	"$T/o-train.bin: tokenizer \"bpe-v1-300-[0-9a-f]+\" \(vocab 300\) does not match \"$ID\" \(vocab 400\) of the checkpoint" \
	"$EVAL" --load "$T/ck" --data "$T/o-train.bin" --output "$T/out.jsonl"
untouched "a corpus of another tokenizer"
damaged() { # damaged NAME: a copy of the checkpoint directory; prints its file
	rm -rf "$T/$1"
	cp -r "$T/ck" "$T/$1"
	echo "$T/$1/iter_0000020.h5"
}
F=$(damaged beyond)
"$DRIVER" set-u16 "$F" /tokenizer/merges 0 5000
expect_user_error "a merge with an id beyond the vocabulary" \
	"$F: /tokenizer/merges: BPE merge 0 \(5000, [0-9]+\) uses an id that is not defined before it \(ids below 256\)" \
	"$EVAL" --load "$T/beyond" --data "$T/new.txt" --output "$T/out.jsonl"
untouched "an id beyond the vocabulary"
F=$(damaged hash)
"$DRIVER" set-u16 "$F" /tokenizer/merges 1 33
expect_user_error "a table that is not its id's" \
	"$F: /tokenizer/merges: the table's hash gives tokenizer \"bpe-v1-400-[0-9a-f]+\", not \"$ID\" of attribute tokenizer/id" \
	"$EVAL" --load "$T/hash" --data "$T/b-test.bin" --output "$T/out.jsonl"
untouched "a table that is not its id's"
expect_user_error "... refused by generate too" "$F: /tokenizer/merges: the table's hash" \
	"$GEN" --load "$T/hash" --prompt x
F=$(damaged missing)
"$DRIVER" unlink "$F" /tokenizer/merges
expect_user_error "the table missing, the attribute there" \
	"$F: tensor merges: not in the checkpoint \(no /tokenizer/merges\)" \
	"$EVAL" --load "$T/missing" --data "$T/new.txt" --output "$T/out.jsonl"
untouched "the table missing"
F=$(damaged count)
"$DRIVER" set-attr "$F" /tokenizer n_merges 100
expect_user_error "a count that does not make the vocabulary" \
	"$F: attribute tokenizer/n_merges: 100 merges do not make tokenizer \"$ID\" of 400 ids" \
	"$EVAL" --load "$T/count" --data "$T/new.txt" --output "$T/out.jsonl"
untouched "a count that does not make the vocabulary"
cp "$T/b-train.bin" "$T/keep-train.bin"
expect_user_error "prep --tokenizer-from a damaged checkpoint: nothing written" \
	"$T/hash/iter_0000020.h5: /tokenizer/merges: the table's hash" \
	"$PREP" --force --output-prefix "$T/b" --tokenizer-from "$T/hash" "$T/text.txt"
check "... prep's existing outputs untouched" cmp -s "$T/b-train.bin" "$T/keep-train.bin"
# A shard with a token beyond the vocabulary, its checksums made right again (gzip's
# trailer holds the CRC-32 of its input, zlib's crc32).
mkdir "$T/mixed"
cp "$T/new.txt" "$T/mixed/a.txt"
cp "$T/b-test.bin" "$T/mixed/b.bin"
expect_user_error "a directory of text with a shard in it" \
	"$T/mixed/b.bin: a token shard, not text \(give shards as files of their own" \
	"$EVAL" --load "$T/ck" --data "$T/mixed" --output "$T/out.jsonl"
untouched "a shard in a directory of text"
cp "$T/b-test.bin" "$T/big.bin"
m=$(od -An -t u4 -j 80 -N 4 "$T/big.bin" | tr -d ' ')
printf '\377\377' | dd of="$T/big.bin" bs=1 seek=$((128 + 4 * m + 10)) conv=notrunc status=none
tail -c +$((128 + 4 * m + 1)) "$T/big.bin" | gzip -c | tail -c 8 | head -c 4 |
	dd of="$T/big.bin" bs=1 seek=72 conv=notrunc status=none
head -c 124 "$T/big.bin" | gzip -c | tail -c 8 | head -c 4 |
	dd of="$T/big.bin" bs=1 seek=124 conv=notrunc status=none
expect_user_error "a shard with a token beyond the vocabulary" \
	"$T/big.bin: token 65535 at index 5 is >= vocab 400" \
	"$EVAL" --load "$T/ck" --data "$T/big.bin" --output "$T/out.jsonl"
untouched "a token beyond the vocabulary"
finish
