#!/usr/bin/env bash
# Our training step against the same model in PyTorch, in the same run.
#
# Runs build/retnet-bench-step --config bench-small (d=512, L=6, H=4, f=1024, C=128,
# batch 4 x 2048, chunkwise, one rank) and bench/torch_retnet.py step (the same
# model in float32 PyTorch: autograd, torch.optim.AdamW) alternately, ours, torch,
# ours, torch (ROUNDS rounds), with the same thread count, so both see the same
# machine. Each run times a warm-up step and then STEPS steps; a run's figure is the
# median of its steps. Prints every run, then each side's median over the rounds and
# the median of the rounds' ratios ours / torch in tokens/s.
#
# MFU: each implementation against its own FP32 matmul ceiling measured in the same
# process (ours: a 2048^3 oneDNN sgemm; torch: a 2048^3 torch.mm on its BLAS), with
# the same FLOPs per token (trainer/model.c model_flops_per_token). Torch's MFU
# against OUR ceiling is printed too: the two ceilings differ a lot.
#
# Builds nothing. Usage: bench/bench_vs_torch.sh [BUILD_DIR]
# Knobs (environment): BUILD_DIR (build), THREADS (nproc), ROUNDS (5), STEPS (3),
#   BENCH_ARGS (extra flags for both, e.g. "--micro-batch-size 1 --seq-length 512" for
#   a quick smoke run; both understand --micro-batch-size and --seq-length), OUT (out/bench-vs-torch:
#   the logs), and TORCH_PY, TORCH_BLAS, TORCH_ENV (bench/torch_env.sh).
# Without PyTorch (/usr/bin/python3 cannot import torch) it says so and reports
# our figure alone, exit status 0.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-3}
BENCH_ARGS=${BENCH_ARGS:-}
OUT=${OUT:-out/bench-vs-torch}
# shellcheck source=bench/torch_env.sh
source bench/torch_env.sh

BIN=$BUILD_DIR/retnet-bench-step
if [[ ! -x $BIN ]]; then
	echo "bench_vs_torch: $BIN is missing: build first" \
		"(cmake -S . -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD_DIR -j)" >&2
	exit 2
fi
mkdir -p "$OUT"
rm -f "$OUT"/ours-* "$OUT"/torch-* "$OUT"/summary.json

echo "== bench_vs_torch: one training step of bench-small, ours vs PyTorch," \
	"$THREADS threads each, $ROUNDS rounds, median of $STEPS steps after a warm-up${BENCH_ARGS:+, extra flags: $BENCH_ARGS}"
machine_load "at start"
torch_setup
export OMP_NUM_THREADS=$THREADS

row() { # row ROUND IMPL LOG: the run's line of the table, from its JSON line
	local j
	j=$(grep '^{' "$3" | tail -n 1)
	[[ -n $j ]] || { echo "bench_vs_torch: no JSON line in $3:"; cat "$3"; exit 1; }
	printf '%s\n' "$j" >"$3.json"
	printf '| %5s | %-5s | %8.1f | %5.1f%% | %8.1f | %7.2f | %7.0f |\n' "$1" "$2" \
		"$(jget tokens_per_sec_median "$3.json")" "$(pct "$(jget mfu_median "$3.json")")" \
		"$(jget ceiling_gflops "$3.json")" "$(jget step_median_s "$3.json")" \
		"$(jget peak_rss_mib "$3.json")"
}
pct() { awk -v m="$1" 'BEGIN { printf "%.1f", 100 * m }'; }
over_rounds() { # over_rounds KEY IMPL: the median of KEY over the rounds' runs of IMPL
	for f in "$OUT/$2"-*.log.json; do jget "$1" "$f"; done | median
}

echo
echo "| round | impl  | tokens/s |  MFU   | ceiling GFLOP/s | step s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for ((r = 1; r <= ROUNDS; r++)); do
	# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
	"$BIN" --config bench-small --steps "$STEPS" $BENCH_ARGS >"$OUT/ours-$r.log" 2>&1 ||
		{ cat "$OUT/ours-$r.log"; exit 1; }
	row "$r" ours "$OUT/ours-$r.log"
	if ((TORCH_OK)); then
		# shellcheck disable=SC2086
		torch_run step --config bench-small --steps "$STEPS" $BENCH_ARGS \
			>"$OUT/torch-$r.log" 2>&1 || { cat "$OUT/torch-$r.log"; exit 1; }
		row "$r" torch "$OUT/torch-$r.log"
	fi
done
machine_load "at end"

ours_tps=$(over_rounds tokens_per_sec_median ours)
echo
echo "ours:  $ours_tps tokens/s, MFU $(pct "$(over_rounds mfu_median ours)")% of its oneDNN" \
	"sgemm ceiling ($(over_rounds ceiling_gflops ours) GFLOP/s); medians of $ROUNDS rounds"
if ((!TORCH_OK)); then
	echo "{\"bench\":\"vs_torch\",\"threads\":$THREADS,\"ours_tokens_per_sec\":$ours_tps,\"torch\":null}" |
		tee "$OUT/summary.json"
	exit 0
fi
t_tps=$(over_rounds tokens_per_sec_median torch)
fpt=$(jget flops_per_token "$OUT/torch-1.log.json")
# Torch against OUR ceiling, round by round (the same minute of the machine).
t_of_ours=$(for ((r = 1; r <= ROUNDS; r++)); do
	awk -v t="$(jget tokens_per_sec_median "$OUT/torch-$r.log.json")" -v f="$fpt" \
		-v c="$(jget ceiling_gflops "$OUT/ours-$r.log.json")" 'BEGIN { print t * f / (c * 1e9) }'
done | median)
ratios=$(for ((r = 1; r <= ROUNDS; r++)); do
	awk -v a="$(jget tokens_per_sec_median "$OUT/ours-$r.log.json")" \
		-v b="$(jget tokens_per_sec_median "$OUT/torch-$r.log.json")" 'BEGIN { printf "%.2f\n", a / b }'
done)
ratio=$(median <<<"$ratios")
echo "torch: $t_tps tokens/s, MFU $(pct "$(over_rounds mfu_median torch)")% of its torch.mm" \
	"ceiling ($(over_rounds ceiling_gflops torch) GFLOP/s), $(pct "$t_of_ours")% of our oneDNN" \
	"ceiling; medians of $ROUNDS rounds"
echo "ratio by round: $(tr '\n' ' ' <<<"$ratios")"
echo "RATIO ours / torch tokens/s = $ratio  (median of the $ROUNDS rounds' ratios; whole" \
	"step, forward + backward + clip + AdamW, both; $THREADS threads)"
echo "{\"bench\":\"vs_torch\",\"threads\":$THREADS,\"rounds\":$ROUNDS,\"ours_tokens_per_sec\":$ours_tps,\"torch_tokens_per_sec\":$t_tps,\"ratio\":$ratio,\"torch_blas\":\"${TORCH_BLAS_USED%%,*}\",\"torch_env\":\"$TORCH_ENV\",\"extra_args\":\"$BENCH_ARGS\"}" |
	tee "$OUT/summary.json"
