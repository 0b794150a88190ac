#!/usr/bin/env bash
# retnet-eval from the outside, on a checkpoint trained here: the numbers do not
# depend on the evaluator's layout (1, 2, 4 ranks, TP=2, PP=2, PP=2 x DP=2, 1e-5
# relative) or
# on the retention form (parallel, chunkwise, recurrent); streaming gives the same
# result in pieces of any length (the state is carried) and on TP=2 or PP=2; raw
# text, gzip and token shards of the same text agree (bytes and BPE); the windows score equals the
# trainer's own held-out loss on the same windows; the JSON lines have the keys;
# every bad input is one line and exit status 2, leaving --output untouched.
# Usage: eval.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: eval.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup eval
export OMP_NUM_THREADS=1
EVAL="$BUILD/retnet-eval"

# Held-out text of exactly 96 x 64 + 1 bytes: whole windows of 64 for both programs.
head -c 2000000 "$CORPUS.txt" | tail -c $((96 * 64 + 1)) >"$T/held.txt"
gzip -c "$T/held.txt" >"$T/held.txt.gz"
head -c 1000000 "$CORPUS.txt" >"$T/train.txt"
"$BUILD/data/retnet-prep" --output-prefix "$T/c" --held-out "$T/held.txt" "$T/train.txt" \
	"$T/held.txt" >/dev/null
check "tiny model trained to a checkpoint" "$BUILD/retnet-train" --data-path "$T/c-train.bin" \
	--valid-data-path "$T/c-valid.bin" --num-layers 2 --hidden-size 64 --num-heads 4 \
	--seq-length 64 --chunk-size 8 --micro-batch-size 4 --train-iters 30 --lr 3e-3 \
	--save "$T/ck" --metrics "$T/train.jsonl" >"$T/train.log" 2>&1

nll() { # nll NAME RANKS [flags]: runs the evaluator, prints the first corpus's nll
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" -n "$ranks" "${MPI_EXTRA[@]}" "$EVAL" --load "$T/ck" --output "$T/$name.jsonl" \
		"$@" >"$T/$name.log" 2>&1 || { cat "$T/$name.log" >&2; return 1; }
	json_column "$T/$name.jsonl" nll | head -n 1 >"$T/$name.nll"
}

close() { # close A B: the nll files agree within 1e-5 relative
	close_columns "$T/$1.nll" "$T/$2.nll" 1e-5
}

check "windows, 1 rank" nll w1 1 --data "$T/held.txt" "$T/held.txt.gz" "$T/c-valid.bin" --micro-batch-size 4
check "JSON: one object per corpus with the keys" bash -c "[ \$(wc -l <'$T/w1.jsonl') -eq 3 ] &&
	grep -c '\"corpus\":.*\"tokens\":6144,\"bytes\":6144,\"nll\":.*\"perplexity\":.*\"bits_per_byte\":' '$T/w1.jsonl' | grep -qx 3"
check "text, gzip and shard agree" bash -c "[ \$(json_column() { grep -o '\"nll\":[^,]*' \"\$1\"; }; json_column '$T/w1.jsonl' | sort -u | wc -l) -eq 1 ]"
check "bits per byte = nll / ln 2 (byte tokenizer)" awk 'match($0, /"nll":[^,]*/) { n = substr($0, RSTART + 6, RLENGTH - 6) }
	match($0, /"bits_per_byte":[^,}]*/) { b = substr($0, RSTART + 16, RLENGTH - 16) }
	END { d = b - n / log(2); exit !(d < 1e-6 && d > -1e-6) }' "$T/w1.jsonl"
json_column "$T/train.jsonl" val_loss | tail -n 1 >"$T/trainer.nll"
check "windows nll = the trainer's held-out loss on the same windows" close w1 trainer
for layout in "w2 2" "w4 4" "tp2 2 --tensor-model-parallel-size 2" "pp2 2 --pipeline-model-parallel-size 2"; do
	read -r -a a <<<"$layout"
	check "windows, ${a[*]}" nll "${a[@]}" --data "$T/held.txt" --micro-batch-size 2 && close "${a[0]}" w1
done
# Pipelined batches on PP=2 x DP=2, one window per forward (each stage keeps two
# batches in flight), and PP=2 with the default micro-batch.
check "windows, PP=2 x DP=2, one window per forward" nll pp2dp2 4 --data "$T/held.txt" \
	--pipeline-model-parallel-size 2 --micro-batch-size 1 && close pp2dp2 w1
check "windows, PP=2, default micro-batch" nll pp2def 2 --data "$T/held.txt" \
	--pipeline-model-parallel-size 2 && close pp2def w1
for form in parallel recurrent; do
	check "windows, $form form = chunkwise" nll "f$form" 1 --data "$T/held.txt" --form "$form" &&
		close "f$form" w1
done
check "stream, chunkwise" nll s64 1 --data "$T/held.txt" --mode stream
check "stream, recurrent = chunkwise" nll srec 1 --data "$T/held.txt" --mode stream --form recurrent && close srec s64
check "stream in pieces of 24 = pieces of 64" nll s24 1 --data "$T/held.txt" --mode stream --seq-length 24 && close s24 s64
check "stream on TP=2" nll stp 2 --data "$T/held.txt" --mode stream --tensor-model-parallel-size 2 && close stp s64
check "stream on PP=2" nll spp 2 --data "$T/held.txt" --mode stream --pipeline-model-parallel-size 2 && close spp s64

