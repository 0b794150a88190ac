/*
 * The gelu is evaluated through the identity 0.5 (1 + tanh(u)) = sigmoid(2u):
 *
 *   gelu(x)  = x s,                  s = 1 / (1 + e),  e = exp(-2u),
 *   gelu'(x) = s + 2 x s (1 - s) u', 1 - s = e s,      u = sqrt(2/pi) (x + 0.044715 x^3)
 *
 * the same function as the tanh form in the header, but 1 + tanh(u) cancels for
 * negative x while x / (1 + e) keeps its relative accuracy, and 1 - s = e s does not
 * cancel for positive x. The swish gate uses the same sigmoid.
 *
 * The exponent is clamped at 80 (exp(80) ~ 5.5e34, far from float overflow): past it
 * s is below 2e-35 either way, and an infinite e would turn e s into inf * 0 = NaN.
 */
#include "trainer/kernels/activation.h"

#include <math.h>

#include "common/check.h"

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f
#define EXP_CLAMP 80.0f

/* Columns per thread block in bias_backward: one cache line of floats. */
#define BIAS_COL_BLOCK 16

void gelu_forward(float *dst, const float *src, int64_t n)
{
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		float x = src[i];
		float u = GELU_K * (x + GELU_C * x * x * x);
		float e = expf(fminf(-2.0f * u, EXP_CLAMP));

		dst[i] = x / (1.0f + e);
	}
}

void gelu_backward(float *dsrc, const float *ddst, const float *src, int64_t n)
{
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		float x = src[i];
		float u = GELU_K * (x + GELU_C * x * x * x);
		float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
		float e = expf(fminf(-2.0f * u, EXP_CLAMP));
		float s = 1.0f / (1.0f + e);

		dsrc[i] = ddst[i] * (s + 2.0f * x * s * (e * s) * du);
	}
}

void swish_gate_forward(float *dst, const float *gate, const float *y, int64_t n)
{
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i];
		float e = expf(fminf(-g, EXP_CLAMP));

		dst[i] = g / (1.0f + e) * y[i];
	}
}

void swish_gate_backward(float *dgate, float *dy, const float *ddst, const float *gate,
			 const float *y, int64_t n)
{
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		/* Read everything first: callers may pass dgate or dy over an input. */
		float g = gate[i], yi = y[i], d = ddst[i];
		float e = expf(fminf(-g, EXP_CLAMP));
		float s = 1.0f / (1.0f + e);

		dgate[i] = d * yi * (s + g * s * (e * s));
		dy[i] = d * g * s;
	}
}

void bias_add(float *x, const float *bias, int64_t rows, int64_t width)
{
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		float *xr = x + r * width;

		for (int64_t j = 0; j < width; j++)
			xr[j] += bias[j];
	}
}

/*
 * Threads own blocks of columns and sum them over all rows in row order, in double:
 * no atomics, and the same bits whatever the thread count.
 */
void bias_backward(float *dbias, const float *ddst, int64_t rows, int64_t width)
{
	const int64_t nblocks = (width + BIAS_COL_BLOCK - 1) / BIAS_COL_BLOCK;

	ENSURE(rows >= 0 && width >= 0);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblocks; b++) {
		const int64_t c0 = b * BIAS_COL_BLOCK;
		const int64_t n = width - c0 < BIAS_COL_BLOCK ? width - c0 : BIAS_COL_BLOCK;
		double s[BIAS_COL_BLOCK] = { 0 };

		for (int64_t r = 0; r < rows; r++) {
			const float *dy = ddst + r * width + c0;

			for (int64_t j = 0; j < n; j++)
				s[j] += dy[j];
		}
		for (int64_t j = 0; j < n; j++)
			dbias[c0 + j] += (float)s[j];
	}
}

void vec_add(float *dst, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		dst[i] = a[i] + b[i];
}
