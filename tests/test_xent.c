/*
 * Softmax cross-entropy against the float64 reference: losses, gradients against the
 * reference backward and against central differences of L = dloss * sum(losses)
 * through the reference forward; rows of large logits (+-80, +-3000) stay finite and
 * exact; gradient rows sum to ~0; the target's gradient keeps its relative accuracy
 * when p_t rounds to 1; dlogits overwrites and may alias logits.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/bf16_ref.h"
#include "tests/ref/xent_ref.h"
#include "trainer/kernels/xent.h"

#define SEED 9001
#define FD_STEP 1e-6

static void fill(float *f, double *d, int64_t n, uint64_t stream, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)(lo + (hi - lo) * rng_uniform(SEED, stream, (uint64_t)i));
		if (d)
			d[i] = f[i];
	}
}

/* Everything checked on one batch of logits (already in z and zd). */
static void check_rows(const char *tag, float *z, double *zd, const int32_t *t, int64_t rows,
		       int64_t vocab, float dloss, double fwd_atol)
{
	const int64_t n = rows * vocab;
	float *loss = xmalloc(sizeof(float) * rows), *dz = xmalloc(sizeof(float) * n);
	float *alias = xmalloc(sizeof(float) * n);
	double *lossd = xmalloc(sizeof(double) * rows), *dzd = xmalloc(sizeof(double) * n);
	double *fd = xmalloc(sizeof(double) * n), *rowsum = xmalloc(sizeof(double) * rows);
	double *zero = xcalloc((size_t)rows, sizeof(double));
	bool finite = true;
	char label[160];

	xent_forward(loss, z, t, rows, vocab);
	ref_xent_forward(lossd, zd, t, rows, vocab);
	for (int64_t r = 0; r < rows; r++)
		finite = finite && isfinite(loss[r]);
	EXPECT_TRUE(finite, "%s: a loss is not finite", tag);
	snprintf(label, sizeof(label), "%s fwd losses", tag);
	EXPECT_CLOSE(loss, lossd, rows, 1e-6, fwd_atol, label);

	/* OVERWRITES */
	for (int64_t i = 0; i < n; i++)
		dz[i] = 12345.0f;
	xent_backward(dz, NULL, z, t, dloss, rows, vocab);
	ref_xent_backward(dzd, zd, t, dloss, rows, vocab);
	finite = true;
	for (int64_t i = 0; i < n; i++)
		finite = finite && isfinite(dz[i]);
	EXPECT_TRUE(finite, "%s: a gradient is not finite", tag);
	snprintf(label, sizeof(label), "%s bwd vs ref (overwrites)", tag);
	EXPECT_CLOSE(dz, dzd, n, 1e-5, 1e-7 * dloss, label);

	/* rows of softmax - onehot sum to 0 */
	for (int64_t r = 0; r < rows; r++) {
		rowsum[r] = 0.0;
		for (int64_t j = 0; j < vocab; j++)
			rowsum[r] += dz[r * vocab + j];
	}
	snprintf(label, sizeof(label), "%s bwd row sums", tag);
	EXPECT_CLOSE(rowsum, zero, rows, 0, 1e-6 * dloss, label);

	/* L = dloss * sum_r loss_r; a logit only moves its own row's loss */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < vocab; j++) {
			double *x = zd + r * vocab + j, keep = *x, lp, lm;

			*x = keep + FD_STEP;
			ref_xent_forward(&lp, zd + r * vocab, t + r, 1, vocab);
			*x = keep - FD_STEP;
			ref_xent_forward(&lm, zd + r * vocab, t + r, 1, vocab);
			*x = keep;
			fd[r * vocab + j] = dloss * (lp - lm) / (2.0 * FD_STEP);
		}
	/* The quotient's rounding grows with |loss| (6000 in the +-3000 row). */
	snprintf(label, sizeof(label), "%s ref bwd vs fd", tag);
	EXPECT_CLOSE(dzd, fd, n, 1e-6, 1e-6 * dloss, label);
	snprintf(label, sizeof(label), "%s bwd vs fd", tag);
	EXPECT_CLOSE(dz, fd, n, 1e-5, 1e-6 * dloss, label);

	/* dlogits may alias logits */
	memcpy(alias, z, sizeof(float) * n);
	xent_backward(alias, NULL, alias, t, dloss, rows, vocab);
	EXPECT_TRUE(memcmp(alias, dz, sizeof(float) * n) == 0,
		    "%s: xent_backward in place differs from out of place", tag);

	/* With a bf16 copy: the same float32 bits, and the copy is their rounding; the
	 * copy written alone is the same copy. */
	{
		uint16_t *copy = xmalloc(sizeof(uint16_t) * n);
		int64_t bad;

		memcpy(alias, z, sizeof(float) * n);
		xent_backward(alias, copy, alias, t, dloss, rows, vocab);
		bad = ref_bf16_copy_mismatch(copy, dz, n);
		EXPECT_TRUE(memcmp(alias, dz, sizeof(float) * n) == 0 && bad < 0,
			    "%s: xent_backward with a bf16 copy: float32 changed or copy wrong at "
			    "%ld", tag, (long)bad);
		memset(copy, 0xff, sizeof(uint16_t) * n);
		memcpy(alias, z, sizeof(float) * n);
		xent_backward(NULL, copy, alias, t, dloss, rows, vocab);
		bad = ref_bf16_copy_mismatch(copy, dz, n);
		EXPECT_TRUE(memcmp(alias, z, sizeof(float) * n) == 0 && bad < 0,
			    "%s: xent_backward's copy alone: logits changed or copy wrong at %ld",
			    tag, (long)bad);
		free(copy);
	}

	free(loss), free(dz), free(alias), free(lossd), free(dzd), free(fd), free(rowsum);
	free(zero);
}

