#!/usr/bin/env bash
# Several bench_quality.sh runs on one plot, and the mean and spread of their final
# held-out bits per byte: one 10-minute run cannot tell a 0.01 gain from seed noise.
#
#   bench/plot_quality_runs.sh PNG DIR...
#
# Each DIR is a bench_quality.sh OUT directory; its curve-ours.dat (minutes, held-out
# bits per byte, step, tokens) is drawn as "ours, DIR", and its curve-torch.dat, if
# present, as "PyTorch, DIR". The xz line is read from the first summary.json, or
# given as XZ_BPB (for directories whose summary.json does not hold it).
# Typical use: the same CONFIG with OURS_ARGS="--seed S" for a few seeds.
set -euo pipefail
# shellcheck source=bench/quality_plot.sh
source "$(dirname "$0")/quality_plot.sh"
if (($# < 2)); then
	echo "usage: $0 PNG DIR..." >&2
	exit 2
fi
png=$1
shift
plots=""
finals=()
xz_bpb=${XZ_BPB:-}
for dir in "$@"; do
	if [[ ! -s $dir/curve-ours.dat && ! -s $dir/curve-torch.dat ]]; then
		echo "plot_quality_runs: $dir has neither curve-ours.dat nor curve-torch.dat" >&2
		exit 2
	fi
	name=$(basename "$dir")
	if [[ -s $dir/curve-ours.dat ]]; then
		plots+="${plots:+, }$(quality_curve_clause "$dir/curve-ours.dat" "ours, $name" 7)"
		finals+=("$(quality_final "$dir/curve-ours.dat")")
		echo "ours, $name: $(quality_last "$dir/curve-ours.dat")"
	fi
	if [[ -s $dir/curve-torch.dat ]]; then
		plots+="${plots:+, }$(quality_curve_clause "$dir/curve-torch.dat" "PyTorch 1.13, $name" 5)"
		echo "PyTorch, $name: $(quality_last "$dir/curve-torch.dat")"
	fi
	if [[ -z $xz_bpb && -s $dir/summary.json ]]; then
		xz_bpb=$(sed -n 's/.*"xz_bits_per_byte":\([0-9.]*\).*/\1/p' "$dir/summary.json")
	fi
done
if ((${#finals[@]})); then
	printf '%s\n' "${finals[@]}" | awk '{ v[NR] = $1; s += $1 } END {
		m = s / NR; for (i = 1; i <= NR; i++) d += (v[i] - m) ^ 2
		sd = NR > 1 ? sqrt(d / (NR - 1)) : 0
		printf "ours, final held-out bits per byte: mean %.4f, sample sd %.4f over %d run(s)\n", m, sd, NR }'
fi
[[ -n $xz_bpb ]] && plots="$(quality_xz_clause "$xz_bpb"), $plots"
quality_plot "$png" "held-out bits per byte vs minutes of training" "$plots"
echo "plot: $png"
