/*
 * The gelu is evaluated through the identity 0.5 (1 + tanh(u)) = sigmoid(2u):
 *
 *   gelu(x)  = x s,                  s = 1 / (1 + e),  e = exp(-2u),
 *   gelu'(x) = s + 2 x s (1 - s) u', 1 - s = e s,      u = sqrt(2/pi) (x + 0.044715 x^3)
 *
 * the same function as the tanh form in the header, but 1 + tanh(u) cancels for
 * negative x while x / (1 + e) keeps its relative accuracy, and 1 - s = e s does not
 * cancel for positive x. Retention's swish gate (norm.c) uses the same sigmoid.
 *
 * exp is our own (exp_clamped.h) rather than libm's expf: a call in the loop
 * keeps it scalar, and these four loops took a sixth of a training step that way.
 */
#include "trainer/kernels/activation.h"

#include <string.h>

#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/colsum.h"
#include "trainer/kernels/exp_clamped.h"
#include "trainer/kernels/simd.h"

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

/* Values per block of the elementwise loops (blocks are shared out to the threads). */
enum { ELEM_BLOCK = 1 << 14 };
/* Rows per thread block in bias_add and bias_gelu_forward. */
enum { BIAS_ROW_BLOCK = 16 };

/* gelu(x) and gelu'(x) by the sigmoid forms above. */
static inline float gelu_value(float x)
{
	float u = GELU_K * (x + GELU_C * x * x * x);

	return x / (1.0f + exp_clamped(-2.0f * u));
}

static inline float gelu_slope(float x)
{
	float u = GELU_K * (x + GELU_C * x * x * x);
	float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
	float e = exp_clamped(-2.0f * u);
	float s = 1.0f / (1.0f + e);

	return s + 2.0f * x * s * (e * s) * du;
}

/* The arrays of one elementwise call by role; a block works on [o, o + n) of each. */
struct elem_arrays {
	float *out, *out2; /* out NULL: out16 alone is written */
	uint16_t *out16;   /* bf16(out), or NULL */
	const float *in, *in2;
};

typedef void (*elem_block_fn)(const struct elem_arrays *a, int64_t o, int64_t n);

/* Runs fn over [0, n) in ELEM_BLOCK blocks shared out to the threads. */
static void for_each_block(elem_block_fn fn, const struct elem_arrays *a, int64_t n)
{
	const int64_t nblk = (n + ELEM_BLOCK - 1) / ELEM_BLOCK;

#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		const int64_t o = b * ELEM_BLOCK;

		fn(a, o, n - o < ELEM_BLOCK ? n - o : ELEM_BLOCK);
	}
}

/* The blocks below: `omp simd` because the header lets outputs alias inputs
 * element for element (each i reads its inputs before writing), which a compiler's
 * overlap check would otherwise send down the scalar path. */

RN_SIMD_CLONES
static void gelu_forward_block(const struct elem_arrays *a, int64_t o, int64_t n)
{
	float *dst = a->out + o;
	const float *src = a->in + o;

#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		dst[i] = gelu_value(src[i]);
}

RN_SIMD_CLONES
static void gelu_backward_block(const struct elem_arrays *a, int64_t o, int64_t n)
{
	float *dsrc = a->out + o;
	const float *ddst = a->in + o, *src = a->in2 + o;

#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		dsrc[i] = ddst[i] * gelu_slope(src[i]);
}

void gelu_forward(float *dst, const float *src, int64_t n)
{
	for_each_block(gelu_forward_block, &(struct elem_arrays){.out = dst, .in = src}, n);
}

void gelu_backward(float *dsrc, const float *ddst, const float *src, int64_t n)
{
	for_each_block(gelu_backward_block,
		       &(struct elem_arrays){.out = dsrc, .in = ddst, .in2 = src}, n);
}

/* A kernel's work on rows [r0, r1) of a (rows, width) matrix. */
typedef void (*rows_fn)(const struct elem_arrays *a, int64_t r0, int64_t r1, int64_t width);

/* Runs fn over [0, rows) in BIAS_ROW_BLOCK blocks shared out to the threads. */
static void for_each_row_block(rows_fn fn, const struct elem_arrays *a, int64_t rows,
			       int64_t width)
{
	const int64_t nblk = (rows + BIAS_ROW_BLOCK - 1) / BIAS_ROW_BLOCK;

	ENSURE(rows >= 0 && width >= 0);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		const int64_t r0 = b * BIAS_ROW_BLOCK;

		fn(a, r0, rows - r0 < BIAS_ROW_BLOCK ? rows : r0 + BIAS_ROW_BLOCK, width);
	}
}

