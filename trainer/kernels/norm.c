/*
 * LayerNorm and GroupNorm share one row kernel: a GroupNorm over
 * (rows, groups * group_width) is a LayerNorm without gain or bias over
 * rows * groups rows of group_width lanes, because each head's lanes are contiguous
 * and its (rows, groups) statistics are laid out row after row in the same order.
 *
 * Precision: the forward accumulates the row mean and variance in double, in two
 * passes (mean, then squared deviations), and centres each value in double before
 * rounding, so a row with a large offset against its spread loses nothing to
 * cancellation; the extra cost is invisible beside the matmuls. The backward
 * recomputes xhat in float from the saved float statistics (that is the header's
 * contract) and accumulates its two row means, and the parameter-gradient column
 * sums over rows, in double.
 */
#include "trainer/kernels/norm.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/check.h"

/*
 * Threads split the gain and bias gradients by blocks of columns, each summing its
 * columns over all rows in row order: no atomics, no per-thread partial buffers, and
 * the same bits whatever the thread count. 16 floats are one cache line, so no two
 * threads write the same line.
 */
#define NORM_COL_BLOCK 16

static void norm_rows_forward(float *dst, float *mean, float *rstd, const float *src,
			      const float *gain, const float *bias, int64_t rows,
			      int64_t width)
{
	ENSURE(rows >= 0 && width > 0);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *x = src + r * width;
		float *y = dst + r * width;
		double sum = 0.0, sq = 0.0, m, rs;

#pragma omp simd reduction(+ : sum)
		for (int64_t j = 0; j < width; j++)
			sum += x[j];
		m = sum / (double)width;
#pragma omp simd reduction(+ : sq)
		for (int64_t j = 0; j < width; j++) {
			double d = (double)x[j] - m;

			sq += d * d;
		}
		rs = 1.0 / sqrt(sq / (double)width + (double)NORM_EPS);
		if (gain) {
			for (int64_t j = 0; j < width; j++)
				y[j] = (float)(((double)x[j] - m) * rs) * gain[j] + bias[j];
		} else {
			for (int64_t j = 0; j < width; j++)
				y[j] = (float)(((double)x[j] - m) * rs);
		}
		mean[r] = (float)m;
		rstd[r] = (float)rs;
	}
}

/*
 * dsrc (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = ddst * gain (or ddst
 * without gain): the gradient through the mean and the variance, per row.
 */
static void norm_rows_backward(float *dsrc, const float *ddst, const float *src,
			       const float *gain, const float *mean, const float *rstd,
			       int64_t rows, int64_t width, bool accumulate)
{
	ENSURE(rows >= 0 && width > 0);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *x = src + r * width, *dy = ddst + r * width;
		float *dx = dsrc + r * width;
		const float m = mean[r], rs = rstd[r];
		double sg = 0.0, sgx = 0.0;
		float mg, mgx;

		if (gain) {
#pragma omp simd reduction(+ : sg, sgx)
			for (int64_t j = 0; j < width; j++) {
				float g = dy[j] * gain[j];

				sg += g;
				sgx += (double)g * ((x[j] - m) * rs);
			}
		} else {
#pragma omp simd reduction(+ : sg, sgx)
			for (int64_t j = 0; j < width; j++) {
				sg += dy[j];
				sgx += (double)dy[j] * ((x[j] - m) * rs);
			}
		}
		mg = (float)(sg / (double)width);
		mgx = (float)(sgx / (double)width);
		/* Four loops rather than tests inside one, so each stays vectorisable. */
		if (gain && accumulate) {
			for (int64_t j = 0; j < width; j++)
				dx[j] += (dy[j] * gain[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else if (gain) {
			for (int64_t j = 0; j < width; j++)
				dx[j] = (dy[j] * gain[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else if (accumulate) {
			for (int64_t j = 0; j < width; j++)
				dx[j] += (dy[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else {
			for (int64_t j = 0; j < width; j++)
				dx[j] = (dy[j] - mg - (x[j] - m) * rs * mgx) * rs;
		}
	}
}

/* dgain += sum over rows of ddst * xhat, dbias += sum over rows of ddst. */
static void layernorm_param_grads(float *dgain, float *dbias, const float *ddst,
				  const float *src, const float *mean, const float *rstd,
				  int64_t rows, int64_t width)
{
	const int64_t nblocks = (width + NORM_COL_BLOCK - 1) / NORM_COL_BLOCK;

#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblocks; b++) {
		const int64_t c0 = b * NORM_COL_BLOCK;
		const int64_t n = width - c0 < NORM_COL_BLOCK ? width - c0 : NORM_COL_BLOCK;
		double sg[NORM_COL_BLOCK] = { 0 }, sb[NORM_COL_BLOCK] = { 0 };

		for (int64_t r = 0; r < rows; r++) {
			const float *x = src + r * width + c0, *dy = ddst + r * width + c0;
			const float m = mean[r], rs = rstd[r];

			for (int64_t j = 0; j < n; j++) {
				sg[j] += (double)dy[j] * ((x[j] - m) * rs);
				sb[j] += dy[j];
			}
		}
		for (int64_t j = 0; j < n; j++) {
			dgain[c0 + j] += (float)sg[j];
			dbias[c0 + j] += (float)sb[j];
		}
	}
}

void layernorm_forward(float *dst, float *mean, float *rstd, const float *src,
		       const float *gain, const float *bias, int64_t rows, int64_t width)
{
	ENSURE(gain && bias);
	norm_rows_forward(dst, mean, rstd, src, gain, bias, rows, width);
}

void layernorm_backward(float *dsrc, float *dgain, float *dbias, const float *ddst,
			const float *src, const float *gain, const float *mean,
			const float *rstd, int64_t rows, int64_t width)
{
	ENSURE(gain);
	norm_rows_backward(dsrc, ddst, src, gain, mean, rstd, rows, width, true);
	layernorm_param_grads(dgain, dbias, ddst, src, mean, rstd, rows, width);
}

void groupnorm_forward(float *dst, float *mean, float *rstd, const float *src,
		       int64_t rows, int64_t groups, int64_t group_width)
{
	ENSURE(groups > 0);
	norm_rows_forward(dst, mean, rstd, src, NULL, NULL, rows * groups, group_width);
}

void groupnorm_backward(float *dsrc, const float *ddst, const float *src,
			const float *mean, const float *rstd, int64_t rows, int64_t groups,
			int64_t group_width)
{
	ENSURE(groups > 0);
	norm_rows_backward(dsrc, ddst, src, NULL, mean, rstd, rows * groups, group_width,
			   false);
}
