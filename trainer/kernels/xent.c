/*
 * Each row subtracts its maximum before exponentiating, so no exp overflows whatever
 * the logits; exp(z - max) is taken in float (one rounding each) and summed in
 * double, so the log-sum-exp of a wide vocabulary keeps float accuracy.
 */
#include "trainer/kernels/xent.h"

#include <math.h>

#include "common/check.h"

static float row_max(const float *z, int64_t vocab)
{
	float mx = z[0];

#pragma omp simd reduction(max : mx)
	for (int64_t j = 1; j < vocab; j++)
		mx = z[j] > mx ? z[j] : mx;
	return mx;
}

void xent_forward(float *losses, const float *logits, const int32_t *targets, int64_t rows,
		  int64_t vocab)
{
	ENSURE(rows >= 0 && vocab > 0);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *z = logits + r * vocab;
		const int32_t t = targets[r];
		float mx;
		double sum = 0.0;

		ENSURE(t >= 0 && t < vocab);
		mx = row_max(z, vocab);
#pragma omp simd reduction(+ : sum)
		for (int64_t j = 0; j < vocab; j++)
			sum += expf(z[j] - mx);
		/* max - z[t] in double: exact, and the two roundings meet only once. */
		losses[r] = (float)(((double)mx - (double)z[t]) + log(sum));
	}
}

void xent_backward(float *dlogits, const float *logits, const int32_t *targets,
		   float dloss, int64_t rows, int64_t vocab)
{
	ENSURE(rows >= 0 && vocab > 0);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *z = logits + r * vocab;
		float *dz = dlogits + r * vocab;
		const int32_t t = targets[r];
		double sum = 0.0, rest = 0.0;
		float mx, scale;

		ENSURE(t >= 0 && t < vocab);
		mx = row_max(z, vocab);
#pragma omp simd reduction(+ : sum, rest)
		for (int64_t j = 0; j < vocab; j++) {
			double e = expf(z[j] - mx);

			sum += e;
			rest += j == t ? 0.0 : e;
		}
		scale = (float)((double)dloss / sum);
		/* Elementwise, each z[j] read before dz[j] is written: dz may alias z. */
		for (int64_t j = 0; j < vocab; j++)
			dz[j] = expf(z[j] - mx) * scale;
		/*
		 * p_t - 1 = -(sum of the other probabilities): computed from that sum,
		 * it stays accurate when p_t rounds to 1, where p_t - 1 would be 0.
		 */
		dz[t] = (float)(-(double)dloss * (rest / sum));
	}
}
