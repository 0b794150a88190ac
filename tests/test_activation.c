/*
 * The elementwise kernels against the float64 reference (which uses the tanh form of
 * gelu written in activation.h, while the kernel uses the sigmoid form): forward,
 * backward against the reference backward and against central differences of
 * L = sum(dst .* W) through the reference forward, overwrite and accumulate
 * semantics, the aliasing the header allows, bias_backward's independence of the
 * thread count, and the fused kernels (bias + gelu, gelu's backward + the bias
 * gradient, bias + residual) against the separate ones. A kernel that writes a bf16
 * copy of its output writes the same float32 bits as without one, and the copy is
 * the rounding of each (against tests/ref/bf16_ref.c).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/activation_ref.h"
#include "tests/ref/bf16_ref.h"
#include "trainer/kernels/activation.h"

#define SEED 77
#define FD_STEP 1e-6

static void fill(float *f, double *d, int64_t n, uint64_t stream, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)(lo + (hi - lo) * rng_uniform(SEED, stream, (uint64_t)i));
		if (d)
			d[i] = f[i];
	}
}

/* The tails and the middle, where 1 + tanh cancels or the exponent would overflow. */
static const float special[] = { 0.0f,  1e-4f, -1e-4f, 1.0f,   -1.0f,  3.0f,   -3.0f,
				 6.0f,  -6.0f, 10.0f,  -10.0f, 30.0f,  -30.0f, 100.0f,
				 -100.0f };
#define NSPECIAL ((int64_t)(sizeof(special) / sizeof(special[0])))

static void fill_args(float *x, double *xd, int64_t n, uint64_t stream, double range)
{
	fill(x, xd, n, stream, -range, range);
	for (int64_t i = 0; i < n && i < NSPECIAL; i++)
		x[i] = (float)(xd[i] = special[i]);
}

static void check_gelu(int64_t n)
{
	float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
	float *w = xmalloc(sizeof(float) * n), *dx = xmalloc(sizeof(float) * n);
	float *alias = xmalloc(sizeof(float) * n);
	double *xd = xmalloc(sizeof(double) * n), *yd = xmalloc(sizeof(double) * n);
	double *wd = xmalloc(sizeof(double) * n), *dxd = xmalloc(sizeof(double) * n);
	double *fd = xmalloc(sizeof(double) * n);
	char label[128];

	fill_args(x, xd, n, 1, 8.0);
	fill(w, wd, n, 2, -1.0, 1.0);

	gelu_forward(y, x, n);
	ref_gelu_forward(yd, xd, n);
	snprintf(label, sizeof(label), "gelu n=%ld fwd", (long)n);
	EXPECT_CLOSE(y, yd, n, 1e-6, 1e-7, label);

	for (int64_t i = 0; i < n; i++)
		dx[i] = 12345.0f;
	gelu_backward(dx, w, x, n);
	ref_gelu_backward(dxd, wd, xd, n);
	/* x_i moves only term i of L, so its difference quotient is one term's. */
	for (int64_t i = 0; i < n; i++)
		fd[i] = wd[i] * (ref_gelu(xd[i] + FD_STEP) - ref_gelu(xd[i] - FD_STEP)) /
			(2.0 * FD_STEP);
	snprintf(label, sizeof(label), "gelu n=%ld ref dsrc vs fd", (long)n);
	EXPECT_CLOSE(dxd, fd, n, 1e-6, 1e-8, label);
	snprintf(label, sizeof(label), "gelu n=%ld bwd dsrc vs ref (overwrites)", (long)n);
	EXPECT_CLOSE(dx, dxd, n, 1e-6, 1e-7, label);
	snprintf(label, sizeof(label), "gelu n=%ld bwd dsrc vs fd", (long)n);
	EXPECT_CLOSE(dx, fd, n, 1e-6, 1e-7, label);

	/* dsrc may alias ddst */
	memcpy(alias, w, sizeof(float) * n);
	gelu_backward(alias, alias, x, n);
	EXPECT_TRUE(memcmp(alias, dx, sizeof(float) * n) == 0,
		    "gelu_backward in place (dsrc == ddst) differs from out of place, n=%ld",
		    (long)n);

	free(x), free(y), free(w), free(dx), free(alias), free(xd), free(yd), free(wd);
	free(dxd), free(fd);
}

/*
 * The reference's identity against the literal tanh formula where the latter is well
 * conditioned, then the kernel in the negative tail with a relative tolerance only:
 * gelu(-9) ~ 1e-30 is a normal float, and a kernel that formed 1 + tanh(u) in float
 * would return 0 or noise there. The bound 3e-5 is the float rounding of the exponent:
 * u carries a few ulps and exp turns an absolute error in 2u ~ 76 into a relative one
 * (76 * 3 * 2^-24 ~ 1.4e-5), which no float evaluation of the argument avoids.
 */
