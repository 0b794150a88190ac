/*
 * colsum: sums that are the same bits whatever the thread count: column sums over
 * the rows of a (rows, width) float matrix (bias and gain gradients), computed in
 * parts by the kernel that produces or reads the rows, and the sum of squares of a
 * vector (gradient norms).
 *
 * The rows are cut into fixed parts of COLSUM_PART_ROWS (not one per thread). A
 * kernel sums each part's rows in row order, in double, into that part's slot of a
 * parts buffer while it has the rows in cache; colsum_add_parts then adds the parts
 * in part order. colsum_run does both for a kernel. Knows nothing of MPI.
 */
#ifndef RN_COLSUM_H
#define RN_COLSUM_H

#include <stdint.h>

enum { COLSUM_PART_ROWS = 64 };

/* The number of parts of `rows` rows, and the end of part p's rows. */
int64_t colsum_parts(int64_t rows);
int64_t colsum_part_end(int64_t p, int64_t rows);

/* ACCUMULATES dst[j] += sum over p of parts[p * width + j], p in order. */
void colsum_add_parts(float *dst, const double *parts, int64_t nparts, int64_t width);

/*
 * A kernel's work on the rows [r0, r1) of one part: whatever it writes per row, and
 * its column sums of those rows, in row order and in double, sum s into
 * part[s * sum_stride + j] (the part's slot of sum s; the kernel sets every value).
 */
typedef void (*colsum_part_fn)(const void *arg, int64_t r0, int64_t r1, int64_t width,
			       double *part, int64_t sum_stride);

/* Runs fn over every part of `rows` rows of `width` columns, shared out to the
 * threads, then ACCUMULATES dst[s][j] += the parts' sum s, for s < nsums. */
void colsum_run(colsum_part_fn fn, const void *arg, int64_t rows, int64_t width, int nsums,
		float *const dst[]);

/*
 * The sum of x[i]^2 over [0, n), in double. The values are cut into fixed parts of
 * COLSUM_SUMSQ_PART, shared out to the threads; a part sums value i on lane
 * i % COLSUM_SUMSQ_LANES (lanes a vector unit adds side by side), then its lanes in
 * lane order, and the parts are added in part order. So the bits depend on neither
 * the thread count nor the ISA. Not inside a parallel region.
 */
enum { COLSUM_SUMSQ_PART = 1 << 15, COLSUM_SUMSQ_LANES = 8 };
double colsum_sumsq(const float *x, int64_t n);

#endif