# Bad input: one line, exit 2, the existing output untouched.
echo keep >"$T/out.jsonl"
refused() { # refused LABEL PATTERN [args]
	local label=$1 pattern=$2
	shift 2
	expect_user_error "$label" "$pattern" "$@"
	check "$label: --output untouched" grep -qx keep "$T/out.jsonl"
}
refused "no --load" "--load: required" "$EVAL" --data "$T/held.txt" --output "$T/out.jsonl"
refused "missing checkpoint directory" "$T/none" "$EVAL" --load "$T/none" --data "$T/held.txt" --output "$T/out.jsonl"
refused "missing corpus" "$T/missing.txt: cannot open" "$EVAL" --load "$T/ck" --data "$T/held.txt" "$T/missing.txt" --output "$T/out.jsonl"
printf '\x1f\x8b\x08\x00garbage' >"$T/bad.gz"
refused "invalid gzip" "$T/bad.gz: (invalid|truncated) gzip" "$EVAL" --load "$T/ck" --data "$T/bad.gz" --output "$T/out.jsonl"
: >"$T/empty.txt"
refused "empty corpus" "$T/empty.txt: empty file \\(no text\\)" "$EVAL" --load "$T/ck" --data "$T/empty.txt" --output "$T/out.jsonl"
refused "stream with the parallel form" "--form: parallel cannot carry a state" "$EVAL" --load "$T/ck" --data "$T/held.txt" --mode stream --form parallel --output "$T/out.jsonl"
refused "stream on 2 data-parallel ranks" "--mode: stream scores one sequence" "$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "$EVAL" --load "$T/ck" --data "$T/held.txt" --mode stream --output "$T/out.jsonl"
refused "unknown iteration" "iter_0000007.h5" "$EVAL" --load "$T/ck" --iteration 7 --data "$T/held.txt" --output "$T/out.jsonl"

# BPE: bits per byte over the exact bytes behind the scored tokens (all but the
# first), windows and stream agree as with bytes, raw text is tokenized with the
# checkpoint's own table, and byte shards are refused with the tokenizer named.
"$BUILD/data/retnet-prep" --output-prefix "$T/b" --tokenizer bpe --vocab-size 320 \
	--held-out "$T/held.txt" "$T/train.txt" >"$T/bprep.log"
check "BPE model trained to a checkpoint" "$BUILD/retnet-train" --data-path "$T/b-train.bin" \
	--vocab-size 320 --num-layers 1 --hidden-size 32 --num-heads 2 --seq-length 64 \
	--chunk-size 8 --micro-batch-size 4 --train-iters 5 --save "$T/bck" >"$T/btrain.log" 2>&1
ntok=$(od -An -t u8 -j 56 -N 8 "$T/b-valid.bin" | tr -d ' ')
check "BPE, windows" "$EVAL" --load "$T/bck" --data "$T/b-valid.bin" --output "$T/bw.jsonl" >"$T/bw.log"
check "BPE, stream" "$EVAL" --load "$T/bck" --data "$T/b-valid.bin" --mode stream --output "$T/bs.jsonl" >"$T/bs.log"
check "BPE: fewer tokens than bytes, the first token's bytes not counted" awk -v n="$ntok" -v b=$((96 * 64 + 1)) '
	match($0, /"tokens":[^,]*/) { t = substr($0, RSTART + 9, RLENGTH - 9) }
	match($0, /"bytes":[^,]*/) { y = substr($0, RSTART + 8, RLENGTH - 8) }
	END { exit !(t == n - 1 && t < y && y < b && y >= b - 64) }' "$T/bw.jsonl"
check "BPE: bits per byte = nll x tokens / (ln 2 x bytes)" awk '
	match($0, /"tokens":[^,]*/) { t = substr($0, RSTART + 9, RLENGTH - 9) }
	match($0, /"bytes":[^,]*/) { y = substr($0, RSTART + 8, RLENGTH - 8) }
	match($0, /"nll":[^,]*/) { n = substr($0, RSTART + 6, RLENGTH - 6) }
	match($0, /"bits_per_byte":[^,}]*/) { b = substr($0, RSTART + 16, RLENGTH - 16) }
	END { d = b - n * t / (log(2) * y); exit !(d < 1e-5 && d > -1e-5) }' "$T/bw.jsonl"
json_column "$T/bw.jsonl" nll >"$T/bw.nll"
json_column "$T/bs.jsonl" nll >"$T/bs.nll"
check "BPE: stream nll is a plausible number" \
	awk '{ exit !($1 > 0 && $1 < 10) }' "$T/bs.nll"
# Raw text with a BPE checkpoint: its own merge table encodes it, exactly as
# retnet-prep made the shard of the same text.
check "BPE, raw text and gzip" "$EVAL" --load "$T/bck" --data "$T/held.txt" "$T/held.txt.gz" \
	--output "$T/bt.jsonl" >"$T/bt.log"
check "BPE: raw text, gzip and the shard score the same tokens, bytes and nll" bash -c "
	for f in '$T/bt.jsonl' '$T/bw.jsonl'; do
		grep -o '\"tokens\":[^,]*,\"bytes\":[^,]*,\"nll\":[^,]*' \"\$f\"
	done | sort -u | wc -l | grep -qx 1"
refused "byte shards with a BPE checkpoint" "$T/c-valid.bin: tokenizer \"bytes-v1\" \\(vocab 256\\) does not match \"bpe-v1-320-" \
	"$EVAL" --load "$T/bck" --data "$T/c-valid.bin" --output "$T/out.jsonl"
finish
