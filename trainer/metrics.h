/*
 * metrics: what training reports: the machine's FP32 (or BF16) matmul ceiling
 * measured in the same run (the MFU denominator), a monotonic clock, peak RSS, and the JSON-lines
 * metrics file. Knows nothing of MPI (the caller sums ceilings over ranks) or of the
 * model's FLOP count (model_flops_per_token).
 */
#ifndef RN_METRICS_H
#define RN_METRICS_H

#include <stdio.h>

struct kernels_ctx;

double metrics_now_s(void);
/* Best FLOP/s of an n x n x n float32 oneDNN matmul over `reps` timed runs, after a
 * warm-up run; uses this thread's OpenMP team. */
double metrics_matmul_ceiling(int n, int reps);
/* The same for a bf16 x bf16 -> float32 matmul on operands converted beforehand (the
 * primitive alone: what the bf16 path's MFU is measured against); 0 on a CPU without
 * bf16 matmuls. */
double metrics_matmul_ceiling_bf16(int n, int reps);
/* Peak resident set of this process, MiB. */
double metrics_peak_rss_mib(void);

/* Opens `path` for appending JSON lines (NULL or "" gives a writer that drops them).
 * A path that cannot be opened is a one-line error and returns NULL. */
FILE *metrics_open(const char *path);
/* Writes one line: {"k1":v1,...} from alternating key, value pairs; value < -1e300
 * is skipped. Flushed at once so a killed run keeps what it logged. */
void metrics_write(FILE *f, int npairs, const char *const *keys, const double *values);

#endif
