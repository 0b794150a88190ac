#!/usr/bin/env bash
# retnet-generate from the outside, on a checkpoint trained here: the same seed
# gives the same text, another seed another; TP=2 and PP=2 generate exactly the
# single-rank text (greedy and sampled); the prompt comes first in the output; bad
# input is one line and exit status 2. (That token-by-token recurrent inference
# equals the chunkwise forward is shown in test_model.)
# Usage: generate.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: generate.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup generate
export OMP_NUM_THREADS=1
GEN="$BUILD/retnet-generate"

check "tiny model trained to a checkpoint" "$BUILD/retnet-train" --data-path "$CORPUS-train.bin" \
	--num-layers 2 --hidden-size 64 --num-heads 4 --seq-length 64 --chunk-size 8 \
	--micro-batch-size 4 --train-iters 40 --lr 3e-3 --save "$T/ck" >"$T/train.log" 2>&1

gen() { # gen NAME RANKS [flags]
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" -n "$ranks" "${MPI_EXTRA[@]}" "$GEN" --load "$T/ck" --prompt "And God said" \
		--max-new-tokens 80 "$@" >"$T/$name.txt" 2>"$T/$name.err" ||
		{ cat "$T/$name.err" >&2; return 1; }
}

check "sampled, seed 7" gen s7 1 --seed 7 --top-k 20 --temperature 0.8
check "sampled again, seed 7" gen s7b 1 --seed 7 --top-k 20 --temperature 0.8
check "same seed, same text" cmp "$T/s7.txt" "$T/s7b.txt"
check "sampled, seed 8" gen s8 1 --seed 8 --top-k 20 --temperature 0.8
check "another seed, another text" bash -c "! cmp -s '$T/s7.txt' '$T/s8.txt'"
check "the prompt comes first" grep -q "^And God said" "$T/s7.txt"
check "prompt + 80 tokens + newline" test "$(wc -c <"$T/s7.txt")" -eq $((12 + 80 + 1))
check "greedy" gen g1 1 --temperature 0
check "greedy, TP=2" gen g2 2 --temperature 0 --tensor-model-parallel-size 2
check "TP=2 greedy text = single-rank text" cmp "$T/g1.txt" "$T/g2.txt"
check "sampled, PP=2" gen s7pp 2 --seed 7 --top-k 20 --temperature 0.8 --pipeline-model-parallel-size 2
check "PP=2 sampled text = single-rank text" cmp "$T/s7.txt" "$T/s7pp.txt"
check "--timing reports ms per token" bash -c "'$GEN' --load '$T/ck' --prompt x --max-new-tokens 5 --timing 2>&1 >/dev/null | grep -q 'ms/token'"

expect_user_error "no --load" "--load: required" "$GEN" --prompt x
expect_user_error "both prompts" "--prompt-file: give --prompt or --prompt-file, not both" \
	"$GEN" --load "$T/ck" --prompt x --prompt-file "$T/s7.txt"
expect_user_error "missing prompt file" "$T/none.txt: cannot open" \
	"$GEN" --load "$T/ck" --prompt-file "$T/none.txt"
expect_user_error "data-parallel ranks" "generation is one sequence" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "$GEN" --load "$T/ck" --prompt x

# BPE: the checkpoint carries its merge table; nothing else is needed.
head -c 300000 "$CORPUS.txt" >"$T/b.txt"
"$BUILD/data/retnet-prep" --output-prefix "$T/b" --tokenizer bpe --vocab-size 400 "$T/b.txt" >/dev/null
check "BPE model trained to a checkpoint" "$BUILD/retnet-train" --data-path "$T/b-train.bin" \
	--vocab-size 400 --num-layers 1 --hidden-size 32 --num-heads 2 --seq-length 64 \
	--chunk-size 8 --micro-batch-size 4 --train-iters 20 --lr 3e-3 --save "$T/bck" >"$T/btrain.log" 2>&1
bgen() { # bgen NAME RANKS [flags]
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" -n "$ranks" "${MPI_EXTRA[@]}" "$GEN" --load "$T/bck" \
		--prompt "And God said" --max-new-tokens 30 "$@" >"$T/$name.txt" 2>"$T/$name.err" ||
		{ cat "$T/$name.err" >&2; return 1; }
}
check "BPE, greedy" bgen bg1 1 --temperature 0
check "BPE: the prompt comes first" grep -q "^And God said" "$T/bg1.txt"
check "BPE: 30 tokens are more than 30 bytes" test "$(wc -c <"$T/bg1.txt")" -gt $((12 + 30 + 1))
check "BPE, greedy, TP=2" bgen bg2 2 --temperature 0 --tensor-model-parallel-size 2
check "BPE: TP=2 greedy text = single-rank text" cmp "$T/bg1.txt" "$T/bg2.txt"
expect_user_error "--tokenizer is gone (the checkpoint carries it)" "--tokenizer: unknown flag" \
	"$GEN" --load "$T/bck" --tokenizer "$T/b-valid.bin" --prompt x
finish
