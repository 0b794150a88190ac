# shellcheck shell=bash
# Sourced by bench_quality.sh and plot_quality_runs.sh: how a quality curve file
# (minutes, held-out bits per byte, step, tokens; one line per point) is read,
# summed up and drawn, so that every plot of it looks and reads the same.

# The last point's bits per byte; nothing when FILE is missing or empty.
quality_final() { # FILE
	if [[ -s $1 ]]; then tail -n 1 "$1" | awk '{ print $2 }'; fi
}

# "B bits/byte after M min, S steps, N tokens" of the last point.
quality_last() { # FILE
	tail -n 1 "$1" | awk '{ printf "%.4f bits/byte after %.2f min, %d steps, %d tokens", $2, $1, $3, $4 }'
}

# gnuplot plot clauses: a curve (pt 7 for ours, 5 for PyTorch) and the xz line.
quality_curve_clause() { # FILE TITLE POINT_TYPE
	echo "'$1' using 1:2 with linespoints lw 2 pt $3 title '$2'"
}
quality_xz_clause() { # BITS_PER_BYTE
	echo "$1 with lines dt 2 lw 2 title 'xz -9e (whole corpus) $1'"
}

quality_plot() { # PNG TITLE PLOTS (comma-separated clauses)
	gnuplot <<GP
set terminal png size 900,540
set output '$1'
set title '$2'
set xlabel 'minutes of training'
set ylabel 'held-out bits per byte'
set grid
set key top right
set yrange [1:*]
set xrange [0:*]
plot $3
GP
}
