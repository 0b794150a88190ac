#!/usr/bin/env bash
# Where a training step's time goes: runs retnet-bench-step with the given flags,
# attaches `perf record` once the warm-up is done and stops it when the timed steps
# are (so plan creation, JIT, first touch and the ceilings are left out) and splits the samples of the timed steps into
#   matmul (oneDNN JIT kernels and libdnnl), bf16 conversion, retention (the plain C
#   around its per-chunk matmuls), norms + elementwise, optimizer, memset/memcpy,
#   OpenMP (barrier waits and spinning), kernel, other
# as a share of all samples and of the samples outside OpenMP waits (on a loaded
# machine threads spin waiting for descheduled partners: that share says more about
# the load than about the code).
#
# Usage: bench/profile_step.sh [retnet-bench-step flags]   e.g. --bf16-only --steps 2
# Knobs: BUILD (build), THREADS (2), OUT (perf.data file; default a temporary one).
# Needs perf; oneDNN's JIT kernels are named through ONEDNN_JIT_PROFILE=2 (perf map).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OUT=${OUT:-$tmp/perf.data}
command -v perf >/dev/null || { echo "profile_step: perf is not installed" >&2; exit 1; }

OMP_NUM_THREADS=$THREADS ONEDNN_JIT_PROFILE=2 "$BUILD/retnet-bench-step" "$@" >"$tmp/log" 2>&1 &
pid=$!
until grep -q "warm-up done" "$tmp/log" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || { cat "$tmp/log"; exit 1; }
	sleep 0.2
done
perf record -F 999 -p $pid -o "$OUT" >/dev/null 2>&1 &
perf_pid=$!
# The ceilings are timed again after the steps: stop recording at the mark before
# them (polled: at most about 20 ms of them get in).
until grep -q "timed steps done" "$tmp/log" 2>/dev/null || ! kill -0 $pid 2>/dev/null; do
	sleep 0.02
done
kill -INT $perf_pid 2>/dev/null || true
wait $perf_pid || true
wait $pid
grep -vE '^\{|warm-up|timed steps done' "$tmp/log"

perf report -i "$OUT" --no-children --sort dso,symbol -g none --stdio -t '|' \
	--percent-limit 0 2>/dev/null | awk -F'|' '
	$1 ~ /%/ {
		pct = $1; sub(/%.*/, "", pct); pct += 0; dso = $2; sym = $3
		if (dso ~ /\[JIT\]|dnnl/ || sym ~ /jit_/) c = "matmul (oneDNN)"
		else if (sym ~ /bf16_from_f32|bf16_pack|f32_loop/) c = "bf16 conversion"
		else if (sym ~ /retention|decay_mask|scale_rows|add_scaled_rows|chunk/) c = "retention (plain C part)"
		else if (sym ~ /gelu|swish|norm|rotary|bias_|vec_add|scale|expf|tanh|xent|embedding|fminf/) c = "norms + elementwise"
		else if (sym ~ /adamw|grad_/) c = "optimizer"
		else if (sym ~ /memset|memcpy/) c = "memset/memcpy"
		else if (dso ~ /gomp/) c = "OpenMP waits"
		else if (dso ~ /kernel/) c = "kernel"
		else c = "other"
		share[c] += pct; total += pct
		if (c != "OpenMP waits") work += pct
	}
	END {
		n = split("matmul (oneDNN)|bf16 conversion|retention (plain C part)|norms + elementwise|optimizer|memset/memcpy|kernel|other|OpenMP waits", order, "|")
		printf "%-26s %8s %14s\n", "where", "samples", "outside waits"
		for (i = 1; i <= n; i++) {
			c = order[i]
			printf "%-26s %7.1f%% %13s\n", c, share[c],
			       c == "OpenMP waits" ? "-" : sprintf("%.1f%%", work > 0 ? 100 * share[c] / work : 0)
		}
	}'