static void check_gelu_tail(void)
{
	enum { N = 1000 };
	float x[N], y[N], dx[N], one[N];
	double xd[N], yd[N], dxd[N], lit[N], onesd[N];

	fill(x, xd, N, 20, -3.0, 8.0);
	for (int i = 0; i < N; i++) {
		yd[i] = ref_gelu(xd[i]);
		lit[i] = ref_gelu_tanh(xd[i]);
	}
	EXPECT_CLOSE(yd, lit, N, 1e-12, 1e-15, "ref gelu identity vs literal tanh form");

	fill(x, xd, N, 21, -9.5, -3.0);
	for (int i = 0; i < N; i++)
		one[i] = (float)(onesd[i] = 1.0);
	gelu_forward(y, x, N);
	gelu_backward(dx, one, x, N);
	ref_gelu_forward(yd, xd, N);
	ref_gelu_backward(dxd, onesd, xd, N);
	EXPECT_CLOSE(y, yd, N, 3e-5, 0, "gelu fwd tail x in [-9.5, -3], relative only");
	EXPECT_CLOSE(dx, dxd, N, 3e-5, 0, "gelu bwd tail x in [-9.5, -3], relative only");
}

/* bias_add with a residual: the same bits as bias_add then vec_add, and within two
 * roundings of the float64 sum (relative to the sum of the magnitudes, as terms may
 * cancel). x is bias_add's input. */
static void check_bias_residual(const float *x, const float *b, int64_t rows, int64_t width)
{
	const int64_t n = rows * width;
	float *fused = xmalloc(sizeof(float) * n), *apart = xmalloc(sizeof(float) * n);
	float *res = xmalloc(sizeof(float) * n);
	double *want = xmalloc(sizeof(double) * n), *scale = xmalloc(sizeof(double) * n);
	char label[128];

	fill(res, NULL, n, 10, -3.0, 3.0);
	memcpy(fused, x, sizeof(float) * n);
	memcpy(apart, x, sizeof(float) * n);
	bias_add(fused, b, res, rows, width);
	bias_add(apart, b, NULL, rows, width);
	vec_add(apart, apart, res, n);
	EXPECT_TRUE(memcmp(fused, apart, sizeof(float) * n) == 0,
		    "bias_add with a residual differs from bias_add then vec_add (rows=%ld "
		    "width=%ld)",
		    (long)rows, (long)width);
	for (int64_t i = 0; i < n; i++) {
		double xi = x[i], bi = b[i % width], ri = res[i];

		want[i] = xi + bi + ri;
		scale[i] = fabs(xi) + fabs(bi) + fabs(ri);
	}
	snprintf(label, sizeof(label), "bias_add with a residual rows=%ld width=%ld", (long)rows,
		 (long)width);
	EXPECT_CLOSE_SCALED(fused, want, scale, n, 1.2e-7, label);
	free(fused), free(apart), free(res), free(want), free(scale);
}

