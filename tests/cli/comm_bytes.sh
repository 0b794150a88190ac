#!/usr/bin/env bash
# Communication accounting: the bytes rank 0 sent per step on each axis (the metrics'
# tp_bytes, cp_bytes, dp_bytes, pp_bytes) against the formula from the model's
# shapes, for the tiny model (d=64, 2 layers, 4 heads: dk=16, dv=32; f=128; V=256):
#   TP: per layer of the stage and micro-batch, 4 all-reduces of M x d floats (M = B
#       x T/CP rows); with --recompute-activations one more (the MSR all-reduce) for
#       every layer backward recomputes, all but the last when its forward came just
#       before (one stage); an all-reduce sends 2 (p-1)/p of its bytes;
#   CP: per layer and micro-batch 2 all-gathers of B x H/TP x dk x dv floats, each
#       sending (p-1) times that;
#   DP: the gradient over the data x context plane of R ranks: all-reduce
#       2 (R-1)/R of the stage's parameters, or with --use-distributed-optimizer a
#       reduce-scatter and a parameter all-gather, (R-1)/R each;
#   PP: the first stage sends M x d floats per micro-batch forward.
# Every step sends the same; the check is exact (to the printed digits).
# Usage: comm_bytes.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: comm_bytes.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup comm_bytes
export OMP_NUM_THREADS=1
COMMON=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 64 --num-heads 4
	--seq-length 64 --chunk-size 8 --micro-batch-size 1 --log-interval 1 --train-iters 2)

# run NAME RANKS TP CP PP GLOBAL [flags]: the metrics of the last step in $T/NAME.last
run() {
	local name=$1 ranks=$2 tp=$3 cp=$4 pp=$5 gb=$6
	shift 6
	"$MPIEXEC" --quiet -n "$ranks" "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" \
		--tensor-model-parallel-size "$tp" --context-parallel-size "$cp" \
		--pipeline-model-parallel-size "$pp" --global-batch-size "$gb" \
		--metrics "$T/$name.jsonl" "$@" >"$T/$name.log" 2>&1 || { cat "$T/$name.log" >&2; return 1; }
	tail -n 1 "$T/$name.jsonl" >"$T/$name.last"
}
got() { json_column "$T/$1.last" "$2"; }
expect() { # expect NAME AXIS VALUE
	local v
	v=$(got "$1" "$2_bytes")
	check "$1: $2_bytes $v = $3" awk -v a="$v" -v b="$3" 'BEGIN { exit !(a == b) }'
}
# rank 0's share of the parameters: the embedding and one layer (of 2 stages) or two,
# its TP slices: LN 4d, Wq Wk 2 d (d/tp), Wv Wg Wo 3 d (2d/tp), W1 b1 W2 (f/tp)(2d+1), b2 d
stage_params() { # stage_params TP LAYERS FIRST LAST
	awk -v tp="$1" -v l="$2" -v first="$3" -v last="$4" 'BEGIN {
		d = 64; f = 128; V = 256
		layer = 4 * d + 2 * d * d / tp + 3 * d * 2 * d / tp + f / tp * (2 * d + 1) + d
		print layer * l + first * V * d + last * (2 * d + d * V) }'
}

check "TP=2 x CP=2 x PP=2" run a 8 2 2 2 2
# DP: R = CP x DP = 2; n_micro = 2 (global 2, DP 1); stage 0: the embedding and 1 layer
# TP: 2 micro-batches x 4 all-reduces x 1 layer x (32 x 64 floats) x 2 (2-1)/2
expect a tp $((2 * 4 * 1 * 32 * 64 * 4))
expect a cp $((2 * 2 * 2 * 16 * 32 * 4 * 1))
expect a dp "$(awk -v p="$(stage_params 2 1 1 0)" 'BEGIN { print 2 * 1 / 2 * p * 4 }')"
expect a pp $((2 * 32 * 64 * 4))

check "DP=2, distributed optimizer, recompute, TP=2" run b 4 2 1 1 4 \
	--use-distributed-optimizer --recompute-activations
# n_micro = 2 (global 4, DP 2), M = 64 rows, 2 layers: 4 all-reduces each, and 1
# recomputed (layer 0) per micro-batch
expect b tp $((2 * (4 * 2 + 1) * 64 * 64 * 4))
expect b cp 0
expect b dp "$(awk -v p="$(stage_params 2 2 1 1)" 'BEGIN { print 2 * 1 / 2 * p * 4 }')"
expect b pp 0
finish
