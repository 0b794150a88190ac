#!/usr/bin/env bash
# Context parallelism on this machine, with retnet-train (bench-small's width: d=512,
# H=4, f=1024, C=128, V=256; batch 1; 2 steps after a warm-up step; ranks x 1 thread,
# oversubscribed when CP exceeds the cores, which distorts time but not bytes or
# memory):
#  1. weak scaling at fixed tokens per rank: T = PIECE x CP for CP = 1, 2, 4 (6
#     layers): tokens/s, the bytes each rank sent per step on the context axis and
#     the time spent in those all-gathers (the trainer's own accounting), and the peak
#     RSS of the largest rank. The bytes must not depend on T.
#  2. memory per rank against T at CP = 1 and CP = 4 (2 layers,
#     --recompute-activations): peak RSS of the largest rank at growing T, the
#     per-token slope of each, the longest T whose rank fits RANK_GIB at CP = 1 from
#     that slope, and a run at CP = 4 of 4x that T (it must train, each rank within
#     RANK_GIB). The budget is per rank, as on a cluster where each rank has its
#     node's memory: here the CP = 4 run's four ranks share one machine, so the
#     default is a quarter of its 24 GiB less some slack, and the ranks of one
#     machine together can hold no longer a sequence than one rank can.
# Usage: bench/bench_cp.sh [BUILD_DIR]   knobs: PIECE (8192), PARTS ("1 2"),
#   RANK_GIB (the memory one rank may use: 5),
#   SLOPE_T ("16384 32768"), OUT (out/bench-cp)
set -euo pipefail
BUILD=${1:-build}
PIECE=${PIECE:-8192}
PARTS=${PARTS:-1 2}
RANK_GIB=${RANK_GIB:-5}
SLOPE_T=${SLOPE_T:-16384 32768}
OUT=${OUT:-out/bench-cp}
cd "$(dirname "$0")/.."
CORPUS=$BUILD/bench-corpus/kjv
[[ -f $CORPUS-train.bin ]] || bash tests/cli/make_corpus.sh "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
WIDTH=(--hidden-size 512 --num-heads 4 --ffn-hidden-size 1024 --chunk-size 128 --micro-batch-size 1
	--global-batch-size 1 --lr 1e-4 --data-path "$CORPUS-train.bin")

train() { # train NAME CP FLAGS...: log in OUT/NAME.log, metrics in OUT/NAME.jsonl
	local name=$1 cp=$2
	shift 2
	rm -f "$OUT/$name.jsonl"
	mpirun -n "$cp" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$BUILD/retnet-train" \
		--context-parallel-size "$cp" --metrics "$OUT/$name.jsonl" "$@" >"$OUT/$name.log" 2>&1
}
field() { grep -o "\"$2\":[^,}]*" "$1" | tail -n 1 | cut -d: -f2; }
rss() { grep -o '[0-9]* MiB (the largest rank)' "$OUT/$1.log" | cut -d' ' -f1; }

if [[ " $PARTS " == *" 1 "* ]]; then
	echo "## 1. weak scaling: T = $PIECE x CP, 6 layers"
	echo "| CP | T | tokens/s | MFU | CP bytes per rank per step | CP all-gather ms per step | peak RSS MiB, largest rank |"
	echo "|---|---|---|---|---|---|---|"
	for cp in 1 2 4; do
		T=$((PIECE * cp))
		train weak-cp$cp "$cp" "${WIDTH[@]}" --num-layers 6 --seq-length "$T" \
			--train-iters 3 --log-interval 1 || { tail -n 5 "$OUT/weak-cp$cp.log"; exit 1; }
		f=$OUT/weak-cp$cp.jsonl
		echo "| $cp | $T | $(field "$f" tokens_per_sec) | $(field "$f" mfu) |" \
			"$(field "$f" cp_bytes) | $(field "$f" cp_comm_ms) | $(rss weak-cp$cp) |"
	done | tee "$OUT/weak.md"
fi

if [[ " $PARTS " == *" 2 "* ]]; then
	echo "## 2. memory per rank against T, 2 layers, --recompute-activations"
	MEM=(--num-layers 2 --recompute-activations --train-iters 1 --log-interval 1)
	: >"$OUT/slope.txt"
	for cp in 1 4; do
		for T in $SLOPE_T; do
			train mem-cp$cp-t$T "$cp" "${WIDTH[@]}" "${MEM[@]}" --seq-length "$T" ||
				{ tail -n 5 "$OUT/mem-cp$cp-t$T.log"; exit 1; }
			echo "$cp $T $(rss mem-cp$cp-t$T)" | tee -a "$OUT/slope.txt"
		done
	done
	# per rank: RSS = a + b T; the longest T at CP=1 under RANK_GIB
	read -r a1 b1 tmax < <(awk -v mem="$RANK_GIB" '$1 == 1 { n++; t[n] = $2; r[n] = $3 }
		END { b = (r[n] - r[1]) / (t[n] - t[1]); a = r[1] - b * t[1]
		      tm = (mem * 1024 - a) / b; print a, b, int(tm / 128) * 128 }' "$OUT/slope.txt")
	read -r a4 b4 < <(awk '$1 == 4 { n++; t[n] = $2; r[n] = $3 }
		END { b = (r[n] - r[1]) / (t[n] - t[1]); print r[1] - b * t[1], b }' "$OUT/slope.txt")
	echo "CP=1: peak RSS ~ $a1 MiB + $b1 MiB per token; CP=4: $a4 + $b4 per token of T" |
		tee "$OUT/memory.md"
	echo "longest T within $RANK_GIB GiB at CP=1 (from the slope): $tmax" | tee -a "$OUT/memory.md"
	T4=$((tmax * 4 / 512 * 512))
	echo "CP=4 at T = $T4 (4x), predicted $(awk -v a="$a4" -v b="$b4" -v t="$T4" 'BEGIN { printf "%.0f", a + b * t }') MiB per rank:" |
		tee -a "$OUT/memory.md"
	if train mem-cp4-long 4 "${WIDTH[@]}" "${MEM[@]}" --seq-length "$T4"; then
		echo "trained: $(field "$OUT/mem-cp4-long.jsonl" tokens_per_sec) tokens/s, loss" \
			"$(field "$OUT/mem-cp4-long.jsonl" loss), peak RSS $(rss mem-cp4-long) MiB per rank" |
			tee -a "$OUT/memory.md"
	else
		echo "FAILED: $(tail -n 3 "$OUT/mem-cp4-long.log")" | tee -a "$OUT/memory.md"
	fi
fi