static void check_bias(int64_t rows, int64_t width)
{
	const int64_t n = rows * width;
	float *x = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * width);
	float *w = xmalloc(sizeof(float) * n), *db = xmalloc(sizeof(float) * width);
	float *pre = xmalloc(sizeof(float) * width), *db1 = xmalloc(sizeof(float) * width);
	double *xd = xmalloc(sizeof(double) * n), *bd = xmalloc(sizeof(double) * width);
	double *wd = xmalloc(sizeof(double) * n), *dbd = xmalloc(sizeof(double) * width);
	double *fd = xmalloc(sizeof(double) * width), *want = xmalloc(sizeof(double) * width);
	double *scratch = xmalloc(sizeof(double) * n);
	int threads = omp_get_max_threads();
	char label[128];

	fill(x, xd, n, 6, -3.0, 3.0);
	fill(b, bd, width, 7, -1.0, 1.0);
	fill(w, wd, n, 8, -1.0, 1.0);

	bias_add(x, b, NULL, rows, width);
	ref_bias_add(xd, bd, rows, width);
	/* one float addition per value: correctly rounded */
	snprintf(label, sizeof(label), "bias_add rows=%ld width=%ld", (long)rows, (long)width);
	EXPECT_CLOSE(x, xd, n, 6e-8, 0, label);
	check_bias_residual(x, b, rows, width);

	/* ACCUMULATES into a pre-filled dbias */
	fill(pre, NULL, width, 9, -2.0, 2.0);
	memcpy(db, pre, sizeof(float) * width);
	bias_backward(db, w, rows, width);
	ref_bias_backward(dbd, wd, rows, width);
	for (int64_t j = 0; j < width; j++) {
		double lp = 0.0, lm = 0.0, keep = bd[j];

		/* L = sum((x + bias) .* W) over the reference bias_add */
		bd[j] = keep + FD_STEP;
		fill(x, scratch, n, 6, -3.0, 3.0);
		ref_bias_add(scratch, bd, rows, width);
		for (int64_t i = 0; i < n; i++)
			lp += scratch[i] * wd[i];
		bd[j] = keep - FD_STEP;
		fill(x, scratch, n, 6, -3.0, 3.0);
		ref_bias_add(scratch, bd, rows, width);
		for (int64_t i = 0; i < n; i++)
			lm += scratch[i] * wd[i];
		bd[j] = keep;
		fd[j] = (lp - lm) / (2.0 * FD_STEP);
		want[j] = pre[j] + dbd[j];
	}
	snprintf(label, sizeof(label), "bias_backward rows=%ld width=%ld ref vs fd", (long)rows,
		 (long)width);
	EXPECT_CLOSE(dbd, fd, width, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "bias_backward rows=%ld width=%ld accumulates", (long)rows,
		 (long)width);
	EXPECT_CLOSE(db, want, width, 1e-6, 1e-6, label);
	memset(db, 0, sizeof(float) * width);
	bias_backward(db, w, rows, width);
	snprintf(label, sizeof(label), "bias_backward rows=%ld width=%ld vs fd", (long)rows,
		 (long)width);
	EXPECT_CLOSE(db, fd, width, 1e-6, 1e-6, label);

	/* same bits on 1 thread and on 3 */
	omp_set_num_threads(1);
	memcpy(db1, pre, sizeof(float) * width);
	bias_backward(db1, w, rows, width);
	omp_set_num_threads(3);
	memcpy(db, pre, sizeof(float) * width);
	bias_backward(db, w, rows, width);
	omp_set_num_threads(threads);
	EXPECT_TRUE(memcmp(db, db1, sizeof(float) * width) == 0,
		    "bias_backward differs between 1 and 3 threads (rows=%ld width=%ld)",
		    (long)rows, (long)width);

	free(x), free(b), free(w), free(db), free(pre), free(db1), free(xd), free(bd);
	free(wd), free(dbd), free(fd), free(want), free(scratch);
}

/*
 * The fused FFN kernels against the separate ones (each held to the float64 reference
 * above): the same bits, bias_gelu_forward's kept pre-activation included, and
 * gelu_backward_bias's bias gradient the same on 1 thread and on 3. The fused
 * kernels write their bf16 copies here, so these are checked with them.
 */
