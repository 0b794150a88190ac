#include "trainer/kernels/colsum.h"

#include <omp.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/simd.h"

/* Columns per thread block: one cache line of floats, so no two threads write the
 * same line of dst. */
#define COLSUM_COL_BLOCK 16

int64_t colsum_parts(int64_t rows)
{
	return (rows + COLSUM_PART_ROWS - 1) / COLSUM_PART_ROWS;
}

int64_t colsum_part_end(int64_t p, int64_t rows)
{
	return rows - p * COLSUM_PART_ROWS < COLSUM_PART_ROWS ? rows : (p + 1) * COLSUM_PART_ROWS;
}

/* Columns [c0, c0 + n), n <= COLSUM_COL_BLOCK. */
RN_SIMD_CLONES
static void add_parts_cols(float *dst, const double *parts, int64_t nparts, int64_t width,
			   int64_t c0, int64_t n)
{
	double s[COLSUM_COL_BLOCK] = { 0 };

	for (int64_t p = 0; p < nparts; p++)
		for (int64_t j = 0; j < n; j++)
			s[j] += parts[p * width + c0 + j];
	for (int64_t j = 0; j < n; j++)
		dst[c0 + j] += (float)s[j];
}

void colsum_add_parts(float *dst, const double *parts, int64_t nparts, int64_t width)
{
	const int64_t nblocks = (width + COLSUM_COL_BLOCK - 1) / COLSUM_COL_BLOCK;

#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblocks; b++) {
		const int64_t c0 = b * COLSUM_COL_BLOCK;

		add_parts_cols(dst, parts, nparts, width, c0,
			       width - c0 < COLSUM_COL_BLOCK ? width - c0 : COLSUM_COL_BLOCK);
	}
}

void colsum_run(colsum_part_fn fn, const void *arg, int64_t rows, int64_t width, int nsums,
		float *const dst[])
{
	const int64_t nparts = colsum_parts(rows);
	const int64_t sum_stride = nparts * width;
	double *parts; /* sum s of part p: parts + s * sum_stride + p * width */

	ENSURE(rows >= 0 && width >= 0 && nsums >= 1);
	if (rows == 0 || width == 0)
		return;
	parts = xmalloc(sizeof(double) * (size_t)(nsums * sum_stride));
#pragma omp parallel for schedule(static)
	for (int64_t p = 0; p < nparts; p++)
		fn(arg, p * COLSUM_PART_ROWS, colsum_part_end(p, rows), width, parts + p * width,
		   sum_stride);
	for (int s = 0; s < nsums; s++)
		colsum_add_parts(dst[s], parts + s * sum_stride, nparts, width);
	free(parts);
}

/* Part [0, n) of colsum_sumsq, n <= COLSUM_SUMSQ_PART. Each square is exact in
 * double, so a fused multiply-add rounds as the separate add does: both clones give
 * the same bits. */
RN_SIMD_CLONES
static double sumsq_part(const float *x, int64_t n)
{
	double lane[COLSUM_SUMSQ_LANES] = { 0 };
	double s = 0.0;
	int64_t i = 0;

	for (; i + COLSUM_SUMSQ_LANES <= n; i += COLSUM_SUMSQ_LANES)
		for (int l = 0; l < COLSUM_SUMSQ_LANES; l++)
			lane[l] += (double)x[i + l] * (double)x[i + l];
	for (int l = 0; i < n; i++, l++)
		lane[l] += (double)x[i] * (double)x[i];
	for (int l = 0; l < COLSUM_SUMSQ_LANES; l++)
		s += lane[l];
	return s;
}

double colsum_sumsq(const float *x, int64_t n)
{
	const int64_t nparts = (n + COLSUM_SUMSQ_PART - 1) / COLSUM_SUMSQ_PART;
	double *parts, s = 0.0;

	ENSURE(n >= 0 && !omp_in_parallel());
	if (nparts <= 1)
		return n ? sumsq_part(x, n) : 0.0;
	parts = xmalloc(sizeof(double) * (size_t)nparts);
#pragma omp parallel for schedule(static)
	for (int64_t p = 0; p < nparts; p++) {
		const int64_t i0 = p * COLSUM_SUMSQ_PART;
		const int64_t len = n - i0 < COLSUM_SUMSQ_PART ? n - i0 : COLSUM_SUMSQ_PART;

		parts[p] = sumsq_part(x + i0, len);
	}
	for (int64_t p = 0; p < nparts; p++)
		s += parts[p];
	free(parts);
	return s;
}
