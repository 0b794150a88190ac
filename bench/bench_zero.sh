#!/usr/bin/env bash
# Memory at scale: the distributed optimizer (--use-distributed-optimizer) and
# checkpoints written in the background (--async-save), measured with retnet-train.
#
#  1. memory: a 101M-parameter model (d=1024, L=8, H=8, f=2048, V=256; T=128, one
#     sequence per rank) for 2 steps at DP = 1, 2, 4, 8 (ranks oversubscribed: memory,
#     not speed), with and without the flag: the optimizer state per rank (the
#     trainer's own count of the moments it keeps) and the peak RSS of the largest
#     rank. The state must fall as 1/DP.
#  2. speed: bench-small (d=512, L=6, H=4, f=1024, C=128, T=2048), DP=2 x 1 thread,
#     global batch 4: tokens/s over the last STEPS_TIMED steps of each run, with and
#     without the flag, ROUNDS alternating rounds, medians and their ratio
#     (target: the flag within 3% of the all-reduce path).
#  3. save cost: bench-small, and the 101M model at DP=2, ITERS steps, a checkpoint at
#     ITERS/2: training time lost to it (elapsed at the last step minus a run without
#     a save; for --async-save plus the wait the final save had for it), synchronous
#     against asynchronous, ROUNDS rounds, medians (target: async loses at most 10%
#     of what sync loses).
#     SAVE_RANKS (2) sets the data-parallel size of part 3 (with 1, a core is left
#     free for the writer thread), SAVE_MODELS ("small big") its models, SAVE_ARGS
#     extra flags for its runs (e.g. "--ckpt-compression-level 0").
# Usage: bench/bench_zero.sh [BUILD_DIR]   knobs: ROUNDS (5), PARTS ("1 2 3"),
#   CKPT_DIR (where checkpoints go; default a directory under /tmp), OUT (out/bench-zero)
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
PARTS=${PARTS:-1 2 3}
SAVE_RANKS=${SAVE_RANKS:-2}
SAVE_MODELS=${SAVE_MODELS:-small big}
read -r -a SAVE_ARGS <<<"${SAVE_ARGS:-}"
OUT=${OUT:-out/bench-zero}
cd "$(dirname "$0")/.."
CORPUS=$BUILD/bench-corpus/kjv
[[ -f $CORPUS-train.bin ]] || bash tests/cli/make_corpus.sh "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
CK=${CKPT_DIR:-$(mktemp -d /tmp/rn_bench_zero.XXXXXX)}
trap 'rm -rf "$CK"' EXIT

BIG=(--num-layers 8 --hidden-size 1024 --num-heads 8 --ffn-hidden-size 2048 --seq-length 128
	--chunk-size 64 --micro-batch-size 1 --lr 1e-4 --data-path "$CORPUS-train.bin")
SMALL=(--num-layers 6 --hidden-size 512 --num-heads 4 --ffn-hidden-size 1024 --seq-length 2048
	--chunk-size 128 --micro-batch-size 2 --global-batch-size 4 --lr 1e-3
	--data-path "$CORPUS-train.bin")

train() { # train NAME RANKS THREADS FLAGS...: the log in OUT/NAME.log, metrics in .jsonl
	local name=$1 ranks=$2 threads=$3
	shift 3
	rm -f "$OUT/$name.jsonl"
	mpirun -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" \
		"$BUILD/retnet-train" --metrics "$OUT/$name.jsonl" "$@" >"$OUT/$name.log" 2>&1 ||
		{ tail -n 20 "$OUT/$name.log"; exit 1; }
}
field() { grep -o "\"$2\":[^,}]*" "$1" | tail -n 1 | cut -d: -f2; }
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- 1. memory ---------------------------------------------------------------
if [[ " $PARTS " == *" 1 "* ]]; then
	echo "## 1. memory per rank, 101M-parameter model"
	echo "| DP | flag | parameters | optimizer state per rank (MiB) | peak RSS, largest rank (MiB) |"
	echo "|---|---|---|---|---|"
	for dp in 1 2 4 8; do
		for flag in "" --use-distributed-optimizer; do
			name=mem-dp$dp${flag:+-zero}
			train "$name" "$dp" 1 "${BIG[@]}" --train-iters 2 --log-interval 1 $flag
			params=$(grep -o '[0-9]* parameters' "$OUT/$name.log" | head -1 | cut -d' ' -f1)
			state=$(grep -o 'optimizer state [0-9]* floats ([0-9.]* MiB)' "$OUT/$name.log" |
				grep -o '([0-9.]*' | tr -d '(')
			rss=$(grep -o '[0-9]* MiB (the largest rank)' "$OUT/$name.log" | cut -d' ' -f1)
			echo "| $dp | ${flag:-no} | $params | $state | $rss |"
		done
	done | tee "$OUT/memory.md"