/* out[r, :] += bias (in), then out[r, :] += in2[r, :] if in2 */
RN_SIMD_CLONES
static void bias_add_rows(const struct elem_arrays *a, int64_t r0, int64_t r1, int64_t width)
{
	const float *bias = a->in;

	for (int64_t r = r0; r < r1; r++) {
		float *xr = a->out + r * width;
		const float *res = a->in2 ? a->in2 + r * width : NULL;

		if (res) {
			for (int64_t j = 0; j < width; j++)
				xr[j] = xr[j] + bias[j] + res[j];
		} else {
			for (int64_t j = 0; j < width; j++)
				xr[j] += bias[j];
		}
	}
}

void bias_add(float *x, const float *bias, const float *res, int64_t rows, int64_t width)
{
	for_each_row_block(bias_add_rows, &(struct elem_arrays){.out = x, .in = bias, .in2 = res},
			   rows, width);
}

/* One part of a column sum (trainer/kernels/colsum.h): part[j] = sum over rows
 * [r0, r1) of in[r, j]. */
RN_SIMD_CLONES
static void colsum_part(const void *arg, int64_t r0, int64_t r1, int64_t width, double *part,
			int64_t sum_stride)
{
	const float *x = ((const struct elem_arrays *)arg)->in;

	(void)sum_stride; /* one sum */

	for (int64_t j = 0; j < width; j++)
		part[j] = 0.0;
	for (int64_t r = r0; r < r1; r++) {
		const float *xr = x + r * width;

#pragma omp simd
		for (int64_t j = 0; j < width; j++)
			part[j] += xr[j];
	}
}

void bias_backward(float *dbias, const float *ddst, int64_t rows, int64_t width)
{
	colsum_run(colsum_part, &(struct elem_arrays){.in = ddst}, rows, width, 1, &dbias);
}

/* out2[r, :] += bias (in), then out = gelu(out2) */
RN_SIMD_CLONES
static void bias_gelu_rows(const struct elem_arrays *a, int64_t r0, int64_t r1, int64_t width)
{
	float piece[BF16_COPY_PIECE];

	for (int64_t r = r0; r < r1; r++) {
		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n = piece_len(j0, width, BF16_COPY_PIECE);
			float *xr = a->out2 + r * width + j0;
			float *yr = a->out ? a->out + r * width + j0 : piece;
			const float *bias = a->in + j0;

#pragma omp simd
			for (int64_t j = 0; j < n; j++) {
				float v = xr[j] + bias[j];

				xr[j] = v;
				yr[j] = gelu_value(v);
			}
			if (a->out16)
				bf16_from_f32(a->out16 + r * width + j0, yr, n);
		}
	}
}

void bias_gelu_forward(float *dst, uint16_t *dst16, float *x, const float *bias, int64_t rows,
		       int64_t width)
{
	ENSURE(dst || dst16);
	for_each_row_block(bias_gelu_rows,
			   &(struct elem_arrays){.out = dst, .out2 = x, .out16 = dst16, .in = bias},
			   rows, width);
}

/* One part of gelu_backward_bias: the rows' dsrc, and their column sums into part. */
RN_SIMD_CLONES
static void gelu_backward_part(const void *arg, int64_t r0, int64_t r1, int64_t width,
			       double *part, int64_t sum_stride)
{
	const struct elem_arrays *a = arg;
	float piece[BF16_COPY_PIECE];

	(void)sum_stride; /* one sum */
	for (int64_t j = 0; j < width; j++)
		part[j] = 0.0;
	for (int64_t r = r0; r < r1; r++) {
		for (int64_t j0 = 0; j0 < width; j0 += BF16_COPY_PIECE) {
			const int64_t n = piece_len(j0, width, BF16_COPY_PIECE);
			float *dx = a->out ? a->out + r * width + j0 : piece;
			const float *dy = a->in + r * width + j0, *x = a->in2 + r * width + j0;
			double *pj = part + j0;

#pragma omp simd
			for (int64_t j = 0; j < n; j++) {
				float g = dy[j] * gelu_slope(x[j]);

				dx[j] = g;
				pj[j] += g;
			}
			if (a->out16)
				bf16_from_f32(a->out16 + r * width + j0, dx, n);
		}
	}
}

void gelu_backward_bias(float *dsrc, uint16_t *dsrc16, float *dbias, const float *ddst,
			const float *src, int64_t rows, int64_t width)
{
	ENSURE(dsrc || dsrc16);
	colsum_run(gelu_backward_part,
		   &(struct elem_arrays){.out = dsrc, .out16 = dsrc16, .in = ddst, .in2 = src},
		   rows, width, 1, &dbias);
}

RN_SIMD_CLONES
static void vec_add_block(const struct elem_arrays *a, int64_t o, int64_t n)
{
	float *dst = a->out + o;
	const float *x = a->in + o, *y = a->in2 + o;

#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		dst[i] = x[i] + y[i];
}

void vec_add(float *dst, const float *a, const float *b, int64_t n)
{
	for_each_block(vec_add_block, &(struct elem_arrays){.out = dst, .in = a, .in2 = b}, n);
}
