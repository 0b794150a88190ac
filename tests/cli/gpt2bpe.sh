#!/usr/bin/env bash
# GPT-2's tokenizer in retnet-prep, retnet-train and retnet-eval, from the outside,
# with the small GPT-2 vocabulary of tests/fixtures (tests/ref/gpt2bpe_reference.py):
#  1. the vocab.json + merges.txt pair and the equivalent tokenizer.json give the
#     same shards; the same inputs give the same shards again; the header records
#     the end-of-document id;
#  2. --append-eod puts the id after each input file, and with --split-documents
#     blank-line also after each block a blank line ends: the shard is exactly the
#     documents' own encodings, each followed by the id;
#  3. bad input, each one line naming the file and the rule, exit status 2, and the
#     output directory unchanged: a pair that disagree, a tokenizer.json of type
#     WordPiece or Unigram, an end-of-document token missing with --append-eod, a
#     token id beyond the vocabulary, --append-eod with the byte tokenizer;
#  4. end to end: prep with the pair, train 2 iterations, and retnet-eval scores a
#     new text file with nothing but the checkpoint, exactly as it scores that
#     text's shard.
# Usage: gpt2bpe.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR
set -u
BUILD=${1:?usage: gpt2bpe.sh BUILD_DIR CORPUS_PREFIX FIXTURES_DIR}
CORPUS=${2:?usage}
FX=${3:?usage}
source "$(dirname "$0")/lib.sh"
test_setup gpt2bpe
export OMP_NUM_THREADS=1
PREP=$BUILD/data/retnet-prep
VOCAB=$FX/gpt2_vocab.json
MERGES=$FX/gpt2_merges.txt
JSON=$FX/gpt2_tokenizer.json
PAIR=(--tokenizer-type GPT2BPETokenizer --vocab-file "$VOCAB" --merge-file "$MERGES")
EOD=$(grep -o '^vocab [0-9]* eod [0-9]*' "$FX/gpt2bpe_fixture.txt" | cut -d' ' -f4)