static void check_random(int64_t rows, int64_t vocab, double scale)
{
	const int64_t n = rows * vocab;
	float *z = xmalloc(sizeof(float) * n);
	double *zd = xmalloc(sizeof(double) * n);
	int32_t *t = xmalloc(sizeof(int32_t) * rows);
	char tag[96];

	fill(z, zd, n, 1, -scale, scale);
	for (int64_t r = 0; r < rows; r++)
		t[r] = (int32_t)(rng_uniform(SEED, 2, (uint64_t)r) * vocab);
	snprintf(tag, sizeof(tag), "xent rows=%ld vocab=%ld scale=%g", (long)rows, (long)vocab,
		 scale);
	check_rows(tag, z, zd, t, rows, vocab, 1.0f / (float)rows, 1e-6);
	free(z), free(zd), free(t);
}

/* Rows whose naive exp overflows float (exp(89) does) or whose p_t rounds to 1. */
static void check_large(void)
{
	enum { ROWS = 9, V = 256 };
	static float z[ROWS * V];
	static double zd[ROWS * V];
	int32_t t[ROWS] = { 3, 4, 5, 7, 7, 8, 9, 10, 11 };
	float dz[ROWS * V], got_t[ROWS];
	double dzd[ROWS * V], want_t[ROWS];

	/*
	 * 0: the target alone on top; 1: the target at the bottom, random above it;
	 * 2: all equal (loss log V); 3: half on top, the target among them; 4: +-3000;
	 * 5: two near the top; 6: all at the bottom; 7: all but the target on top;
	 * 8: 1 - p_t = 254 e^-25 + e^-95 ~ 3.5e-9; e^-95, j = 0's probability, is a
	 * denormal float.
	 */
	for (int j = 0; j < V; j++) {
		double u = rng_uniform(SEED, 3, (uint64_t)j);

		z[0 * V + j] = j == t[0] ? 80.0f : -80.0f;
		z[1 * V + j] = j == t[1] ? -80.0f : (float)(160.0 * u - 80.0);
		z[1 * V + 0] = 80.0f;
		z[2 * V + j] = 80.0f;
		z[3 * V + j] = (j & 1) ? 80.0f : -80.0f;
		z[4 * V + j] = (float)(6000.0 * u - 3000.0);
		z[5 * V + j] = j == t[5] ? 80.0f : (j == 0 ? 79.0f : -80.0f);
		z[6 * V + j] = -80.0f;
		z[7 * V + j] = j == t[7] ? -80.0f : 80.0f;
		z[8 * V + j] = j == t[8] ? 25.0f : 0.0f;
	}
	z[8 * V + 0] = -70.0f;
	for (int i = 0; i < ROWS * V; i++)
		zd[i] = z[i];
	check_rows("xent large logits", z, zd, t, ROWS, V, 0.5f, 1e-6);

	/*
	 * The target's gradient, relative only: p_t - 1 formed in float is 0 in row 8
	 * (p_t = 1 - 3.5e-9 rounds to 1); from the sum of the other probabilities it is
	 * good to float precision.
	 */
	xent_backward(dz, NULL, z, t, 0.5f, ROWS, V);
	ref_xent_backward(dzd, zd, t, 0.5, ROWS, V);
	for (int r = 0; r < ROWS; r++) {
		got_t[r] = dz[r * V + t[r]];
		want_t[r] = dzd[r * V + t[r]];
	}
	EXPECT_CLOSE(got_t, want_t, ROWS, 1e-6, 1e-30, "xent target gradient, relative");
	EXPECT_TRUE(got_t[8] < 0.0f, "row 8 target gradient is %g, want ~ -1.76e-9",
		    (double)got_t[8]);
	/* A probability below the smallest normal float is 0: a denormal gradient would
	 * only slow the products that read it. */
	for (int i = 0; i < ROWS * V; i++)
		if (dz[i] != 0.0f && fabsf(dz[i]) < FLT_MIN) {
			EXPECT_TRUE(false, "xent gradient %d is a denormal, %g", i, (double)dz[i]);
			break;
		}
}

int main(void)
{
	check_random(37, 256, 4.0);
	check_random(13, 256, 20.0);
	check_random(5, 11, 3.0);
	check_random(9, 1, 1.0);
	check_random(7, 1300, 6.0); /* rows of several pieces, the target in any */
	check_random(2, 32768, 10.0);
	check_large();
	return test_finish();
}
