/*
 * Embedding gather and scatter-add against the float64 reference: the gather is an
 * exact copy; the scatter-add accumulates into a pre-filled table, adds repeated
 * tokens (also every row on one token), matches central differences of
 * L = sum(E[tokens] .* W) through the reference forward, and gives the same bits on
 * two runs and on 1, 2 and 3 threads.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/embedding_ref.h"
#include "trainer/kernels/embedding.h"

#define SEED 31337
#define FD_STEP 1e-6

static void fill(float *f, double *d, int64_t n, uint64_t stream, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)(lo + (hi - lo) * rng_uniform(SEED, stream, (uint64_t)i));
		if (d)
			d[i] = f[i];
	}
}

/*
 * tokens: `distinct` = 0 draws from the whole vocabulary, otherwise from the first
 * `distinct` ids only, so they repeat; fd: also check central differences.
 */
static void check_case(int64_t vocab, int64_t width, int64_t rows, int64_t distinct, bool fd_check)
{
	const int64_t nt = vocab * width, n = rows * width;
	float *table = xmalloc(sizeof(float) * nt), *dst = xmalloc(sizeof(float) * n);
	float *w = xmalloc(sizeof(float) * n), *dt = xmalloc(sizeof(float) * nt);
	float *pre = xmalloc(sizeof(float) * nt), *dt2 = xmalloc(sizeof(float) * nt);
	double *tabled = xmalloc(sizeof(double) * nt), *dstd = xmalloc(sizeof(double) * n);
	double *wd = xmalloc(sizeof(double) * n), *dtd = xmalloc(sizeof(double) * nt);
	double *grad = xcalloc((size_t)nt, sizeof(double));
	int32_t *tok = xmalloc(sizeof(int32_t) * (rows ? rows : 1));
	int threads = omp_get_max_threads();
	int64_t pool = distinct ? distinct : vocab;
	bool same = true;
	char label[160], tag[128];

	snprintf(tag, sizeof(tag), "embedding vocab=%ld width=%ld rows=%ld distinct=%ld",
		 (long)vocab, (long)width, (long)rows, (long)pool);
	fill(table, tabled, nt, 1, -1.0, 1.0);
	fill(w, wd, n, 2, -1.0, 1.0);
	for (int64_t r = 0; r < rows; r++)
		tok[r] = (int32_t)(rng_uniform(SEED, 3, (uint64_t)r) * pool);

	/* gather: an exact copy */
	embedding_forward(dst, table, tok, rows, width);
	ref_embedding_forward(dstd, tabled, tok, rows, width);
	snprintf(label, sizeof(label), "%s fwd", tag);
	EXPECT_CLOSE(dst, dstd, n, 0, 0, label);

	/* ACCUMULATES into a pre-filled table gradient */
	fill(pre, dtd, nt, 4, -2.0, 2.0);
	memcpy(dt, pre, sizeof(float) * nt);
	embedding_backward(dt, w, tok, rows, width);
	ref_embedding_backward(dtd, wd, tok, rows, width);
	/* float sums of up to rows terms of size 1 on top of 2 */
	snprintf(label, sizeof(label), "%s bwd accumulates vs ref", tag);
	EXPECT_CLOSE(dt, dtd, nt, 1e-6, 1e-7 * (double)(rows + 4), label);

	ref_embedding_backward(grad, wd, tok, rows, width);
	if (fd_check) {
		double *fd = xmalloc(sizeof(double) * nt), *scratch = xmalloc(sizeof(double) * n);

		for (int64_t i = 0; i < nt; i++) {
			double keep = tabled[i], lp = 0.0, lm = 0.0;

			tabled[i] = keep + FD_STEP;
			ref_embedding_forward(scratch, tabled, tok, rows, width);
			for (int64_t k = 0; k < n; k++)
				lp += scratch[k] * wd[k];
			tabled[i] = keep - FD_STEP;
			ref_embedding_forward(scratch, tabled, tok, rows, width);
			for (int64_t k = 0; k < n; k++)
				lm += scratch[k] * wd[k];
			tabled[i] = keep;
			fd[i] = (lp - lm) / (2.0 * FD_STEP);
		}
		snprintf(label, sizeof(label), "%s ref bwd vs fd", tag);
		EXPECT_CLOSE(grad, fd, nt, 1e-6, 1e-7, label);
		memset(dt2, 0, sizeof(float) * nt);
		embedding_backward(dt2, w, tok, rows, width);
		snprintf(label, sizeof(label), "%s bwd vs fd", tag);
		EXPECT_CLOSE(dt2, fd, nt, 1e-6, 1e-7 * (double)(rows + 1), label);
		free(fd), free(scratch);
	}

	/* deterministic: a second run, then 1 and 3 threads, all bitwise equal */
	memcpy(dt2, pre, sizeof(float) * nt);
	embedding_backward(dt2, w, tok, rows, width);
	same = memcmp(dt, dt2, sizeof(float) * nt) == 0;
	EXPECT_TRUE(same, "%s: two runs differ", tag);
	for (int th = 1; th <= 3; th += 2) {
		omp_set_num_threads(th);
		memcpy(dt2, pre, sizeof(float) * nt);
		embedding_backward(dt2, w, tok, rows, width);
		EXPECT_TRUE(memcmp(dt, dt2, sizeof(float) * nt) == 0,
			    "%s: %d threads differ from %d", tag, th, threads);
	}
	omp_set_num_threads(threads);

	free(table), free(dst), free(w), free(dt), free(pre), free(dt2), free(tabled);
	free(dstd), free(wd), free(dtd), free(grad), free(tok);
}

/* Every row on one token: the sum of all rows of ddst, in order. */
static void check_one_token(void)
{
	enum { V = 256, W = 64, R = 1000 };
	float *ddst = xmalloc(sizeof(float) * R * W), *dt = xcalloc(V * W, sizeof(float));
	double *want = xcalloc(V * W, sizeof(double)), *ddstd = xmalloc(sizeof(double) * R * W);
	int32_t *tok = xmalloc(sizeof(int32_t) * R);

	fill(ddst, ddstd, R * W, 5, -1.0, 1.0);
	for (int r = 0; r < R; r++)
		tok[r] = 200;
	embedding_backward(dt, ddst, tok, R, W);
	ref_embedding_backward(want, ddstd, tok, R, W);
	/* 1000 float additions: error ~ sqrt(1000) ulp of ~20, bounded here by 1000 ulp */
	EXPECT_CLOSE(dt, want, V * W, 1e-6, 1000 * 1.2e-7 * 2.0, "embedding all rows on token 200");
	free(ddst), free(dt), free(want), free(ddstd), free(tok);
}

int main(void)
{
	check_case(11, 5, 37, 0, true);          /* odd everything */
	check_case(11, 5, 37, 3, true);          /* heavy repeats */
	check_case(256, 64, 45, 0, true);        /* tiny model */
	check_case(256, 64, 4 * 32, 7, false);   /* tiny model batch, repeats */
	check_case(256, 512, 8 * 257, 0, false); /* bench width */
	check_case(256, 17, 0, 0, false);        /* no rows: nothing happens */
	check_one_token();
	return test_finish();
}
