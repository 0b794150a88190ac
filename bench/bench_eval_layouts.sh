#!/usr/bin/env bash
# retnet-eval against training, layout by layout, on one model (CONFIG, default the
# main job's, jobs/configs/kjv-small.cfg) on 2 cores. For each layout: training
# tokens/s (retnet-train with the config's batch, the mean of the last ITERS/2 of
# ITERS steps) and evaluation tokens/s (retnet-eval in windows with its default
# micro-batch, on the test part of the KJV split the main job uses, with a
# checkpoint of the same model; the text is given twice and the second pass counts,
# so that neither figure includes a warm-up). ROUNDS alternating rounds; prints each run and then
# the medians and the ratio evaluation / training per layout.
# Layouts (LAYOUTS): 1x2 (1 rank x 2 threads), dp2, tp2, pp2, cp2 (2 ranks x 1
# thread each).
# Usage: [ROUNDS=5] [ITERS=8] [LAYOUTS="1x2 dp2 tp2 pp2 cp2"] [CONFIG=...]
#        [EVAL_ARGS="..."] bench/bench_eval_layouts.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-8}
LAYOUTS=${LAYOUTS:-1x2 dp2 tp2 pp2 cp2}
CONFIG=${CONFIG:-jobs/configs/kjv-small.cfg}
read -r -a EVAL_ARGS <<<"${EVAL_ARGS:-}"
cd "$(dirname "$0")/.."
(( ITERS >= 4 && ITERS % 2 == 0 )) || { echo "bench_eval_layouts: ITERS must be even and >= 4" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

declare -A RANKS=([1x2]=1 [dp2]=2 [tp2]=2 [pp2]=2 [cp2]=2)
declare -A THREADS=([1x2]=2 [dp2]=1 [tp2]=1 [pp2]=1 [cp2]=1)
declare -A FLAGS=([1x2]="" [dp2]="" [tp2]="--tensor-model-parallel-size 2"
	[pp2]="--pipeline-model-parallel-size 2" [cp2]="--context-parallel-size 2")
for l in $LAYOUTS; do [[ -n ${RANKS[$l]:-} ]] || { echo "bench_eval_layouts: unknown layout '$l'" >&2; exit 2; }; done

read -r -a tokenizer <<<"$(scripts/tokenizer-args.sh "$CONFIG")"
bible -f Gen1:1-Rev22:21 >"$T/kjv.txt"
"$BUILD/data/retnet-prep" --force "${tokenizer[@]}" --split train:90,test:5,valid:5 \
	--output-prefix "$T/kjv" "$T/kjv.txt" >/dev/null
"$BUILD/retnet-train" --config "$CONFIG" --data-path "$T/kjv-train.bin" --train-iters 2 \
	--save "$T/ck" >"$T/ck.log" 2>&1 || { cat "$T/ck.log"; exit 1; }

train() { # train LAYOUT TAG -> tokens/s
	local l=$1 log=$T/train-$2
	# shellcheck disable=SC2086
	mpirun -n "${RANKS[$l]}" --bind-to none -x OMP_NUM_THREADS="${THREADS[$l]}" \
		"$BUILD/retnet-train" --config "$CONFIG" --data-path "$T/kjv-train.bin" \
		--train-iters "$ITERS" --log-interval "$((ITERS / 2))" --eval-interval 0 \
		--metrics "$log.jsonl" ${FLAGS[$l]} >"$log.log" 2>&1 || { cat "$log.log" >&2; exit 1; }
	tail -n 1 "$log.jsonl" | grep -o '"tokens_per_sec":[0-9.e+]*' | cut -d: -f2
}

evaluate() { # evaluate LAYOUT TAG -> tokens/s
	local l=$1 log=$T/eval-$2
	# shellcheck disable=SC2086
	mpirun -n "${RANKS[$l]}" --bind-to none -x OMP_NUM_THREADS="${THREADS[$l]}" \
		"$BUILD/retnet-eval" --load "$T/ck" --data "$T/kjv-test.bin" "$T/kjv-test.bin" --mode windows \
		${FLAGS[$l]} "${EVAL_ARGS[@]}" >"$log.log" 2>&1 || { cat "$log.log" >&2; exit 1; }
	# the second pass over the text: after the warm-up, as training's figure is
	awk '$1 ~ /kjv-test.bin$/ { tps = $7 } END { print tps }' "$log.log"
}

echo "| layout | round | training tokens/s | evaluation tokens/s | ratio |"
echo "|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
	for l in $LAYOUTS; do
		tr=$(train "$l" "$l-$r")
		ev=$(evaluate "$l" "$l-$r")
		echo "$l $tr $ev" >>"$T/rows"
		awk -v l="$l" -v r="$r" -v t="$tr" -v e="$ev" \
			'BEGIN { printf "| %s | %d | %.0f | %.0f | %.2f |\n", l, r, t, e, e / t }'
	done
done
grep -ho "[0-9]* windows per forward" "$T"/eval-*-1.log | sort -u | sed "s/^/eval: /" || true
echo
echo "Medians over $ROUNDS rounds:"
echo "| layout | training tokens/s | evaluation tokens/s | evaluation / training (median of the rounds' ratios) |"
echo "|---|---|---|---|"
python3 - "$T/rows" $LAYOUTS <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for layout in sys.argv[2:]:
    runs = [(float(r[1]), float(r[2])) for r in rows if r[0] == layout]
    print("| %s | %.0f | %.0f | %.2f |" % (layout, statistics.median(t for t, _ in runs),
          statistics.median(e for _, e in runs), statistics.median(e / t for t, e in runs)))
EOF
