/*
 * Each row subtracts its maximum before exponentiating, so no exp overflows whatever
 * the logits; exp(z - max) is taken in float (one rounding each, by exp_clamped.h's
 * polynomial) and summed in double, so the log-sum-exp of a wide vocabulary keeps
 * float accuracy. libm's expf keeps a loop scalar, which for a 32768-token
 * vocabulary costs half as much again as the LM head's three products.
 */
#include "trainer/kernels/xent.h"

#include <math.h>

#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/exp_clamped.h"
#include "trainer/kernels/simd.h"

/* Rows per block shared out to the threads (the block's loops are cloned for
 * AVX-512, trainer/kernels/simd.h). */
enum { XENT_ROW_BLOCK = 4 };
/* Exponentials formed at a time into a buffer in L1, then summed: GCC vectorises the
 * two loops apart, not the exponential inside a double reduction. */
enum { XENT_PIECE = 512 };

/* exp(x) for x <= 0, and 0 where it is below the smallest normal float (x < EXP_MIN):
 * a softmax probability that small is 0 to float32 arithmetic, and a denormal
 * gradient would only slow the products that read it. */
static inline float exp_nonpositive(float x)
{
	float e = exp_clamped(x);

	return x < EXP_MIN ? 0.0f : e;
}

static inline float row_max(const float *z, int64_t vocab)
{
	float mx = z[0];

#pragma omp simd reduction(max : mx)
	for (int64_t j = 1; j < vocab; j++)
		mx = z[j] > mx ? z[j] : mx;
	return mx;
}

/* The sum over j of exp(z[j] - mx), in double, and into *rest the same sum without
 * j = t, summed apart rather than subtracted: when p_t rounds to 1 the others are
 * all that is left of it. */
RN_SIMD_CLONES
static double sum_exp(const float *z, int64_t vocab, float mx, int64_t t, double *rest)
{
	float e[XENT_PIECE];
	double sum = 0.0, others = 0.0;

	for (int64_t j0 = 0; j0 < vocab; j0 += XENT_PIECE) {
		const int64_t n = piece_len(j0, vocab, XENT_PIECE);
		const float *zp = z + j0;
		const int64_t tp = t - j0;

#pragma omp simd
		for (int64_t j = 0; j < n; j++)
			e[j] = exp_nonpositive(zp[j] - mx);
#pragma omp simd reduction(+ : sum, others)
		for (int64_t j = 0; j < n; j++) {
			sum += e[j];
			others += j == tp ? 0.0 : e[j];
		}
	}
	*rest = others;
	return sum;
}

struct xent_call {
	float *out;            /* losses (forward) or dlogits (backward, or NULL) */
	uint16_t *out16;       /* backward: bf16(dlogits), or NULL */
	const float *logits;
	const int32_t *targets;
	float dloss;
	int64_t rows, vocab;
};

RN_SIMD_CLONES
static void forward_rows(const struct xent_call *c, int64_t r0, int64_t r1)
{
	const int64_t vocab = c->vocab;

	for (int64_t r = r0; r < r1; r++) {
		const float *z = c->logits + r * vocab;
		const int32_t t = c->targets[r];
		float mx;
		double sum, rest;

		ENSURE(t >= 0 && t < vocab);
		mx = row_max(z, vocab);
		sum = sum_exp(z, vocab, mx, t, &rest);
		/* max - z[t] in double: exact, and the two roundings meet only once. */
		c->out[r] = (float)(((double)mx - (double)z[t]) + log(sum));
	}
}

RN_SIMD_CLONES
static void backward_rows(const struct xent_call *c, int64_t r0, int64_t r1)
{
	const int64_t vocab = c->vocab;

	float piece[XENT_PIECE];

	for (int64_t r = r0; r < r1; r++) {
		const float *z = c->logits + r * vocab;
		const int32_t t = c->targets[r];
		double sum, rest;
		float mx, scale, dt;

		ENSURE(t >= 0 && t < vocab);
		mx = row_max(z, vocab);
		sum = sum_exp(z, vocab, mx, t, &rest);
		scale = (float)((double)c->dloss / sum);
		/*
		 * p_t - 1 = -(sum of the other probabilities): computed from that sum,
		 * it stays accurate when p_t rounds to 1, where p_t - 1 would be 0.
		 */
		dt = (float)(-(double)c->dloss * (rest / sum));
		for (int64_t j0 = 0; j0 < vocab; j0 += XENT_PIECE) {
			const int64_t n = piece_len(j0, vocab, XENT_PIECE);
			const float *zp = z + j0;
			float *dz = c->out ? c->out + r * vocab + j0 : piece;

			/* Elementwise, each z[j] read before dz[j] is written: dz may
			 * alias z (`omp simd`, or the overlap check would take the scalar
			 * path). */
#pragma omp simd
			for (int64_t j = 0; j < n; j++)
				dz[j] = exp_nonpositive(zp[j] - mx) * scale;
			if (t >= j0 && t < j0 + n)
				dz[t - j0] = dt;
			if (c->out16)
				bf16_from_f32(c->out16 + r * vocab + j0, dz, n);
		}
	}
}

typedef void (*xent_rows_fn)(const struct xent_call *c, int64_t r0, int64_t r1);

static void for_each_row_block(xent_rows_fn fn, const struct xent_call *c)
{
	const int64_t nblk = (c->rows + XENT_ROW_BLOCK - 1) / XENT_ROW_BLOCK;

	ENSURE(c->rows >= 0 && c->vocab > 0);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		const int64_t r0 = b * XENT_ROW_BLOCK;

		fn(c, r0, c->rows - r0 < XENT_ROW_BLOCK ? c->rows : r0 + XENT_ROW_BLOCK);
	}
}

void xent_forward(float *losses, const float *logits, const int32_t *targets, int64_t rows,
		  int64_t vocab)
{
	for_each_row_block(forward_rows, &(struct xent_call){.out = losses, .logits = logits,
							      .targets = targets, .rows = rows,
							      .vocab = vocab});
}

void xent_backward(float *dlogits, uint16_t *dlogits16, const float *logits,
		   const int32_t *targets, float dloss, int64_t rows, int64_t vocab)
{
	ENSURE(dlogits || dlogits16);
	for_each_row_block(backward_rows,
			   &(struct xent_call){.out = dlogits, .out16 = dlogits16, .logits = logits,
					       .targets = targets, .dloss = dloss, .rows = rows,
					       .vocab = vocab});
}