tokens() { # tokens SHARD: its tokens, one per line
	local t
	t=$(od -An -t u4 -j 92 -N 4 "$1" | tr -d ' ')
	od -An -v -t u2 -j $((128 + t)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}
prep1() { # prep1 NAME [flags] FILE...: one train shard $T/NAME-train.bin
	local name=$1
	shift
	"$PREP" --output-prefix "$T/$name" --split 1,0,0 "$@" >"$T/$name.log" 2>&1 ||
		{ cat "$T/$name.log" >&2; return 1; }
}

# ---- 1. the pair and tokenizer.json, determinism, the header --------------------
head -c 200000 "$CORPUS.txt" >"$T/text.txt"
printf 'Le café, naïve résumé. 日本語のテキスト 👍🏽\n' >>"$T/text.txt"
check "prep with the pair" prep1 pair "${PAIR[@]}" "$T/text.txt"
check "prep with tokenizer.json" prep1 json --tokenizer-json "$JSON" "$T/text.txt"
check "the same shard from both" cmp -s "$T/pair-train.bin" "$T/json-train.bin"
# newer tokenizers write merges as ["a", "b"] pairs
awk '/"merges": \[/ { m = 1; print; next } m && /^ *\]/ { m = 0 }
	m { line = $0; comma = (line ~ /,$/) ? "," : ""; sub(/^ *"/, "", line); sub(/",?$/, "", line)
	    split(line, t, " "); printf "   [\"%s\", \"%s\"]%s\n", t[1], t[2], comma; next } { print }' \
	"$JSON" >"$T/pairs.json"
check "tokenizer.json with merges as [a, b] pairs" prep1 pairs --tokenizer-json "$T/pairs.json" \
	"$T/text.txt"
check "... the same shard" cmp -s "$T/pair-train.bin" "$T/pairs-train.bin"
check "prep again" prep1 again "${PAIR[@]}" "$T/text.txt"
check "the same inputs give the same shard" cmp -s "$T/pair-train.bin" "$T/again-train.bin"
check "version 3, end-of-document id $EOD recorded (+1 at offset 88)" bash -c "
	[[ \$(od -An -t u4 -j 8 -N 4 '$T/pair-train.bin' | tr -d ' ') == 3 &&
	   \$(od -An -t u4 -j 88 -N 4 '$T/pair-train.bin' | tr -d ' ') == $((EOD + 1)) ]]"
check "the log names the tokenizer" grep -q 'tokenizer gpt2bpe-558-[0-9a-f]\{16\} (vocab 558)' \
	"$T/pair.log"

# ---- 2. --append-eod: files and blank-line blocks ----------------------------------
printf 'First document, one line.\nIts second line.\n' >"$T/d1.txt"
printf 'Second document: naïve 日本\n\n\nstill the second file, a new block\n' >"$T/d2.txt"
prep1 e1 "${PAIR[@]}" "$T/d1.txt" && prep1 e2 "${PAIR[@]}" "$T/d2.txt"
{ tokens "$T/e1-train.bin"; echo "$EOD"; tokens "$T/e2-train.bin"; echo "$EOD"; } >"$T/want-files"
check "prep --append-eod (each file a document)" prep1 ef "${PAIR[@]}" --append-eod "$T/d1.txt" "$T/d2.txt"
check "... each file's own ids, then $EOD" cmp -s <(tokens "$T/ef-train.bin") "$T/want-files"
check "... the source bytes count no id" bash -c \
	"grep -q 'ef-train.bin: [0-9]* tokens from $(cat "$T/d1.txt" "$T/d2.txt" | wc -c) bytes' '$T/ef.log'"

printf 'Block one.\nStill block one.\n\n' >"$T/b1.txt"
printf 'Block two.\n\n\n\n' >"$T/b2.txt"
printf 'Block three, the end of the file\n' >"$T/b3.txt"
cat "$T/b1.txt" "$T/b2.txt" "$T/b3.txt" >"$T/blocks.txt"
for b in b1 b2 b3; do prep1 "x$b" "${PAIR[@]}" "$T/$b.txt"; done
{ for b in b1 b2 b3; do tokens "$T/x$b-train.bin"; echo "$EOD"; done
  tokens "$T/e1-train.bin"; echo "$EOD"; } >"$T/want-blocks"
check "prep --append-eod --split-documents blank-line" prep1 eb "${PAIR[@]}" --append-eod \
	--split-documents blank-line "$T/blocks.txt" "$T/d1.txt"
check "... each block's own ids, then $EOD; a file's end ends one too" \
	cmp -s <(tokens "$T/eb-train.bin") "$T/want-blocks"
check "... a tokenizer.json gives the same" prep1 ebj --tokenizer-json "$JSON" --append-eod \
	--split-documents blank-line "$T/blocks.txt" "$T/d1.txt"
check "... byte for byte" cmp -s "$T/eb-train.bin" "$T/ebj-train.bin"

# ---- 3. bad input ----------------------------------------------------------------
mkdir "$T/out"
echo keep >"$T/out/keep-train.bin"
snapshot() { (cd "$T/out" && stat -c '%n %Y %s' . && ls -lA --time-style=+%s && md5sum ./*) 2>&1; }
snapshot >"$T/out.before"
# refused PATTERN LABEL FLAGS...: one line, exit 2, $T/out unchanged
refused() {
	local label=$1 pattern=$2
	shift 2
	expect_user_error "$label" "$pattern" "$PREP" --output-prefix "$T/out/o" --split 1,0,0 "$@"
	check "$label: the output directory is unchanged" cmp -s "$T/out.before" <(snapshot)
}
cp "$MERGES" "$T/disagree.txt"
echo 'Ġthe Ġthe' >>"$T/disagree.txt"
refused "a pair that disagree" \
	"$T/disagree.txt:$(wc -l <"$T/disagree.txt"): merge \"Ġthe Ġthe\" makes \"ĠtheĠthe\", which is not a token of the vocabulary \(the pair disagree\)" \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$VOCAB" --merge-file "$T/disagree.txt" "$T/d1.txt"
cp "$MERGES" "$T/unknown.txt"
echo 'Ġthe zzzz' >>"$T/unknown.txt"
refused "a merge of a token the vocabulary lacks" \
	"$T/unknown.txt:[0-9]+: merge \"Ġthe zzzz\": \"zzzz\" is not a token of the vocabulary \(the pair disagree\)" \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$VOCAB" --merge-file "$T/unknown.txt" "$T/d1.txt"
for type in WordPiece Unigram; do
	sed "s/\"type\": \"BPE\"/\"type\": \"$type\"/" "$JSON" >"$T/$type.json"
	refused "tokenizer.json of type $type" \
		"$T/$type.json: model.type \"$type\" is not supported: only byte-level BPE \(GPT-2's kind\)" \
		--tokenizer-json "$T/$type.json" "$T/d1.txt"
done
sed 's/"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true/"type": "Whitespace"/' \
	"$JSON" | tr -d '\n' | sed 's/"pre_tokenizer": {[^}]*}/"pre_tokenizer": {"type": "Whitespace"}/' >"$T/ws.json"
refused "tokenizer.json with another pre-tokenizer" \
	"$T/ws.json: pre_tokenizer \"Whitespace\" is not supported" --tokenizer-json "$T/ws.json" "$T/d1.txt"
sed "s/, \"<|endoftext|>\": $EOD}/}/" "$VOCAB" >"$T/noeod.json"
check "a vocabulary without <|endoftext|> loads without --append-eod" prep1 noeod \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$T/noeod.json" --merge-file "$MERGES" "$T/d1.txt"
refused "--append-eod, the end-of-document token missing" \
	"$T/noeod.json: no \"<\|endoftext\|>\" token: --append-eod needs an end-of-document token in the vocabulary" \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$T/noeod.json" --merge-file "$MERGES" --append-eod "$T/d1.txt"
sed "s/\"<|endoftext|>\": $EOD}/\"<|endoftext|>\": 70000}/" "$VOCAB" >"$T/beyond.json"
refused "a token id beyond the vocabulary" \
	"$T/beyond.json: token id 70000 of \"<\|endoftext\|>\" is beyond the vocabulary of 558 ids \(ids must be 0 to N-1, each once\)" \
	--tokenizer-type GPT2BPETokenizer --vocab-file "$T/beyond.json" --merge-file "$MERGES" "$T/d1.txt"
refused "--append-eod with the byte tokenizer" \
	"--append-eod: the byte tokenizer has no end-of-document id" --append-eod "$T/d1.txt"
refused "--vocab-file without --tokenizer-type" \
	"--vocab-file: only with --tokenizer-type GPT2BPETokenizer" --vocab-file "$VOCAB" "$T/d1.txt"
refused "--split-documents without --append-eod" "--split-documents: only with --append-eod" \
	"${PAIR[@]}" --split-documents blank-line "$T/d1.txt"

# ---- 4. end to end: prep, train 2 iterations, eval with only the checkpoint ------------
MODEL=(--vocab-size 558 --num-layers 1 --hidden-size 32 --num-heads 2 --seq-length 32
	--chunk-size 8 --micro-batch-size 2 --global-batch-size 4)
check "prep --append-eod with the pair" prep1 tr "${PAIR[@]}" --append-eod --split-documents \
	blank-line "$T/text.txt"
check "train 2 iterations on 2 ranks, saved" "$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" \
	"$BUILD/retnet-train" --data-path "$T/tr-train.bin" "${MODEL[@]}" --train-iters 2 \
	--save "$T/ck" >"$T/train.log" 2>&1
CK=$T/ck/iter_0000002.h5
ID=$(grep -o 'gpt2bpe-558-[0-9a-f]*' "$T/tr.log" | head -1)
check "the checkpoint: /tokenizer/table, tokenizer/eod_id $EOD, the id" bash -c "
	h5ls '$CK/tokenizer' | grep -q 'table *Dataset' &&
	h5dump -A -g /tokenizer '$CK' | grep -A6 '"eod_id"' | grep -q '(0): $EOD' &&
	h5dump -A -g /tokenizer '$CK' | grep -q '\"$ID\"'"
tail -c 20000 "$CORPUS.txt" >"$T/new.txt"
printf 'Encore du texte: café, 日本語 \xff\xfe.\n' >>"$T/new.txt"
check "eval: a new text file with nothing but the checkpoint" bash -c \
	"'$BUILD/retnet-eval' --load '$T/ck' --data '$T/new.txt' --output '$T/e.jsonl' >'$T/e.log' 2>&1"
check "prep --tokenizer-from the checkpoint: that text's shard" prep1 new --tokenizer-from "$T/ck" \
	"$T/new.txt"
check "eval of the shard" bash -c \
	"'$BUILD/retnet-eval' --load '$T/ck' --data '$T/new-train.bin' --output '$T/s.jsonl' >'$T/s.log' 2>&1"
check "the text scores as its shard (tokens, bytes, nll)" bash -c "
	a=\$(grep -o '\"tokens\":[^,]*,\"bytes\":[^,]*,\"nll\":[^,]*' '$T/e.jsonl')
	b=\$(grep -o '\"tokens\":[^,]*,\"bytes\":[^,]*,\"nll\":[^,]*' '$T/s.jsonl')
	[[ -n \$a && \$a == \$b ]]"
check "generate decodes with the checkpoint's table" bash -c \
	"'$BUILD/retnet-generate' --load '$T/ck' --prompt 'And God said' --max-new-tokens 8 \
	 --temperature 0 >'$T/g.txt' 2>'$T/g.err' && [[ \$(head -c 12 '$T/g.txt') == 'And God said' ]]"
finish
