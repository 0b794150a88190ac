/*
 * colsum: column sums over the rows of a (rows, width) float matrix (bias and gain
 * gradients) that are the same bits whatever the thread count, computed in parts
 * by the kernel that produces or reads the rows.
 *
 * The rows are cut into fixed parts of COLSUM_PART_ROWS (not one per thread). A
 * kernel sums each part's rows in row order, in double, into that part's slot of a
 * parts buffer while it has the rows in cache; colsum_add_parts then adds the parts
 * in part order. Knows nothing of MPI.
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

#endif
