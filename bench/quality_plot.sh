# shellcheck shell=bash
# Sourced by bench_quality.sh and plot_quality_runs.sh: one look for every plot of
# held-out bits per byte against minutes of training.
#
#   quality_plot PNG TITLE PLOTS    # PLOTS: gnuplot plot clauses, comma-separated
quality_plot() {
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
