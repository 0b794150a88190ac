#!/usr/bin/env bash
# Plots a retnet-train metrics file (JSON lines) to a PNG: training loss and
# held-out loss (nats/token) against tokens seen. Needs gnuplot (gnuplot-nox).
# Usage: jobs/plot_metrics.sh METRICS.jsonl OUT.png
set -euo pipefail
metrics=${1:?usage: plot_metrics.sh METRICS.jsonl OUT.png}
out=${2:?usage: plot_metrics.sh METRICS.jsonl OUT.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One "tokens value" line per JSON line that has both keys.
extract() {
	awk -v key="$1" '
		{ t = ""; v = ""
		  if (match($0, /"tokens":[^,}]*/)) t = substr($0, RSTART + 9, RLENGTH - 9)
		  if (match($0, "\"" key "\":[^,}]*")) v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
		  if (t != "" && v != "") print t, v }' "$metrics"
}
extract loss >"$tmp/train.dat"
extract val_loss >"$tmp/valid.dat"
if [[ ! -s $tmp/train.dat ]]; then
	echo "plot_metrics: $metrics: no line with both \"tokens\" and \"loss\"" >&2
	exit 2
fi
plots="'$tmp/train.dat' using 1:2 with lines lw 2 title 'training loss'"
[[ -s $tmp/valid.dat ]] &&
	plots+=", '$tmp/valid.dat' using 1:2 with linespoints lw 2 pt 7 title 'held-out loss'"
gnuplot <<GP
set terminal png size 900,540
set output '$out'
set title 'retnet: $(basename "$metrics")'
set xlabel 'tokens'
set ylabel 'loss (nats/token)'
set grid
set key top right
plot $plots
GP
echo "plot_metrics: wrote $out"
