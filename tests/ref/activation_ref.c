/*
 * The tanh form of activation.h, differentiated by hand:
 *   gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) u',  t = tanh(u),
 * but with 0.5 (1 + t) and 0.5 (1 - t^2) evaluated through the exact identities
 *   0.5 (1 + tanh u) = 1 / (1 + exp(-2u)),   0.5 (1 - tanh^2 u) = 2 s (1 - s):
 * even in double, 1 + tanh(u) rounds to 0 below x ~ -8, where gelu is still ~1e-21
 * and the float kernel gets it right. ref_gelu_tanh() is the literal formula, for
 * the test to tie the two together where it is well conditioned.
 */
#include "tests/ref/activation_ref.h"

#include <math.h>

#define REF_GELU_K 0.79788456080286535588 /* sqrt(2 / pi) */
#define REF_GELU_C 0.044715

double ref_gelu_tanh(double x)
{
	return 0.5 * x * (1.0 + tanh(REF_GELU_K * (x + REF_GELU_C * x * x * x)));
}

double ref_gelu(double x)
{
	double u = REF_GELU_K * (x + REF_GELU_C * x * x * x);

	return x / (1.0 + exp(-2.0 * u));
}

double ref_gelu_grad(double x)
{
	double u = REF_GELU_K * (x + REF_GELU_C * x * x * x);
	double du = REF_GELU_K * (1.0 + 3.0 * REF_GELU_C * x * x);
	double half_one_plus_t = 1.0 / (1.0 + exp(-2.0 * u));
	double one_minus_s = 1.0 / (1.0 + exp(2.0 * u));

	return half_one_plus_t + x * 2.0 * half_one_plus_t * one_minus_s * du;
}

static double ref_sigmoid(double z)
{
	return 1.0 / (1.0 + exp(-z));
}

double ref_swish(double z)
{
	return z * ref_sigmoid(z);
}

double ref_swish_grad(double z)
{
	double s = ref_sigmoid(z);

	return s + z * s * (1.0 - s);
}

void ref_gelu_forward(double *dst, const double *src, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		dst[i] = ref_gelu(src[i]);
}

void ref_gelu_backward(double *dsrc, const double *ddst, const double *src, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		dsrc[i] = ddst[i] * ref_gelu_grad(src[i]);
}

void ref_swish_gate_forward(double *dst, const double *gate, const double *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		dst[i] = ref_swish(gate[i]) * y[i];
}

void ref_swish_gate_backward(double *dgate, double *dy, const double *ddst,
			     const double *gate, const double *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		dgate[i] = ddst[i] * y[i] * ref_swish_grad(gate[i]);
		dy[i] = ddst[i] * ref_swish(gate[i]);
	}
}

void ref_bias_add(double *x, const double *bias, int64_t rows, int64_t width)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < width; j++)
			x[r * width + j] += bias[j];
}

void ref_bias_backward(double *dbias, const double *ddst, int64_t rows, int64_t width)
{
	for (int64_t j = 0; j < width; j++) {
		dbias[j] = 0.0;
		for (int64_t r = 0; r < rows; r++)
			dbias[j] += ddst[r * width + j];
	}
}
