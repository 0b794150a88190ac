#!/usr/bin/env bash
# The bf16 targets, measured on this machine:
#
#  1. throughput: retnet-bench-step --bf16 on bench-small (d=512, 6 layers, 4 heads,
#     f=1024, T=2048, C=128, batch 4; forward + backward + AdamW), which times fp32
#     and bf16 steps in turn in one process (a noisy machine slows both alike);
#     ROUNDS such processes; prints each one's tokens/s, MFU and ratio, then the
#     median ratio. Target: bf16 >= 1.85x fp32.
#  2. loss curve (CURVE=1): the default run (scripts/main-job.sh, i.e.
#     jobs/configs/kjv-small.cfg on 2 ranks, its learning-rate schedule unchanged)
#     stopped after ITERS iterations, without and with
#     --bf16, same seed and data order; compares the training loss at every log
#     interval and the held-out losses: max relative difference. Target: < 1% over
#     the first 500 iterations. Takes two runs of ITERS steps (about 3 minutes each
#     on a quiet 2-core machine at ITERS=500).
#     Each logged loss is already the mean of 10 steps; the script also compares
#     means over 50 iterations. REFERENCE=1 adds a third run, fp32 on 1 rank x 2
#     threads (the same global batches, only the summation order differs), and
#     compares it with the 2-rank fp32 run the same way: fp32's own noise floor.
#
# Knobs (environment): BUILD (build), THREADS (2), ROUNDS (2; 0 skips part 1), STEPS
# (3, timed steps per precision and round), CURVE (1; 0 skips part 2), ITERS (500),
# REFERENCE (0; 1 adds the fp32 1-rank run), OUT (out/bench-bf16), STEP_FLAGS (more
# retnet-bench-step flags for part 1, e.g. --matmul-autotune). Needs a built
# tree for part 1; part 2 goes through main-job.sh, which installs and builds what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
CURVE=${CURVE:-1}
ITERS=${ITERS:-500}
REFERENCE=${REFERENCE:-0}
OUT=${OUT:-out/bench-bf16}
read -r -a STEP_FLAGS <<<"${STEP_FLAGS:-}"
mkdir -p "$OUT"

throughput() {
echo "== 1. throughput: bench-small, fp32 and bf16 steps in turn, $ROUNDS round(s), $THREADS threads"
echo "   (load average now: $(cut -d' ' -f1-3 /proc/loadavg); other work on the machine makes"
echo "   the absolute figures noisy, the ratio less so)"
: >"$OUT/throughput.jsonl"
for r in $(seq 1 "$ROUNDS"); do
	OMP_NUM_THREADS=$THREADS "$BUILD/retnet-bench-step" --bf16 --steps "$STEPS" \
		"${STEP_FLAGS[@]}" >"$OUT/round$r.txt"
	grep '^{' "$OUT/round$r.txt" >>"$OUT/throughput.jsonl"
	grep -E '^(fp32|bf16): (step|tokens)|^bf16 / fp32' "$OUT/round$r.txt" | sed "s/^/   round $r: /"
done
awk '{ if (match($0, /"bf16_speedup":[0-9.]+/)) print substr($0, RSTART + 15, RLENGTH - 15) }' \
	"$OUT/throughput.jsonl" | sort -g | awk '{ v[NR] = $1 }
	END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	      printf "   bf16 / fp32 tokens/s (best steps), median of %d round(s): %.3fx (target 1.85x)\n", NR, m }'
awk '{ if (match($0, /"bf16_speedup_pairs":[0-9.]+/)) print substr($0, RSTART + 21, RLENGTH - 21) }' \
	"$OUT/throughput.jsonl" | sort -g | awk '{ v[NR] = $1 }
	END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	      printf "   bf16 / fp32 tokens/s (neighbouring pairs), median of %d round(s): %.3fx\n", NR, m }'
}
[[ $ROUNDS -gt 0 ]] && throughput
[[ $CURVE == 1 ]] || exit 0

echo "== 2. loss curve: the default run for $ITERS iterations, fp32 then bf16"
# The default run's schedule, stopped after ITERS: its learning rate still decays
# over the config's train-iters.
decay_iters=$(awk '$1 == "train-iters" { print $2 }' "${CONFIG:-jobs/configs/kjv-small.cfg}")
runs=(fp32 bf16)
[[ $REFERENCE == 1 ]] && runs+=(fp32-1rank)
for p in "${runs[@]}"; do
	flag=()
	[[ $p == bf16 ]] && flag=(--bf16)
	layout=(RANKS=2 THREADS=1)
	[[ $p == fp32-1rank ]] && layout=(RANKS=1 THREADS=2)
	env "${layout[@]}" OUT="$OUT/curve-$p" scripts/main-job.sh --train-iters "$ITERS" \
		--lr-decay-iters "${decay_iters:-$ITERS}" "${flag[@]}" >"$OUT/curve-$p.log" 2>&1
	grep -E "^retnet-train:|^done in|final held-out" "$OUT/curve-$p.log" | sed "s/^/   $p: /"
done

# shellcheck source=bench/json_lines.sh
source bench/json_lines.sh
for key in loss val_loss; do
	column_of "$OUT/curve-fp32/metrics.jsonl" $key >"$OUT/fp32.$key"
done
# "iteration fp32 other" for the iterations both runs logged.
pair_up() { # RUN KEY
	column_of "$OUT/curve-$1/metrics.jsonl" "$2" >"$OUT/$1.$2"
	awk 'NR == FNR { a[$1] = $2; next } $1 in a { print $1, a[$1], $2 }' \
		"$OUT/fp32.$2" "$OUT/$1.$2" >"$OUT/fp32-vs-$1.$2"
}
max_difference() { # FILE LABEL
	awk -v label="$2" '{ d = ($3 - $2) / $2; if (d < 0) d = -d; if (d > m) { m = d; at = $1 } n++ }
		END { printf "   %-34s: %3d points, max relative difference %.3g%% (iteration %d; target < 1%%)\n",
		      label, n, 100 * m, at }' "$1"
}
# Means over 50 iterations (iterations 1-50, 51-100, ...) of the logged losses.
window_means() {
	awk '{ w = int(($1 - 1) / 50); a[w] += $2; b[w] += $3; n[w]++; if (w > last) last = w }
		END { for (w = 0; w <= last; w++) if (n[w]) print 50 * (w + 1), a[w] / n[w], b[w] / n[w] }' "$1"
}
for other in "${runs[@]:1}"; do
	pair_up "$other" loss
	pair_up "$other" val_loss
	window_means "$OUT/fp32-vs-$other.loss" >"$OUT/fp32-vs-$other.loss50"
	echo "   $other against fp32 (2 ranks):"
	echo "   iteration   fp32 loss   $(printf '%-10s' "$other") rel. diff   (every 50 iterations)"
	awk '$1 % 50 == 0 { d = ($3 - $2) / $2; printf "   %9d   %9.4f   %9.4f   %+9.2e\n", $1, $2, $3, d }' \
		"$OUT/fp32-vs-$other.loss"
	max_difference "$OUT/fp32-vs-$other.loss" "training loss (10-step means)"
	max_difference "$OUT/fp32-vs-$other.loss50" "training loss (50-iteration means)"
	max_difference "$OUT/fp32-vs-$other.val_loss" "held-out estimate (eval-iters)"
done
joined=$(IFS=,; echo "${runs[*]}")
echo "bench_bf16: throughput $OUT/throughput.jsonl; curves $OUT/curve-{$joined}/metrics.jsonl"