static void check_bias_gelu(int64_t rows, int64_t width)
{
	const int64_t n = rows * width;
	float *x = xmalloc(sizeof(float) * n), *x2 = xmalloc(sizeof(float) * n);
	float *y = xmalloc(sizeof(float) * n), *y2 = xmalloc(sizeof(float) * n);
	float *w = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * width);
	float *db = xmalloc(sizeof(float) * width), *db2 = xmalloc(sizeof(float) * width);
	double *xd = xmalloc(sizeof(double) * n);
	uint16_t *copy = xmalloc(sizeof(uint16_t) * n);
	int threads = omp_get_max_threads();
	int64_t bad;

	fill_args(x, xd, n, 30, 6.0);
	fill(b, NULL, width, 31, -1.0, 1.0);
	fill(w, NULL, n, 32, -1.0, 1.0);
	memcpy(x2, x, sizeof(float) * n);

	bias_add(x, b, NULL, rows, width);
	gelu_forward(y, x, n);
	bias_gelu_forward(y2, copy, x2, b, rows, width);
	EXPECT_TRUE(memcmp(x, x2, sizeof(float) * n) == 0 && memcmp(y, y2, sizeof(float) * n) == 0,
		    "bias_gelu_forward differs from bias_add + gelu_forward (rows=%ld width=%ld)",
		    (long)rows, (long)width);
	bad = ref_bf16_copy_mismatch(copy, y2, n);
	EXPECT_TRUE(bad < 0, "bias_gelu_forward's bf16 copy of dst[%ld] (rows=%ld width=%ld)",
		    (long)bad, (long)rows, (long)width);
	/* the copy written alone: the same copy, the same kept pre-activation */
	for (int64_t i = 0; i < n; i++)
		x2[i] = (float)xd[i];
	memset(copy, 0xff, sizeof(uint16_t) * n);
	bias_gelu_forward(NULL, copy, x2, b, rows, width);
	bad = ref_bf16_copy_mismatch(copy, y2, n);
	EXPECT_TRUE(memcmp(x, x2, sizeof(float) * n) == 0 && bad < 0,
		    "bias_gelu_forward, bf16 copy alone: pre-activation changed or copy wrong "
		    "at %ld (rows=%ld width=%ld)",
		    (long)bad, (long)rows, (long)width);

	fill(db, NULL, width, 33, -2.0, 2.0);
	memcpy(db2, db, sizeof(float) * width);
	gelu_backward(y, w, x, n);
	bias_backward(db, y, rows, width);
	memcpy(y2, w, sizeof(float) * n);
	gelu_backward_bias(y2, copy, db2, y2, x, rows, width); /* dsrc aliasing ddst */
	EXPECT_TRUE(memcmp(y, y2, sizeof(float) * n) == 0 &&
			    memcmp(db, db2, sizeof(float) * width) == 0,
		    "gelu_backward_bias differs from gelu_backward + bias_backward (rows=%ld "
		    "width=%ld)",
		    (long)rows, (long)width);
	bad = ref_bf16_copy_mismatch(copy, y2, n);
	EXPECT_TRUE(bad < 0, "gelu_backward_bias's bf16 copy of dsrc[%ld] (rows=%ld width=%ld)",
		    (long)bad, (long)rows, (long)width);
	/* the copy written alone, the bias gradient as before */
	fill(db, NULL, width, 33, -2.0, 2.0);
	memset(copy, 0xff, sizeof(uint16_t) * n);
	gelu_backward_bias(NULL, copy, db, w, x, rows, width);
	bad = ref_bf16_copy_mismatch(copy, y2, n);
	EXPECT_TRUE(memcmp(db, db2, sizeof(float) * width) == 0 && bad < 0,
		    "gelu_backward_bias, bf16 copy alone: bias gradient changed or copy wrong "
		    "at %ld (rows=%ld width=%ld)",
		    (long)bad, (long)rows, (long)width);

	omp_set_num_threads(1);
	fill(db, NULL, width, 33, -2.0, 2.0);
	gelu_backward_bias(y, NULL, db, w, x, rows, width);
	omp_set_num_threads(3);
	fill(db2, NULL, width, 33, -2.0, 2.0);
	gelu_backward_bias(y2, NULL, db2, w, x, rows, width);
	omp_set_num_threads(threads);
	EXPECT_TRUE(memcmp(db, db2, sizeof(float) * width) == 0 &&
			    memcmp(y, y2, sizeof(float) * n) == 0,
		    "gelu_backward_bias differs between 1 and 3 threads (rows=%ld width=%ld)",
		    (long)rows, (long)width);

	free(x), free(x2), free(y), free(y2), free(w), free(b), free(db), free(db2), free(xd);
	free(copy);
}

static void check_vec_add(int64_t n)
{
	float *a = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * n);
	float *dst = xmalloc(sizeof(float) * n), *a2 = xmalloc(sizeof(float) * n);
	float *b2 = xmalloc(sizeof(float) * n);
	double *ad = xmalloc(sizeof(double) * n), *bd = xmalloc(sizeof(double) * n);
	double *want = xmalloc(sizeof(double) * n);
	char label[96];

	fill(a, ad, n, 10, -5.0, 5.0);
	fill(b, bd, n, 11, -5.0, 5.0);
	for (int64_t i = 0; i < n; i++)
		want[i] = ad[i] + bd[i];
	vec_add(dst, a, b, n);
	snprintf(label, sizeof(label), "vec_add n=%ld", (long)n);
	EXPECT_CLOSE(dst, want, n, 6e-8, 0, label);
	memcpy(a2, a, sizeof(float) * n);
	vec_add(a2, a2, b, n);
	memcpy(b2, b, sizeof(float) * n);
	vec_add(b2, a, b2, n);
	EXPECT_TRUE(memcmp(a2, dst, sizeof(float) * n) == 0 &&
			    memcmp(b2, dst, sizeof(float) * n) == 0,
		    "vec_add with dst aliasing a or b differs, n=%ld", (long)n);

	free(a), free(b), free(dst), free(a2), free(b2), free(ad), free(bd), free(want);
}

int main(void)
{
	/* odd lengths; the FFN hidden sizes of tiny (rows x 128) and bench (x 1024) */
	check_gelu(NSPECIAL);
	check_gelu(1001);
	check_gelu(37 * 128);
	check_gelu(13 * 1024);
	check_gelu_tail();
	check_bias(1, 5);
	check_bias(37, 13);
	check_bias(37, 128);
	check_bias(13, 1024);
	check_bias(130, 64);
	/* more rows than one part of the column sums, and a ragged last part */
	check_bias(300, 24);
	check_bias_gelu(1, 7);
	check_bias_gelu(37, 13);
	check_bias_gelu(200, 1024);
	check_bias_gelu(9, 2500); /* rows of more than one piece */
	check_vec_add(7);
	check_vec_add(37 * 64 + 3);
	check_vec_add(13 * 512);
	return test_finish();
}
