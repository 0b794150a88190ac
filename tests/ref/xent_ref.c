/*
 * Max-shifted in double: exp(z - max) <= 1, so rows of +-1e4 stay finite. The sum is
 * compensated (Neumaier) and the max is kept apart from log(sum): with a sum of
 * 1 + 3.5e-9, plain summation of 255 terms of 1.4e-11 onto 1 loses ~1e-5 of the
 * 3.5e-9, and so would max + log(sum) formed first; 1 - p_t is exactly that 3.5e-9.
 */
#include "tests/ref/xent_ref.h"

#include <math.h>

static double ref_row_max(const double *z, int64_t n)
{
	double mx = z[0];

	for (int64_t j = 1; j < n; j++)
		if (z[j] > mx)
			mx = z[j];
	return mx;
}

static double ref_sum_exp(const double *z, int64_t n, double mx)
{
	double s = 0.0, c = 0.0;

	for (int64_t j = 0; j < n; j++) {
		double e = exp(z[j] - mx), t = s + e;

		c += fabs(s) >= fabs(e) ? (s - t) + e : (e - t) + s;
		s = t;
	}
	return s + c;
}

void ref_xent_forward(double *losses, const double *logits, const int32_t *targets,
		      int64_t rows, int64_t vocab)
{
	for (int64_t r = 0; r < rows; r++) {
		const double *z = logits + r * vocab;
		double mx = ref_row_max(z, vocab);

		losses[r] = (mx - z[targets[r]]) + log(ref_sum_exp(z, vocab, mx));
	}
}

void ref_xent_backward(double *dlogits, const double *logits, const int32_t *targets,
		       double dloss, int64_t rows, int64_t vocab)
{
	for (int64_t r = 0; r < rows; r++) {
		const double *z = logits + r * vocab;
		double mx = ref_row_max(z, vocab), s = ref_sum_exp(z, vocab, mx);

		for (int64_t j = 0; j < vocab; j++)
			dlogits[r * vocab + j] =
				(exp(z[j] - mx) / s - (j == targets[r] ? 1.0 : 0.0)) * dloss;
	}
}
