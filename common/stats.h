/*
 * stats: the summaries the benchmarks report. A figure from a noisy machine is the
 * median of repeated measurements (a slow spell moves it less than the mean, and
 * the best flatters).
 */
#ifndef RN_STATS_H
#define RN_STATS_H

/* Median of v[0..n), n >= 1; sorts v in place. */
double stats_median(double *v, int n);

#endif
