/*
 * LayerNorm and GroupNorm share the row statistics: a GroupNorm over
 * (rows, groups * group_width) is a LayerNorm without gain or bias over
 * rows * groups rows of group_width lanes, because each head's lanes are contiguous
 * and its (rows, groups) statistics are laid out row after row in the same order.
 * GroupNorm's output is read only by the swish gate, so the two run as one pass each
 * way: the normalised values stay in registers, not in a (rows, width) array written
 * in forward and read twice in backward.
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
#include <stddef.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/colsum.h"
#include "trainer/kernels/exp_clamped.h"
#include "trainer/kernels/simd.h"

/* One call's arrays and sizes; the row kernels below work on rows [r0, r1). */
struct norm_call {
	float *dst, *mean, *rstd;      /* forward outputs, or dst = dsrc in backward */
	uint16_t *dst16;               /* bf16 of what the next products read, or NULL */
	uint16_t *dsrc16;              /* gated GroupNorm's backward: bf16(dsrc), or NULL */
	float *dgate;                  /* gated GroupNorm's backward: the gate's gradient */
	double *mean64, *rstd64;       /* gated GroupNorm's statistics, forward */
	const float *src, *ddst, *gain, *bias, *gate;
	const float *mean_in, *rstd_in; /* backward: forward's statistics */
	const double *mean64_in, *rstd64_in;
	int64_t rows, width;
};

/* The widest group whose dsrc row gated GroupNorm's backward forms on the stack
 * when it writes only dsrc's bf16 copy (8 KiB; test_norm's widest case is wider). */
enum { GROUPNORM_ROW_ON_STACK = 2048 };

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

/* Mean and 1 / sqrt(variance + eps) of a row, in double, in two passes. */
static inline void row_moments(const float *x, int64_t width, double *mean, double *rstd)
{
	double sum = 0.0, sq = 0.0, m;

#pragma omp simd reduction(+ : sum)
	for (int64_t j = 0; j < width; j++)
		sum += x[j];
	m = sum / (double)width;
#pragma omp simd reduction(+ : sq)
	for (int64_t j = 0; j < width; j++) {
		double d = (double)x[j] - m;

		sq += d * d;
	}
	*mean = m;
	*rstd = 1.0 / sqrt(sq / (double)width + (double)NORM_EPS);
}

RN_SIMD_CLONES
static void layernorm_forward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;
	const float *gain = c->gain, *bias = c->bias;

	float piece[BF16_COPY_PIECE];

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width;
		double m, rs;

		row_moments(x, width, &m, &rs);
		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n = piece_len(j0, width, BF16_COPY_PIECE);
			const float *xp = x + j0;
			float *y = c->dst ? c->dst + r * width + j0 : piece;

			for (int64_t j = 0; j < n; j++)
				y[j] = (float)(((double)xp[j] - m) * rs) * gain[j0 + j] + bias[j0 + j];
			if (c->dst16)
				bf16_from_f32(c->dst16 + r * width + j0, y, n);
		}
		c->mean[r] = (float)m;
		c->rstd[r] = (float)rs;
	}
}

/*
 * dsrc += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = ddst * gain: the gradient
 * through the mean and the variance, per row.
 */
RN_SIMD_CLONES
static void layernorm_backward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;
	const float *gain = c->gain;

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width, *dy = c->ddst + r * width;
		float *dx = c->dst + r * width;
		const float m = c->mean_in[r], rs = c->rstd_in[r];
		double sg = 0.0, sgx = 0.0;
		float mg, mgx;

#pragma omp simd reduction(+ : sg, sgx)
		for (int64_t j = 0; j < width; j++) {
			float g = dy[j] * gain[j];

			sg += g;
			sgx += (double)g * ((x[j] - m) * rs);
		}
		mg = (float)(sg / (double)width);
		mgx = (float)(sgx / (double)width);
		for (int64_t j = 0; j < width; j++)
			dx[j] += (dy[j] * gain[j] - mg - (x[j] - m) * rs * mgx) * rs;
		if (c->dst16)
			bf16_from_f32(c->dst16 + r * width, dx, width);
	}
}

/* Rows [r0, r1) of layernorm_backward: their dsrc, and their parts of the gain
 * gradient's column sums (sum 0) and the bias gradient's (sum 1; colsum.h). */
RN_SIMD_CLONES
static void layernorm_backward_part(const void *arg, int64_t r0, int64_t r1, int64_t width,
				    double *part, int64_t sum_stride)
{
	const struct norm_call *c = arg;
	double *pg = part, *pb = part + sum_stride;

	layernorm_backward_rows(c, r0, r1);
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

/* A row here is one head of one row of the caller's matrix (group_width lanes), and
 * has one mean and one rstd. The output is the same bits as GroupNorm's written out
 * and read back by the gate: the normalised value is rounded to float either way. */
RN_SIMD_CLONES
static void gated_groupnorm_forward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;

	float piece[BF16_COPY_PIECE];

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width, *gate = c->gate + r * width;
		double m, rs;

		row_moments(x, width, &m, &rs);
		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n = piece_len(j0, width, BF16_COPY_PIECE);
			const float *xp = x + j0, *gp = gate + j0;
			float *y = c->dst ? c->dst + r * width + j0 : piece;

#pragma omp simd
			for (int64_t j = 0; j < n; j++) {
				float g = gp[j], normed = (float)(((double)xp[j] - m) * rs);

				y[j] = g / (1.0f + exp_clamped(-g)) * normed;
			}
			if (c->dst16)
				bf16_from_f32(c->dst16 + r * width + j0, y, n);
		}
		c->mean64[r] = m;
		c->rstd64[r] = rs;
	}
}

