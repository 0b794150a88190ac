/* Max-shifted in double: exp(z - max) <= 1, so rows of +-1e4 stay finite. */
#include "tests/ref/xent_ref.h"

#include <math.h>

static double ref_logsumexp(const double *z, int64_t n)
{
	double mx = z[0], s = 0.0;

	for (int64_t j = 1; j < n; j++)
		if (z[j] > mx)
			mx = z[j];
	for (int64_t j = 0; j < n; j++)
		s += exp(z[j] - mx);
	return mx + log(s);
}

void ref_xent_forward(double *losses, const double *logits, const int32_t *targets,
		      int64_t rows, int64_t vocab)
{
	for (int64_t r = 0; r < rows; r++) {
		const double *z = logits + r * vocab;

		losses[r] = ref_logsumexp(z, vocab) - z[targets[r]];
	}
}

void ref_xent_backward(double *dlogits, const double *logits, const int32_t *targets,
		       double dloss, int64_t rows, int64_t vocab)
{
	for (int64_t r = 0; r < rows; r++) {
		const double *z = logits + r * vocab;
		double lse = ref_logsumexp(z, vocab);

		for (int64_t j = 0; j < vocab; j++)
			dlogits[r * vocab + j] =
				(exp(z[j] - lse) - (j == targets[r] ? 1.0 : 0.0)) * dloss;
	}
}
