#!/usr/bin/env bash
# Long sequences: one training step (forward + backward + AdamW) of bench-small's layers
# (d=512, L=6, H=4, f=1024, C=128) at batch 1 and T = 2k, 8k, 32k, 64k, with the
# chunkwise form (stored activations and --recompute-activations) and the parallel O(T^2) form
# for contrast as far as MAX_PARALLEL_T. Each row is its own process, so peak RSS is
# that configuration's. Prints a markdown table (tokens/s, MFU against the sgemm
# ceiling measured in the same process, peak RSS, activation buffers, tokens/s
# relative to the first T) and plots tokens/s and peak RSS against T. A row whose
# peak RSS, extrapolated from the same form's previous row (linear in T for
# chunkwise, quadratic for parallel), would not fit in 90% of MemAvailable is skipped
# with a note on stderr rather than run into the OOM killer.
# Usage: bench/bench_longseq.sh [BUILD_DIR] [OUT_DIR]
#   env: THREADS (2), STEPS (2), LENGTHS ("2048 8192 32768 65536"), MAX_PARALLEL_T (2048: the parallel form's step at T=8192 takes minutes)
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-out/bench}
THREADS=${THREADS:-2}
STEPS=${STEPS:-2}
LENGTHS=${LENGTHS:-2048 8192 32768 65536}
MAX_PARALLEL_T=${MAX_PARALLEL_T:-2048}
mkdir -p "$OUT"
json=$OUT/longseq.jsonl
: >"$json"
export OMP_NUM_THREADS=$THREADS

field() { grep -o "\"$2\":[^,}]*" <<<"$1" | cut -d: -f2 | tr -d '"'; }
declare -A last_T last_rss
for T in $LENGTHS; do
	for run in "chunkwise 0" "chunkwise 1" "parallel 0"; do
		read -r form re <<<"$run"
		[[ $form == parallel && $T -gt $MAX_PARALLEL_T ]] && continue
		if [[ -n ${last_T[$run]:-} ]]; then
			avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
			need=$(awk -v r="${last_rss[$run]}" -v t0="${last_T[$run]}" -v t="$T" \
				-v p=$([[ $form == parallel ]] && echo 2 || echo 1) \
				'BEGIN { printf "%.0f", r * (t / t0) ^ p }')
			if ((need > avail * 9 / 10)); then
				echo "bench_longseq: skipping T=$T $form recompute=$re: needs about" \
					"$need MiB (from T=${last_T[$run]}), $avail MiB available" >&2
				continue
			fi
		fi
		recompute=()
		((re)) && recompute=(--recompute-activations)
		line=$("$BUILD/retnet-bench-step" --config bench-small --micro-batch-size 1 \
			--seq-length "$T" --steps "$STEPS" --form "$form" "${recompute[@]}" | grep '^{')
		echo "$line" >>"$json"
		echo "$line" >&2
		last_T[$run]=$T
		last_rss[$run]=$(field "$line" peak_rss_mib)
	done
done

read -r first_T _ <<<"$LENGTHS"
echo "| T | form | recompute | tokens/s | vs T=$first_T | MFU | peak RSS MiB | activations MiB | RSS/token KiB |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A base
while read -r line; do
	T=$(field "$line" seq_len) form=$(field "$line" form) re=$(field "$line" recompute)
	tps=$(field "$line" tokens_per_sec) mfu=$(field "$line" mfu)
	rss=$(field "$line" peak_rss_mib) act=$(field "$line" activation_mib)
	key=$form-$re
	[[ -z ${base[$key]:-} ]] && base[$key]=$tps
	awk -v T="$T" -v f="$form" -v r="$re" -v t="$tps" -v b="${base[$key]}" -v m="$mfu" \
		-v rss="$rss" -v a="$act" 'BEGIN { printf "| %d | %s | %s | %.0f | %.2f | %.1f%% | %.0f | %.0f | %.1f |\n",
		T, f, r, t, t / b, 100 * m, rss, a, rss * 1024 / T }'
done <"$json"

if command -v gnuplot >/dev/null; then
	for key in "chunkwise 0" "chunkwise 1" "parallel 0"; do
		read -r form re <<<"$key"
		grep "\"recompute\":$re,\"form\":\"$form\"" "$json" | while read -r line; do
			echo "$(field "$line" seq_len) $(field "$line" tokens_per_sec) $(field "$line" peak_rss_mib)"
		done >"$OUT/longseq-$form-$re.dat"
	done
	gnuplot <<GP
set terminal png size 1100,480
set output '$OUT/longseq.png'
set multiplot layout 1,2 title 'bench-small layers, batch 1, $THREADS threads: one training step'
set logscale x 2
set xlabel 'sequence length T'
set grid
set key bottom left
set ylabel 'tokens/s'
set yrange [0:*]
plot '$OUT/longseq-chunkwise-0.dat' u 1:2 w lp lw 2 pt 7 t 'chunkwise', \
     '$OUT/longseq-chunkwise-1.dat' u 1:2 w lp lw 2 pt 5 t 'chunkwise, recompute', \
     '$OUT/longseq-parallel-0.dat' u 1:2 w lp lw 2 pt 9 t 'parallel'
set ylabel 'peak RSS (MiB)'
set logscale y 2
set yrange [*:*]
set key top left
plot '$OUT/longseq-chunkwise-0.dat' u 1:3 w lp lw 2 pt 7 t 'chunkwise', \
     '$OUT/longseq-chunkwise-1.dat' u 1:3 w lp lw 2 pt 5 t 'chunkwise, recompute', \
     '$OUT/longseq-parallel-0.dat' u 1:3 w lp lw 2 pt 9 t 'parallel'
unset multiplot
GP
	echo "plot: $OUT/longseq.png" >&2
fi
