#!/usr/bin/env bash
# Tensor and data parallelism on this machine: bench-small (d=512, L=6, H=4,
# f=1024, C=128), global batch 4 x 2048 tokens, the whole training step (forward,
# backward, all-reduces, AdamW), in four layouts on the same cores:
#   1 rank x 2 threads | 2 ranks x 1 thread, DP=2 | 2 ranks x 1 thread, TP=2 |
#   1 rank x 1 thread (for reference)
# ROUNDS rounds, each running every layout once (alternating, so a slow spell of the
# machine hits all layouts alike); a run's figures are the mean of its last ITERS/2
# steps (the first ITERS/2 include the warm-up). Prints one row per run, then the
# median over the rounds per layout of: tokens/s, MFU (against the best of the sgemm
# ceilings the run measured), the TP all-reduce time per step and the DP
# gradient wait backward did not hide, as a share of the step: rank 0's, and the
# least and most over the DP ranks (the rank that ends backward last waits least:
# only for reductions not done yet; the others wait for it too).
# BASE=DIR also runs every layout on the build in DIR, alternating with BUILD_DIR
# (an A/B of two builds on the same machine state; BUILD_DIR first in odd rounds,
# BASE first in even ones, so that neither always runs just after the other). FLAGS="..." adds retnet-train
# flags to BUILD_DIR's runs only: BASE=BUILD_DIR FLAGS=--matmul-autotune is an A/B
# of a flag; BASE_FLAGS="..." adds flags to BASE's runs (two builds, both with a flag).
# Usage: [ROUNDS=5] [ITERS=12] [LAYOUTS="1x2 dp2 tp2 1x1"] [BASE=DIR] [FLAGS=...]
#        [BASE_FLAGS=...] bench/bench_parallel.sh [BUILD_DIR]
# (needs the KJV shards; it makes them in BUILD_DIR/bench-corpus if missing)
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-12}
LAYOUTS=${LAYOUTS:-1x2 dp2 tp2 1x1}
read -r -a FLAGS <<<"${FLAGS:-}"
read -r -a BASE_FLAGS <<<"${BASE_FLAGS:-}"
cd "$(dirname "$0")/.."
(( ITERS >= 4 && ITERS % 2 == 0 )) || { echo "bench_parallel: ITERS must be even and >= 4" >&2; exit 2; }
CORPUS=$BUILD/bench-corpus/kjv
[[ -f $CORPUS-train.bin ]] || bash tests/cli/make_corpus.sh "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
BATCH=4 SEQ=2048
MODEL=(--num-layers 6 --hidden-size 512 --num-heads 4 --ffn-hidden-size 1024
	--seq-length "$SEQ" --chunk-size 128 --global-batch-size "$BATCH" --train-iters "$ITERS"
	--log-interval "$((ITERS / 2))" --lr 1e-3 --data-path "$CORPUS-train.bin")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

declare -A RANKS=([1x2]=1 [dp2]=2 [tp2]=2 [1x1]=1) THREADS=([1x2]=2 [dp2]=1 [tp2]=1 [1x1]=1) \
	MICRO=([1x2]=4 [dp2]=2 [tp2]=4 [1x1]=4) TP=([1x2]=1 [dp2]=1 [tp2]=2 [1x1]=1) \
	NAME=([1x2]="1 rank x 2 threads" [dp2]="2 ranks x 1 thread, DP=2"
	      [tp2]="2 ranks x 1 thread, TP=2" [1x1]="1 rank x 1 thread")
for l in $LAYOUTS; do [[ -n ${NAME[$l]:-} ]] || { echo "bench_parallel: unknown layout '$l'" >&2; exit 2; }; done

run() { # run BUILD TAG LAYOUT ROUND: one row "tag layout tps mfu tp_ms wait0 wait_min wait_max step_ms"
	local b=$1 tag=$2 l=$3 log=$T/$2-$3-$4 extra=()
	[[ $tag == this ]] && extra=("${FLAGS[@]}")
	[[ $tag == base ]] && extra=("${BASE_FLAGS[@]}")
	mpirun -n "${RANKS[$l]}" --bind-to none -x OMP_NUM_THREADS="${THREADS[$l]}" "$b/retnet-train" \
		"${MODEL[@]}" --micro-batch-size "${MICRO[$l]}" --tensor-model-parallel-size "${TP[$l]}" \
		"${extra[@]}" --metrics "$log.jsonl" >"$log.log" 2>&1 || { cat "$log.log"; exit 1; }
	tail -n 1 "$log.jsonl" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
step = int(sys.argv[3]) / d["tokens_per_sec"] * 1e3
get = lambda k: d.get(k, float("nan"))
print(sys.argv[1], sys.argv[2], d["tokens_per_sec"], d["mfu"], d["tp_allreduce_ms"],
      d["dp_wait_ms"], get("dp_wait_min_ms"), get("dp_wait_max_ms"), step)' "$tag" "$l" \
		"$((BATCH * SEQ))"
}

echo "| build | layout | round | tokens/s | MFU | TP ms/step | DP wait rank 0 / least / most, % of step |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
	for l in $LAYOUTS; do
		order=("this:$BUILD" ${BASE:+"base:$BASE"})
		((r % 2 == 0 && ${#order[@]} == 2)) && order=("${order[1]}" "${order[0]}")
		for tagged in "${order[@]}"; do
			row=$(run "${tagged#*:}" "${tagged%%:*}" "$l" "$r")
			echo "$row" >>"$T/rows"
			awk -v r="$r" -v name="${NAME[$l]}" '{ printf "| %s | %s | %d | %.0f | %.1f%% | %.0f | %.2f / %.2f / %.2f |\n",
				$1, name, r, $3, 100 * $4, $5, 100 * $6 / $9, 100 * $7 / $9, 100 * $8 / $9 }' <<<"$row"
		done
	done
done
echo
echo "Medians over $ROUNDS rounds:"
echo "| build | layout | tokens/s | MFU | TP ms/step | DP wait rank 0 / least / most, % of step |"
echo "|---|---|---|---|---|---|"
layouts=()
for l in $LAYOUTS; do layouts+=("$l=${NAME[$l]}"); done
python3 - "$T/rows" "${layouts[@]}" <<'EOF'
import statistics, sys
names = dict(arg.split("=", 1) for arg in sys.argv[2:])
rows = [line.split() for line in open(sys.argv[1])]
for tag in dict.fromkeys(r[0] for r in rows):
    for layout in names:
        runs = [[float(x) for x in r[2:]] for r in rows if r[0] == tag and r[1] == layout]
        med = lambda f: statistics.median(f(x) for x in runs)
        print("| %s | %s | %.0f | %.1f%% | %.0f | %.2f / %.2f / %.2f |" % (
            tag, names[layout], med(lambda x: x[0]), 100 * med(lambda x: x[1]),
            med(lambda x: x[2]), 100 * med(lambda x: x[3] / x[6]),
            100 * med(lambda x: x[4] / x[6]), 100 * med(lambda x: x[5] / x[6])))
EOF