fi

# ---- 2. speed at DP=2 ------------------------------------------------------------
if [[ " $PARTS " == *" 2 "* ]]; then
	echo "## 2. tokens/s, bench-small, DP=2 x 1 thread, median of $ROUNDS alternating rounds"
	: >"$OUT/speed-plain.txt"
	: >"$OUT/speed-zero.txt"
	for ((r = 1; r <= ROUNDS; r++)); do
		for flag in "" --use-distributed-optimizer; do
			name=speed-r$r${flag:+-zero}
			# 6 steps; the last log line covers steps 5 and 6 (after the warm-up)
			train "$name" 2 1 "${SMALL[@]}" --train-iters 6 --log-interval 4 $flag
			kind=plain
			[[ -n $flag ]] && kind=zero
			tail -n 1 "$OUT/$name.jsonl" | grep -o '"tokens_per_sec":[^,}]*' | cut -d: -f2 \
				>>"$OUT/speed-$kind.txt"
		done
		echo "round $r: all-reduce $(tail -n 1 "$OUT/speed-plain.txt") tokens/s, distributed" \
			"$(tail -n 1 "$OUT/speed-zero.txt") tokens/s"
	done
	mp=$(median <"$OUT/speed-plain.txt")
	mz=$(median <"$OUT/speed-zero.txt")
	echo "median: all-reduce $mp tokens/s, distributed optimizer $mz tokens/s, ratio" \
		"$(awk -v a="$mz" -v b="$mp" 'BEGIN { printf "%.4f", a / b }')" | tee "$OUT/speed.md"
fi

# ---- 3. what a save costs training ------------------------------------------------
if [[ " $PARTS " == *" 3 "* ]]; then
	echo "## 3. training time lost to one checkpoint, DP=$SAVE_RANKS x 1 thread, median of $ROUNDS rounds${SAVE_ARGS[*]:+, flags: ${SAVE_ARGS[*]}}"
	echo "| model | checkpoint MB | sync: lost s | async: lost s | async / sync |"
	echo "|---|---|---|---|---|"
	for model in $SAVE_MODELS; do
		if [[ $model == small ]]; then args=("${SMALL[@]}") iters=8; else
			args=("${BIG[@]}" --global-batch-size 2) iters=12
		fi
		args+=("${SAVE_ARGS[@]}")
		: >"$OUT/save-$model-sync.txt"
		: >"$OUT/save-$model-async.txt"
		for ((r = 1; r <= ROUNDS; r++)); do
			rm -rf "$CK"/*
			train "save-$model-none" "$SAVE_RANKS" 1 "${args[@]}" --train-iters $iters \
				--log-interval 1
			base=$(field "$OUT/save-$model-none.jsonl" elapsed_s)
			for mode in sync async; do
				flag=()
				[[ $mode == async ]] && flag=(--async-save)
				rm -rf "${CK:?}/$mode"
				train "save-$model-$mode" "$SAVE_RANKS" 1 "${args[@]}" --train-iters $iters \
					--log-interval 1 --save "$CK/$mode" --save-interval $((iters / 2)) \
					--keep-last 1 "${flag[@]}"
				el=$(field "$OUT/save-$model-$mode.jsonl" elapsed_s)
				# a background save still in flight at the end is waited for then
				waited=$(grep -o "iter_0*$((iters / 2)).h5 in the background (waited [0-9.]*" \
					"$OUT/save-$model-$mode.log" | grep -o '[0-9.]*$' || echo 0)
				awk -v e="$el" -v b="$base" -v w="${waited:-0}" 'BEGIN { print e - b + w }' \
					>>"$OUT/save-$model-$mode.txt"
			done
			size=$(stat -c %s "$CK/sync/iter_$(printf %07d $iters).h5")
		done
		ls=$(median <"$OUT/save-$model-sync.txt")
		la=$(median <"$OUT/save-$model-async.txt")
		echo "| $model | $((size / 1000000)) | $ls | $la | $(awk -v a="$la" -v s="$ls" 'BEGIN { printf "%.3f", a / s }') |"
	done | tee "$OUT/save.md"
fi