/*
 * Per row: the gate's gradient dgate = ddst * n * swish'(gate), and the normalised
 * values' gradient dn = ddst * swish(gate), held in dsrc while its row means are
 * summed; then dsrc = rstd * (dn - mean(dn) - xhat * mean(dn * xhat)), xhat formed
 * in float from the statistics rounded to float, as LayerNorm's backward does.
 */
RN_SIMD_CLONES
static void gated_groupnorm_backward_rows(const struct norm_call *c, int64_t r0, int64_t r1)
{
	const int64_t width = c->width;

	float piece[BF16_COPY_PIECE];
	/* dsrc's row when only its copy is kept: on the stack, or for wider groups one
	 * buffer per block of rows */
	float on_stack[GROUPNORM_ROW_ON_STACK];
	float *row = c->dst || width <= GROUPNORM_ROW_ON_STACK
			     ? on_stack
			     : xmalloc(sizeof(float) * (size_t)width);

	for (int64_t r = r0; r < r1; r++) {
		const float *x = c->src + r * width, *gate = c->gate + r * width;
		const float *dy = c->ddst + r * width;
		float *dx = c->dst ? c->dst + r * width : row;
		const double m64 = c->mean64_in[r], rs64 = c->rstd64_in[r];
		const float m = (float)m64, rs = (float)rs64;
		double sg = 0.0, sgx = 0.0;
		float mg, mgx;

		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n = piece_len(j0, width, BF16_COPY_PIECE);
			float *dg = c->dgate ? c->dgate + r * width + j0 : piece;

#pragma omp simd
			for (int64_t j = j0; j < j0 + n; j++) {
				float g = gate[j], d = dy[j];
				float normed = (float)(((double)x[j] - m64) * rs64);
				float e = exp_clamped(-g);
				float s = 1.0f / (1.0f + e);

				dg[j - j0] = d * normed * (s + g * s * (e * s));
				dx[j] = d * g * s;
			}
			if (c->dst16)
				bf16_from_f32(c->dst16 + r * width + j0, dg, n);
		}
#pragma omp simd reduction(+ : sg, sgx)
		for (int64_t j = 0; j < width; j++) {
			sg += dx[j];
			sgx += (double)dx[j] * ((x[j] - m) * rs);
		}
		mg = (float)(sg / (double)width);
		mgx = (float)(sgx / (double)width);
		for (int64_t j = 0; j < width; j++)
			dx[j] = (dx[j] - mg - (x[j] - m) * rs * mgx) * rs;
		if (c->dsrc16)
			bf16_from_f32(c->dsrc16 + r * width, dx, width);
	}
	if (row != on_stack)
		free(row);
}

void layernorm_forward(float *dst, uint16_t *dst16, float *mean, float *rstd,
		       const float *src, const float *gain, const float *bias, int64_t rows,
		       int64_t width)
{
	const struct norm_call c = {
		.dst = dst, .dst16 = dst16, .mean = mean, .rstd = rstd, .src = src, .gain = gain,
		.bias = bias, .rows = rows, .width = width,
	};

	ENSURE(gain && bias && (dst || dst16));
	for_each_row_block(layernorm_forward_rows, &c);
}

void layernorm_backward(float *dsrc, uint16_t *dsrc16, float *dgain, float *dbias,
			const float *ddst, const float *src, const float *gain,
			const float *mean, const float *rstd, int64_t rows, int64_t width)
{
	const struct norm_call c = {
		.dst = dsrc, .dst16 = dsrc16, .src = src, .ddst = ddst, .gain = gain, .mean_in = mean,
		.rstd_in = rstd, .rows = rows, .width = width,
	};

	ENSURE(gain && rows >= 0 && width > 0);
	colsum_run(layernorm_backward_part, &c, rows, width, 2, (float *[]){ dgain, dbias });
}

void gated_groupnorm_forward(float *dst, uint16_t *dst16, double *mean, double *rstd,
			     const float *src, const float *gate, int64_t rows, int64_t groups,
			     int64_t group_width)
{
	const struct norm_call c = {
		.dst = dst, .dst16 = dst16, .mean64 = mean, .rstd64 = rstd, .src = src,
		.gate = gate, .rows = rows * groups, .width = group_width,
	};

	ENSURE(groups > 0 && (dst || dst16));
	for_each_row_block(gated_groupnorm_forward_rows, &c);
}

void gated_groupnorm_backward(float *dgate, uint16_t *dgate16, float *dsrc, uint16_t *dsrc16,
			      const float *ddst, const float *src, const float *gate,
			      const double *mean, const double *rstd, int64_t rows, int64_t groups,
			      int64_t group_width)
{
	const struct norm_call c = {
		.dst = dsrc, .dst16 = dgate16, .dsrc16 = dsrc16, .dgate = dgate,
		.mean64_in = mean, .rstd64_in = rstd, .src = src, .ddst = ddst, .gate = gate,
		.rows = rows * groups, .width = group_width,
	};

	ENSURE(groups > 0 && (dgate || dgate16) && (dsrc || dsrc16));
	for_each_row_block(gated_groupnorm_backward_rows, &c);
}
