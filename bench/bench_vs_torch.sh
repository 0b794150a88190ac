#!/usr/bin/env bash
# Our training step against the same model in PyTorch, in the same run.
#
# Runs build/retnet-bench-step --config bench-small (d=512, L=6, H=4, f=1024, C=128,
# batch 4 x 2048, chunkwise, one rank) and bench/torch_retnet.py step (the same
# model in float32 PyTorch: autograd, torch.optim.AdamW) alternately, ours, torch,
# ours, torch (ROUNDS rounds), with the same thread count, so both see the same
# machine. Each run times a warm-up step and then STEPS steps and keeps the best.
# Prints every run, then the best of each and the ratio ours / torch in tokens/s.
#
# MFU: each implementation against its own FP32 matmul ceiling measured in the same
# process (ours: a 2048^3 oneDNN sgemm; torch: a 2048^3 torch.mm on its BLAS), with
# the same FLOPs per token (trainer/model.c model_flops_per_token). Torch's MFU
# against OUR ceiling is printed too: the two ceilings differ a lot.
#
# Builds nothing. Usage: bench/bench_vs_torch.sh [BUILD_DIR]
# Knobs (environment): BUILD_DIR (build), THREADS (nproc), ROUNDS (2), STEPS (3),
#   BENCH_ARGS (extra flags for both, e.g. "--micro-batch-size 1 --seq-length 512" for
#   a quick smoke run; both understand --micro-batch-size and --seq-length), OUT (out/bench-vs-torch:
#   the logs), and TORCH_PY, TORCH_BLAS, TORCH_ENV (bench/torch_env.sh).
# Without PyTorch (/usr/bin/python3 cannot import torch) it says so and reports
# our figure alone, exit status 0.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
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
	"$THREADS threads each, $ROUNDS rounds, best of $STEPS steps after a warm-up${BENCH_ARGS:+, extra flags: $BENCH_ARGS}"
machine_load "at start"
torch_setup
export OMP_NUM_THREADS=$THREADS

row() { # row ROUND IMPL LOG
	local j
	j=$(grep '^{' "$3" | tail -n 1)
	[[ -n $j ]] || { echo "bench_vs_torch: no JSON line in $3:"; cat "$3"; exit 1; }
	printf '%s\n' "$j" >"$3.json"
	local what tps mfu ceil step rss
	tps=$(jget tokens_per_sec "$3.json")
	mfu=$(jget mfu "$3.json")
	ceil=$(jget ceiling_gflops "$3.json")
	step=$(jget step_s "$3.json")
	rss=$(jget peak_rss_mib "$3.json")
	if [[ $2 == torch ]]; then
		what="fwd+bwd+AdamW"
	elif [[ -n $(jget optimizer "$3.json") ]]; then
		what="fwd+bwd+$(jget optimizer "$3.json")"
	else
		what="fwd+bwd (no optimizer)"
	fi
	printf '| %5s | %-5s | %-22s | %8.1f | %5.1f%% | %8.1f | %7.2f | %7.0f |\n' \
		"$1" "$2" "$what" "$tps" "$(awk -v m="$mfu" 'BEGIN { print 100 * m }')" "$ceil" \
		"$step" "$rss"
	if [[ $2 == torch ]]; then
		printf '| %5s | %-5s | %-22s | %8.1f | %5.1f%% | %8s | %7.2f | %7s |\n' \
			"$1" "$2" "  of which fwd+bwd" "$(jget tokens_per_sec_fwd_bwd "$3.json")" \
			"$(awk -v m="$(jget mfu_fwd_bwd "$3.json")" 'BEGIN { print 100 * m }')" "" \
			"$(awk -v f="$(jget fwd_s "$3.json")" -v b="$(jget bwd_s "$3.json")" \
				'BEGIN { print f + b }')" ""
	fi
}

echo
echo "| round | impl  | step                   | tokens/s |  MFU   | ceiling GFLOP/s | step s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
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

# Best of the rounds, each implementation on its own.
best() { # best KEY IMPL: the largest KEY over the rounds, and that round's file
	for f in "$OUT/$2"-*.log.json; do echo "$(jget "$1" "$f") $f"; done | sort -g | tail -n 1
}
read -r ours_tps ours_f < <(best tokens_per_sec ours)
ours_opt=$(jget optimizer "$ours_f")
echo
echo "ours:  $ours_tps tokens/s (best of $ROUNDS), MFU $(awk -v m="$(jget mfu "$ours_f")" \
	'BEGIN { printf "%.1f%%", 100 * m }') against its oneDNN ceiling," \
	"step: forward + backward${ours_opt:+ + $ours_opt}"
if ((!TORCH_OK)); then
	echo "{\"bench\":\"vs_torch\",\"threads\":$THREADS,\"ours_tokens_per_sec\":$ours_tps,\"torch\":null}" |
		tee "$OUT/summary.json"
	exit 0
fi
read -r t_tps t_f < <(best tokens_per_sec torch)
read -r t_fb _ < <(best tokens_per_sec_fwd_bwd torch)
fpt=$(jget flops_per_token "$t_f")
# Our ceiling from the round of torch's best run (the same minute of the machine).
t_round=${t_f##*/torch-}
ours_ceil=$(jget ceiling_gflops "$OUT/ours-${t_round%%.*}.log.json")
pct() { awk -v m="$1" 'BEGIN { printf "%.1f%%", 100 * m }'; }
echo "torch: $t_tps tokens/s fwd+bwd+AdamW (best of $ROUNDS); MFU $(pct "$(jget mfu "$t_f")")" \
	"against its torch.mm ceiling of $(jget ceiling_gflops "$t_f") GFLOP/s," \
	"$(pct "$(awk -v t="$t_tps" -v f="$fpt" -v c="$ours_ceil" 'BEGIN { print t * f / (c * 1e9) }')")" \
	"against our oneDNN ceiling of $ours_ceil GFLOP/s (same round); fwd+bwd alone: $t_fb tokens/s"
if [[ -n $ours_opt ]]; then
	basis="whole step, both with the optimizer"
	ratio=$(awk -v a="$ours_tps" -v b="$t_tps" 'BEGIN { printf "%.2f", a / b }')
else
	basis="forward+backward, both without the optimizer"
	ratio=$(awk -v a="$ours_tps" -v b="$t_fb" 'BEGIN { printf "%.2f", a / b }')
	echo "ratio ours (fwd+bwd) / torch (fwd+bwd+AdamW): $(awk -v a="$ours_tps" -v b="$t_tps" \
		'BEGIN { printf "%.2f", a / b }') (not like for like: flatters ours by torch's AdamW time)"
fi
echo "RATIO ours / torch tokens/s = $ratio  ($basis; $THREADS threads; best of $ROUNDS rounds each)"
echo "{\"bench\":\"vs_torch\",\"threads\":$THREADS,\"rounds\":$ROUNDS,\"ours_tokens_per_sec\":$ours_tps,\"ours_optimizer\":\"${ours_opt:-none}\",\"torch_tokens_per_sec\":$t_tps,\"torch_tokens_per_sec_fwd_bwd\":$t_fb,\"ratio\":$ratio,\"ratio_basis\":\"$basis\",\"torch_blas\":\"${TORCH_BLAS_USED%%,*}\",\"extra_args\":\"$BENCH_ARGS\"}" |
	tee "$OUT/summary.json"
