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
 * sums over rows, in double; the column sums in parts of rows (colsum.h), formed
 * while the part's rows are in cache, so the same bits whatever the thread count.
 */
#include "trainer/kernels/norm.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/colsum.h"
#include "trainer/kernels/simd.h"

/* One call's arrays and sizes; the row kernels below work on rows [r0, r1). */
struct norm_call {
	float *dst, *mean, *rstd;      /* forward outputs, or dst = dsrc in backward */
	uint16_t *dst16;               /* bf16(dst), or NULL */
	const float *src, *ddst, *gain, *bias;
	const float *mean_in, *rstd_in; /* backward: forward's statistics */
	int64_t rows, width;
	bool accumulate;
};

/* Rows per block shared out to the threads: the loops over a block are cloned for
 * AVX-512 (trainer/kernels/simd.h), which OpenMP-outlined bodies are not. */
enum { NORM_ROW_BLOCK = 16 };

typedef void (*norm_rows_fn)(const struct norm_call *c, int64_t r0, int64_t r1);

static void for_each_row_block(norm_rows_fn fn, const struct norm_call *c)
{
	const int64_t nblk = (c->rows + NORM_ROW_BLOCK - 1) / NORM_ROW_BLOCK;

	ENSURE(c->rows >= 0 && c->width > 0);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		const int64_t r0 = b * NORM_ROW_BLOCK;

		fn(c, r0, c->rows - r0 < NORM_ROW_BLOCK ? c->rows : r0 + NORM_ROW_BLOCK);
	}
}

RN_SIMD_CLONES
static void norm_forward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;
	const float *gain = c->gain, *bias = c->bias;

	float piece[BF16_COPY_PIECE];

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width;
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
		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n =
				width - j0 < BF16_COPY_PIECE ? width - j0 : BF16_COPY_PIECE;
			const float *xp = x + j0;
			float *y = c->dst ? c->dst + r * width + j0 : piece;

			if (gain) {
				for (int64_t j = 0; j < n; j++)
					y[j] = (float)(((double)xp[j] - m) * rs) * gain[j0 + j] +
					       bias[j0 + j];
			} else {
				for (int64_t j = 0; j < n; j++)
					y[j] = (float)(((double)xp[j] - m) * rs);
			}
			if (c->dst16)
				bf16_from_f32(c->dst16 + r * width + j0, y, n);
		}
		c->mean[r] = (float)m;
		c->rstd[r] = (float)rs;
	}
}

static void norm_rows_forward(float *dst, uint16_t *dst16, float *mean, float *rstd,
			      const float *src, const float *gain, const float *bias,
			      int64_t rows, int64_t width)
{
	const struct norm_call c = {
		.dst = dst, .dst16 = dst16, .mean = mean, .rstd = rstd, .src = src, .gain = gain,
		.bias = bias, .rows = rows, .width = width,
	};

	for_each_row_block(norm_forward_rows, &c);
}

/*
 * dsrc (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = ddst * gain (or ddst
 * without gain): the gradient through the mean and the variance, per row.
 */
RN_SIMD_CLONES
static void norm_backward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;
	const float *gain = c->gain;

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width, *dy = c->ddst + r * width;
		float *dx = c->dst + r * width;
		const float m = c->mean_in[r], rs = c->rstd_in[r];
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
		if (gain && c->accumulate) {
			for (int64_t j = 0; j < width; j++)
				dx[j] += (dy[j] * gain[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else if (gain) {
			for (int64_t j = 0; j < width; j++)
				dx[j] = (dy[j] * gain[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else if (c->accumulate) {
			for (int64_t j = 0; j < width; j++)
				dx[j] += (dy[j] - mg - (x[j] - m) * rs * mgx) * rs;
		} else {
			for (int64_t j = 0; j < width; j++)
				dx[j] = (dy[j] - mg - (x[j] - m) * rs * mgx) * rs;
		}
		if (c->dst16)
			bf16_from_f32(c->dst16 + r * width, dx, width);
	}
}

static void norm_rows_backward(float *dsrc, const float *ddst, const float *src,
			       const float *gain, const float *mean, const float *rstd,
			       int64_t rows, int64_t width, bool accumulate)
{
	const struct norm_call c = {
		.dst = dsrc, .src = src, .ddst = ddst, .gain = gain, .mean_in = mean,
		.rstd_in = rstd, .rows = rows, .width = width, .accumulate = accumulate,
	};

	for_each_row_block(norm_backward_rows, &c);
}

/* Rows [r0, r1) of layernorm_backward: their dsrc, and their parts of the gain
 * gradient's column sums (sum 0) and the bias gradient's (sum 1; colsum.h). */
RN_SIMD_CLONES
static void layernorm_backward_part(const void *arg, int64_t r0, int64_t r1, int64_t width,
				    double *part, int64_t sum_stride)
{
	const struct norm_call *c = arg;
	double *pg = part, *pb = part + sum_stride;

	norm_backward_rows(c, r0, r1);
	for (int64_t j = 0; j < width; j++)
		pg[j] = pb[j] = 0.0;
	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width, *dy = c->ddst + r * width;
		const float m = c->mean_in[r], rs = c->rstd_in[r];

#pragma omp simd
		for (int64_t j = 0; j < width; j++) {
			pg[j] += (double)dy[j] * ((x[j] - m) * rs);
			pb[j] += dy[j];
		}
	}
}

void layernorm_forward(float *dst, uint16_t *dst16, float *mean, float *rstd,
		       const float *src, const float *gain, const float *bias, int64_t rows,
		       int64_t width)
{
	ENSURE(gain && bias && (dst || dst16));
	norm_rows_forward(dst, dst16, mean, rstd, src, gain, bias, rows, width);
}

void layernorm_backward(float *dsrc, uint16_t *dsrc16, float *dgain, float *dbias,
			const float *ddst, const float *src, const float *gain,
			const float *mean, const float *rstd, int64_t rows, int64_t width)
{
	const struct norm_call c = {
		.dst = dsrc, .dst16 = dsrc16, .src = src, .ddst = ddst, .gain = gain, .mean_in = mean,
		.rstd_in = rstd, .rows = rows, .width = width, .accumulate = true,
	};

	ENSURE(gain && rows >= 0 && width > 0);
	colsum_run(layernorm_backward_part, &c, rows, width, 2, (float *[]){ dgain, dbias });
}

void groupnorm_forward(float *dst, float *mean, float *rstd, const float *src,
		       int64_t rows, int64_t groups, int64_t group_width)
{
	ENSURE(groups > 0);
	norm_rows_forward(dst, NULL, mean, rstd, src, NULL, NULL, rows * groups, group_width);
}

void groupnorm_backward(float *dsrc, const float *ddst, const float *src,
			const float *mean, const float *rstd, int64_t rows, int64_t groups,
			int64_t group_width)
{
	ENSURE(groups > 0);
	norm_rows_backward(dsrc, ddst, src, NULL, mean, rstd, rows * groups, group_width,
			   false);
}
