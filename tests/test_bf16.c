/*
 * The bf16 path: the float32 -> bfloat16 conversion against an arithmetic reference
 * (bit for bit, on every sign/exponent/7-bit-mantissa pattern with the rounding
 * boundaries of its dropped half, plus named cases: ties, overflow, denormals,
 * NaN and Inf), the strided packing, and the bf16 matmul plans against a float64
 * reference computed on the bf16-ROUNDED inputs (every transpose, accumulation,
 * padded leading dimensions, batches, calls from OpenMP threads), operands held,
 * kept or written by their producer, and plans that write their output as bf16.
 *
 *   test_bf16                      everything; the matmul part is skipped (and says
 *                                  so) on a CPU without AVX512-BF16
 *   test_bf16 --expect-unsupported kernels_ctx_set_bf16 must refuse with one line
 *                                  (run under ONEDNN_MAX_CPU_ISA=AVX512_CORE)
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/bf16_ref.h"
#include "tests/ref/matmul_ref.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/matmul.h"

static float f32_of_bits(uint32_t u)
{
	float x;

	memcpy(&x, &u, sizeof(x));
	return x;
}

static uint32_t bits_of(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u;
}

/* ---- conversion ------------------------------------------------------------- */

/* Every upper half (sign, exponent, 7 mantissa bits) with the lower halves that sit
 * on and around the rounding boundaries, and a few random ones: the array routine,
 * the one-value routine and bf16_pack against the reference, bit for bit. */
static void check_conversion_sweep(void)
{
	static const uint32_t lows[] = {0x0000, 0x0001, 0x3fff, 0x7ffe, 0x7fff, 0x8000,
					0x8001, 0xbfff, 0xfffe, 0xffff};
	enum { NLOW = sizeof(lows) / sizeof(lows[0]), NRAND = 4, PER = NLOW + NRAND };
	const int64_t n = (int64_t)0x10000 * PER;
	float *src = xmalloc(sizeof(float) * (size_t)n);
	uint16_t *got = xmalloc(sizeof(uint16_t) * (size_t)n);
	uint16_t *packed = xmalloc(sizeof(uint16_t) * (size_t)n);
	int64_t bad = 0, bad_one = 0, bad_pack = 0, nan_lost = 0, nans = 0;

	for (uint32_t hi = 0; hi < 0x10000; hi++)
		for (int j = 0; j < PER; j++) {
			uint32_t lo = j < NLOW ? lows[j]
					       : (uint32_t)(rng_uniform(11, hi, (uint64_t)j) * 65536.0);

			src[hi * PER + j] = f32_of_bits(hi << 16 | (lo & 0xffff));
		}
	bf16_from_f32(got, src, n);
	/* The same values as PER-wide rows of a (0x10000, PER) block: packing, split over
	 * the threads, must give the same bits. */
	bf16_pack(packed, src, 1, 0, 0x10000, PER, PER);
	for (int64_t i = 0; i < n; i++) {
		uint16_t want = ref_bf16_round(src[i]);

		if (got[i] != want && bad++ < 10)
			fprintf(stderr, "  bf16(0x%08x) = 0x%04x, want 0x%04x\n",
				(unsigned)bits_of(src[i]), got[i], want);
		bad_one += bf16_from_f32_one(src[i]) != want;
		bad_pack += packed[i] != want;
		if (isnan(src[i])) {
			nans++;
			/* Independent of the bit rule: a NaN must stay a NaN (0x7f800001's
			 * top half alone would be Inf). */
			nan_lost += !isnan(bf16_to_f32_one(got[i]));
		}
	}
	EXPECT_TRUE(bad == 0, "%ld of %ld conversions differ from the reference", (long)bad,
		    (long)n);
	EXPECT_TRUE(bad_one == 0, "bf16_from_f32_one: %ld differ", (long)bad_one);
	EXPECT_TRUE(bad_pack == 0, "bf16_pack: %ld differ", (long)bad_pack);
	EXPECT_TRUE(nans > 0 && nan_lost == 0, "%ld of %ld NaNs did not stay NaN", (long)nan_lost,
		    (long)nans);
	printf("ok   conversion sweep: %ld values (%ld NaN), all bit-exact\n", (long)n, (long)nans);
	free(src), free(got), free(packed);
}

/* Named cases, with the expected bits written out by hand. */
static void check_conversion_cases(void)
{
	static const struct {
		uint32_t in;
		uint16_t want;
		const char *what;
	} cases[] = {
		{0x3f800000, 0x3f80, "1.0"},
		{0x3f808000, 0x3f80, "1 + 2^-8: a tie, kept half even: down"},
		{0x3f818000, 0x3f82, "1 + 3 2^-8: a tie, kept half odd: up"},
		{0x3f808001, 0x3f81, "just above the tie: up"},
		{0x3f807fff, 0x3f80, "just below the tie: down"},
		{0xbf808001, 0xbf81, "negative: symmetric"},
		{0x00000000, 0x0000, "+0"},
		{0x80000000, 0x8000, "-0"},
		{0x00000001, 0x0000, "smallest denormal: rounds to +0"},
		{0x80000001, 0x8000, "smallest negative denormal: rounds to -0"},
		{0x00008000, 0x0000, "denormal tie, even: down to 0"},
		{0x00018000, 0x0002, "denormal tie, odd: up"},
		{0x00010000, 0x0001, "smallest bf16 denormal: kept, not flushed"},
		{0x007fffff, 0x0080, "largest denormal: rounds up to the smallest normal"},
		{0x7f7f7fff, 0x7f7f, "below the overflow midpoint: the largest bf16"},
		{0x7f7f8000, 0x7f80, "overflow midpoint, odd: Inf"},
		{0x7f7fffff, 0x7f80, "FLT_MAX: Inf"},
		{0xff7fffff, 0xff80, "-FLT_MAX: -Inf"},
		{0x7f800000, 0x7f80, "+Inf"},
		{0xff800000, 0xff80, "-Inf"},
		{0x7fc00000, 0x7fc0, "quiet NaN"},
		{0x7f800001, 0x7fc0, "signalling NaN, payload in the low half: quiet NaN"},
		{0xff810000, 0xffc1, "negative signalling NaN: sign and payload kept, quieted"},
		{0x7fffffff, 0x7fff, "NaN with every payload bit: no carry into the sign"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		float x = f32_of_bits(cases[i].in);
		uint16_t got = bf16_from_f32_one(x), ref = ref_bf16_round(x);

		EXPECT_TRUE(got == cases[i].want && ref == cases[i].want,
			    "%s: bf16(0x%08x) = 0x%04x, reference 0x%04x, want 0x%04x",
			    cases[i].what, (unsigned)cases[i].in, got, ref, cases[i].want);
	}
	/* Widening is exact and narrowing it again is the identity (NaNs: quieted). */
	{
		int64_t bad = 0;

		for (uint32_t h = 0; h < 0x10000; h++) {
			float x = bf16_to_f32_one((uint16_t)h);
			double v = ref_bf16_value((uint16_t)h);
			bool nan = ((h >> 7) & 0xff) == 0xff && (h & 0x7f);
			uint16_t back = bf16_from_f32_one(x);

			if (nan)
				bad += !isnan(x) || back != (h | 0x40);
			else
				bad += (double)x != v || back != h;
		}
		EXPECT_TRUE(bad == 0, "bf16 -> f32 -> bf16: %ld of 65536 patterns wrong", (long)bad);
	}
}

/* bf16_pack of a batch of rows x cols blocks with row stride ld and batch stride bs
 * (overlapping rows when bs < rows * ld: heads inside wide rows), by the calling
 * thread or, inside a parallel region, by each thread into its own copy. */
static void check_pack_case(int64_t batch, int64_t bs, int64_t rows, int64_t cols, int64_t ld,
			    bool in_parallel)
{
	const int64_t n = batch * rows * cols, nsrc = (batch - 1) * bs + rows * ld;
	const int nthr = in_parallel ? omp_get_max_threads() : 1;
	float *src = xmalloc(sizeof(float) * (size_t)nsrc);
	uint16_t *got = xmalloc(sizeof(uint16_t) * (size_t)(n * nthr));
	int64_t bad = 0;

	for (int64_t i = 0; i < nsrc; i++)
		src[i] = (float)(rng_normal(12, 1, (uint64_t)i) * 100.0);
	if (in_parallel) {
#pragma omp parallel num_threads(nthr)
		bf16_pack(got + omp_get_thread_num() * n, src, batch, bs, rows, cols, ld);
	} else {
		bf16_pack(got, src, batch, bs, rows, cols, ld);
	}
	for (int t = 0; t < nthr; t++)
		for (int64_t b = 0; b < batch; b++)
			for (int64_t r = 0; r < rows; r++)
				for (int64_t c = 0; c < cols; c++)
					bad += got[t * n + (b * rows + r) * cols + c] !=
					       ref_bf16_round(src[b * bs + r * ld + c]);
	EXPECT_TRUE(bad == 0, "bf16_pack %ldx%ldx%ld ld %ld%s: %ld of %ld wrong", (long)batch,
		    (long)rows, (long)cols, (long)ld, in_parallel ? " in parallel" : "", (long)bad,
		    (long)(n * nthr));
	free(src);
	free(got);
}

/* Small blocks (one thread, no OpenMP construct) and large ones (split over the
 * threads outside a parallel region), strided and contiguous, inside and outside. */
static void check_pack(void)
{
	for (int par = 0; par < 2; par++) {
		check_pack_case(3, 11, 37, 11, 3 * 11 + 5, par);
		check_pack_case(2, 37 * 11, 37, 11, 11, par);
		check_pack_case(4, 128, 300, 128, 512, par);
		check_pack_case(1, 0, 300, 128, 128, par);
	}
}

/* ---- matmul ----------------------------------------------------------------- */

/* x float32 uniform in (-1, 1); xd its bf16 rounding in double, xu unrounded (either
 * NULL: not wanted). */
static void fill(float *x, double *xd, double *xu, int64_t n, uint64_t stream)
{
	for (int64_t i = 0; i < n; i++) {
		x[i] = (float)(2.0 * rng_uniform(7, stream, (uint64_t)i) - 1.0);
		if (xd)
			xd[i] = ref_bf16_value(ref_bf16_round(x[i]));
		if (xu)
			xu[i] = x[i];
	}
}

static double max_abs_diff(const float *x, const double *y, int64_t n)
{
	double m = 0.0;

	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)x[i] - y[i]));
	return m;
}

/*
 * Products of bf16 values are exact in float32 (8 x 8 significant bits), so the
 * only error left against the float64 reference on the ROUNDED inputs is float32
 * accumulation: the float32 tests' tolerance holds. Against the UNROUNDED inputs the
 * error is some 2^-9 per term: the check that the inputs really were rounded.
 */
static void check_case(struct kernels_ctx *ctx, int64_t m, int64_t n, int64_t k, bool ta,
		       bool tb, bool acc, int64_t pad)
{
	struct matmul_shape s = matmul_shape_dense(m, n, k, ta, tb, acc);
	int64_t arows = ta ? k : m, brows = tb ? n : k;
	float *a, *b, *c;
	double *ad, *bd, *cd, *au, *bu, *cu;
	const struct matmul_plan *p;
	char label[128];

	s.lda += pad;
	s.ldb += pad;
	s.ldc += pad;
	a = xmalloc(sizeof(float) * arows * s.lda);
	b = xmalloc(sizeof(float) * brows * s.ldb);
	c = xmalloc(sizeof(float) * m * s.ldc);
	ad = xmalloc(sizeof(double) * arows * s.lda);
	bd = xmalloc(sizeof(double) * brows * s.ldb);
	cd = xmalloc(sizeof(double) * m * s.ldc);
	au = xmalloc(sizeof(double) * arows * s.lda);
	bu = xmalloc(sizeof(double) * brows * s.ldb);
	cu = xmalloc(sizeof(double) * m * s.ldc);
	fill(a, ad, au, arows * s.lda, 1);
	fill(b, bd, bu, brows * s.ldb, 2);
	/* C is float32 on both paths: the accumulated values are not rounded. */
	for (int64_t i = 0; i < m * s.ldc; i++) {
		c[i] = (float)(2.0 * rng_uniform(7, 3, (uint64_t)i) - 1.0);
		cd[i] = cu[i] = c[i];
	}
	p = matmul_plan_get(ctx, &s);
	EXPECT_TRUE(matmul_plan_is_bf16(p), "a plan made with bf16 on must be a bf16 plan");
	matmul_run(ctx, p, c, a, b);
	ref_matmul(cd, ad, bd, m, n, k, s.lda, s.ldb, s.ldc, ta, tb, acc);
	ref_matmul(cu, au, bu, m, n, k, s.lda, s.ldb, s.ldc, ta, tb, acc);
	snprintf(label, sizeof(label), "bf16 matmul m=%ld n=%ld k=%ld ta=%d tb=%d acc=%d pad=%ld",
		 (long)m, (long)n, (long)k, ta, tb, acc, (long)pad);
	EXPECT_CLOSE(c, cd, m * s.ldc, 1e-5, 1e-5, label);
	if (k >= 64)
		EXPECT_TRUE(max_abs_diff(c, cu, m * s.ldc) > 1e-4,
			    "%s: as close to the unrounded product as to the rounded one (%.3g): "
			    "were the inputs converted?", label, max_abs_diff(c, cu, m * s.ldc));
	free(a), free(b), free(c), free(ad), free(bd), free(cd), free(au), free(bu), free(cu);
}

static void check_batched(struct kernels_ctx *ctx)
{
	/* 3 products of 5x7 by 7x4 packed side by side in wider rows, as the retention
	 * kernels address heads inside the projection rows; accumulating. */
	enum { B = 3, M = 5, N = 4, K = 7, LDA = 3 * K + 2, LDB = 3 * N + 1, LDC = 3 * N };
	struct matmul_shape s = {
		.batch = B, .m = M, .n = N, .k = K, .lda = LDA, .ldb = LDB, .ldc = LDC,
		.stride_a = K, .stride_b = N, .stride_c = N, .accumulate = true,
	};
	float a[M * LDA], b[K * LDB], c[M * LDC];
	double ad[M * LDA], bd[K * LDB], cd[M * LDC];

	fill(a, ad, NULL, M * LDA, 4);
	fill(b, bd, NULL, K * LDB, 5);
	for (int i = 0; i < M * LDC; i++)
		c[i] = (float)(cd[i] = 0.25 * i);
	matmul_run(ctx, matmul_plan_get(ctx, &s), c, a, b);
	for (int i = 0; i < B; i++)
		ref_matmul(cd + i * N, ad + i * K, bd + i * N, M, N, K, LDA, LDB, LDC, false,
			   false, true);
	EXPECT_CLOSE(c, cd, M * LDC, 1e-5, 1e-6, "bf16 batched strided matmul, accumulating");
}

static void check_threaded(struct kernels_ctx *ctx)
{
	/* Each thread runs the same plan on its own buffers, converting into its own
	 * buffer; one size per thread grows that buffer in the middle of the region. */
	enum { M = 33, N = 17, K = 129, R = 8 };
	struct matmul_shape s = matmul_shape_dense(M, N, K, false, true, false);
	const struct matmul_plan *p = matmul_plan_get(ctx, &s);
	float *a = xmalloc(sizeof(float) * R * M * K), *b = xmalloc(sizeof(float) * N * K);
	float *c = xmalloc(sizeof(float) * R * M * N);
	double *ad = xmalloc(sizeof(double) * R * M * K), *bd = xmalloc(sizeof(double) * N * K);
	double *cd = xmalloc(sizeof(double) * R * M * N);

	fill(a, ad, NULL, R * M * K, 6);
	fill(b, bd, NULL, N * K, 7);
#pragma omp parallel for
	for (int r = 0; r < R; r++)
		matmul_run(ctx, p, c + r * M * N, a + r * M * K, b);
	for (int r = 0; r < R; r++)
		ref_matmul(cd + r * M * N, ad + r * M * K, bd, M, N, K, K, K, N, false, true,
			   false);
	EXPECT_CLOSE(c, cd, R * M * N, 1e-5, 1e-6, "bf16 matmul_run inside omp parallel");
	free(a), free(b), free(c), free(ad), free(bd), free(cd);
}

/* matmul_run_bf16 on operands packed by the caller equals matmul_run. */
static void check_prepacked(struct kernels_ctx *ctx)
{
	enum { M = 40, N = 24, K = 72 };
	struct matmul_shape s = matmul_shape_dense(M, N, K, true, false, false);
	const struct matmul_plan *p = matmul_plan_get(ctx, &s);
	float a[K * M], b[K * N], c1[M * N], c2[M * N];
	uint16_t ah[K * M], bh[K * N];
	double ad[K * M], bd[K * N];

	fill(a, ad, NULL, K * M, 8);
	fill(b, bd, NULL, K * N, 9);
	bf16_pack(ah, a, 1, 0, K, M, M);
	bf16_pack(bh, b, 1, 0, K, N, N);
	matmul_run(ctx, p, c1, a, b);
	matmul_run_bf16(ctx, p, c2, ah, bh);
	EXPECT_TRUE(memcmp(c1, c2, sizeof(c1)) == 0,
		    "matmul_run_bf16 on pre-packed operands differs from matmul_run");
}

/*
 * A plan that writes C as bf16: the rounding (bf16.h's) of the float32 C the same
 * shape's plan writes, on these shapes, whose results are normal numbers (oneDNN
 * flushes denormal results, bf16.h keeps them), converting its operands or reading
 * a held one; its own plan beside the float32-output one.
 */
static void check_bf16_output(struct kernels_ctx *ctx)
{
	static const int64_t shapes[][5] = {
		/* m, n, k, trans_a, trans_b */
		{40, 24, 72, 0, 0}, {256, 512, 128, 0, 0}, {33, 65, 17, 1, 0}, {64, 48, 96, 0, 1},
	};

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		const int64_t m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
		const bool ta = shapes[i][3], tb = shapes[i][4];
		struct matmul_shape s = matmul_shape_dense(m, n, k, ta, tb, false);
		struct matmul_shape s16 = s;
		const struct matmul_plan *p, *p16;
		float *a = xmalloc(sizeof(float) * (size_t)(m * k));
		float *b = xmalloc(sizeof(float) * (size_t)(k * n));
		float *c = xmalloc(sizeof(float) * (size_t)(m * n));
		uint16_t *want = xmalloc(sizeof(uint16_t) * (size_t)(m * n));
		uint16_t *got = xmalloc(sizeof(uint16_t) * (size_t)(m * n));

		s16.c_bf16 = true;
		p = matmul_plan_get(ctx, &s);
		p16 = matmul_plan_get(ctx, &s16);
		fill(a, NULL, NULL, m * k, 20 + i);
		fill(b, NULL, NULL, k * n, 30 + i);
		matmul_run(ctx, p, c, a, b);
		bf16_from_f32(want, c, m * n);
		memset(got, 0xff, sizeof(uint16_t) * (size_t)(m * n));
		matmul_run_to_bf16(ctx, p16, got, a, b);
		EXPECT_TRUE(p16 != p && memcmp(got, want, sizeof(uint16_t) * (size_t)(m * n)) == 0,
			    "bf16 output %ldx%ldx%ld ta=%d tb=%d: not the rounding of the float32 "
			    "output, or the same plan",
			    (long)m, (long)n, (long)k, ta, tb);
		memset(got, 0xff, sizeof(uint16_t) * (size_t)(m * n));
		matmul_hold(ctx, 0, a, m * k);
		matmul_run_to_bf16(ctx, p16, got, a, b);
		matmul_release(ctx, 0);
		EXPECT_TRUE(memcmp(got, want, sizeof(uint16_t) * (size_t)(m * n)) == 0,
			    "bf16 output %ldx%ldx%ld with A held: not the rounding of the float32 "
			    "output", (long)m, (long)n, (long)k);
		free(a), free(b), free(c), free(want), free(got);
	}
}

/*
 * matmul_hold: a held operand gives the same bits as converting it per call, is used
 * as A and as B (transposed too) while held, and only where the block matches
 * exactly. That the held copy, not src, is read is shown by changing src while held;
 * after matmul_release the change is seen.
 */
static void check_held(struct kernels_ctx *ctx)
{
	enum { M = 48, N = 40, K = 32 };
	struct matmul_shape s_ab = matmul_shape_dense(M, N, K, false, false, false);
	struct matmul_shape s_tb = matmul_shape_dense(N, K, M, true, false, false);
	struct matmul_shape s_half = matmul_shape_dense(M / 2, N, K, false, false, false);
	const struct matmul_plan *p_ab = matmul_plan_get(ctx, &s_ab);
	const struct matmul_plan *p_tb = matmul_plan_get(ctx, &s_tb);
	const struct matmul_plan *p_half = matmul_plan_get(ctx, &s_half);
	float a[M * K], b[K * N], bt[M * N], c0[M * N], c1[M * N], t0[N * K], t1[N * K];
	float h0[M / 2 * N], h1[M / 2 * N], saved;
	double ad[M * K], bd[K * N], btd[M * N];

	fill(a, ad, NULL, M * K, 10);
	fill(b, bd, NULL, K * N, 11);
	fill(bt, btd, NULL, M * N, 12);
	/* references, nothing held: c0 = a b, t0 = bt^T a (a as B), h0 = top half of a, b */
	matmul_run(ctx, p_ab, c0, a, b);
	matmul_run(ctx, p_tb, t0, bt, a);
	matmul_run(ctx, p_half, h0, a + M / 2 * K, b);

	matmul_hold(ctx, 0, a, M * K);
	matmul_run(ctx, p_ab, c1, a, b);
	matmul_run(ctx, p_tb, t1, bt, a);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0 && memcmp(t0, t1, sizeof(t0)) == 0,
		    "a held operand (as A and as B) must give the bits of a per-call conversion");
	saved = a[0];
	a[0] += 1.0f;
	matmul_run(ctx, p_ab, c1, a, b);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0,
		    "while held, matmul_run must read the held copy, not convert again");
	/* a + M/2*K is inside the held block but not it: converted, with the change */
	a[M / 2 * K] += 1.0f;
	matmul_run(ctx, p_half, h1, a + M / 2 * K, b);
	EXPECT_TRUE(memcmp(h0, h1, sizeof(h0)) != 0,
		    "a block that is not exactly the held one must be converted afresh");
	a[M / 2 * K] -= 1.0f;
	matmul_release(ctx, 0);
	matmul_run(ctx, p_ab, c1, a, b);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) != 0,
		    "after matmul_release, a change of the operand must be seen");
	a[0] = saved;
	matmul_run(ctx, p_ab, c1, a, b);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0, "restored operand: the first bits again");
}

/* matmul_hold_fresh / matmul_hold_again: a copy kept from one hold to the next. */
static void check_kept(struct kernels_ctx *ctx)
{
	enum { M = 48, N = 40, K = 32 };
	struct matmul_shape s_ab = matmul_shape_dense(M, N, K, false, false, false);
	struct matmul_shape s_ta = matmul_shape_dense(K, N, M, true, false, false);
	const struct matmul_plan *p_ab = matmul_plan_get(ctx, &s_ab);
	const struct matmul_plan *p_ta = matmul_plan_get(ctx, &s_ta);
	float a[M * K], a2[M * K], b[K * N], dy[M * N], c0[M * N], c1[M * N];
	float w0[K * N], w1[K * N];
	double ad[M * K], bd[K * N], dyd[M * N];
	struct matmul_kept kept = {0};
	char err[256];

	fill(a, ad, NULL, M * K, 20);
	fill(b, bd, NULL, K * N, 21);
	fill(dy, dyd, NULL, M * N, 22);
	memcpy(a2, a, sizeof(a));
	/* references: c0 = a b (forward), w0 = a^T dy (its dW), a converted per call */
	matmul_run(ctx, p_ab, c0, a, b);
	matmul_run(ctx, p_ta, w0, a, dy);

	matmul_hold_fresh(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ab, c1, a, b);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0,
		    "a fresh hold must give a per-call conversion's bits");
	a[0] += 1.0f; /* not allowed to callers; here it shows which copy is read */
	matmul_hold_again(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ta, w1, a, dy);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(w0, w1, sizeof(w0)) == 0,
		    "hold_again on the same block must read the kept copy (as transposed A)");
	a[0] -= 1.0f;

	/* Another pointer with the same values and size is not the kept block. */
	a2[0] += 1.0f;
	matmul_hold_again(ctx, 0, &kept, a2, M * K);
	matmul_run(ctx, p_ta, w1, a2, dy);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(w0, w1, sizeof(w0)) != 0, "hold_again on another block must convert it");
	EXPECT_TRUE(kept.src == a2, "that conversion becomes the kept copy");

	/* A fresh hold on a float32 context leaves no bf16 copy to reuse later. */
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, false, err, sizeof(err)) == 0, "bf16 off");
	matmul_hold_fresh(ctx, 0, &kept, a, M * K);
	matmul_release(ctx, 0);
	EXPECT_TRUE(!kept.converted, "a float32 fresh hold must mark the copy unconverted");
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, true, err, sizeof(err)) == 0, "bf16 on: %s", err);
	a[0] += 1.0f;
	matmul_hold_again(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ta, w1, a, dy);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(w0, w1, sizeof(w0)) != 0,
		    "after a float32 fresh hold, hold_again must convert the current values");
	a[0] -= 1.0f;
	matmul_kept_free(&kept);
	EXPECT_TRUE(!kept.buf && !kept.src, "matmul_kept_free empties the copy");
}

/* matmul_kept_target / matmul_hold_written: a copy its producer wrote. */
static void check_written(struct kernels_ctx *ctx)
{
	enum { M = 48, N = 40, K = 32 };
	struct matmul_shape s_ab = matmul_shape_dense(M, N, K, false, false, false);
	struct matmul_shape s_ta = matmul_shape_dense(K, N, M, true, false, false);
	const struct matmul_plan *p_ab = matmul_plan_get(ctx, &s_ab);
	const struct matmul_plan *p_ta = matmul_plan_get(ctx, &s_ta);
	float a[M * K], b[K * N], dy[M * N], c0[M * N], c1[M * N], w0[K * N], w1[K * N];
	double ad[M * K], bd[K * N], dyd[M * N];
	struct matmul_kept kept = {0};
	uint16_t *copy;
	char err[256];

	fill(a, ad, NULL, M * K, 30);
	fill(b, bd, NULL, K * N, 31);
	fill(dy, dyd, NULL, M * N, 32);
	matmul_run(ctx, p_ab, c0, a, b);
	matmul_run(ctx, p_ta, w0, a, dy);

	/* The producer's copy is read as it is: one of other values shows in the result. */
	copy = matmul_kept_target(ctx, &kept, M * K);
	EXPECT_TRUE(copy != NULL && !kept.converted && !kept.src,
		    "a bf16 target is a buffer, and no copy of anything yet");
	bf16_from_f32(copy, a, M * K);
	copy[0] = bf16_from_f32_one(a[0] + 1.0f);
	matmul_hold_written(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ab, c1, a, b);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) != 0, "hold_written must read the written copy");
	/* each written copy needs its target first (the same buffer, the values left) */
	EXPECT_TRUE(matmul_kept_target(ctx, &kept, M * K) == copy, "the same buffer again");
	copy[0] = bf16_from_f32_one(a[0]);
	matmul_hold_written(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ab, c1, a, b);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0,
		    "a written copy of exactly a gives a per-call conversion's bits");
	/* ... and is kept's copy of a for a later hold_again (backward's dW) */
	EXPECT_TRUE(kept.converted && kept.src == a, "hold_written makes the copy kept's");
	matmul_hold_again(ctx, 0, &kept, a, M * K);
	matmul_run(ctx, p_ta, w1, a, dy);
	matmul_release(ctx, 0);
	EXPECT_TRUE(memcmp(w0, w1, sizeof(w0)) == 0, "hold_again after hold_written: its bits");

	/* A copy written alone: the float32 block is never read, so NaN there changes
	 * nothing, in the forward product or in a later hold_again's. */
	{
		float unwritten[M * K];

		for (int i = 0; i < M * K; i++)
			unwritten[i] = NAN;
		copy = matmul_sole_target(ctx, &kept, M * K);
		EXPECT_TRUE(copy != NULL && kept.sole, "a bf16 sole target is a buffer, marked");
		bf16_from_f32(copy, a, M * K);
		matmul_hold_written(ctx, 0, &kept, unwritten, M * K);
		matmul_run(ctx, p_ab, c1, unwritten, b);
		matmul_release(ctx, 0);
		matmul_hold_again(ctx, 0, &kept, unwritten, M * K);
		matmul_run(ctx, p_ta, w1, unwritten, dy);
		matmul_release(ctx, 0);
		EXPECT_TRUE(memcmp(c0, c1, sizeof(c0)) == 0 && memcmp(w0, w1, sizeof(w0)) == 0,
			    "products of a copy written alone read the copy only");
		EXPECT_TRUE(matmul_kept_target(ctx, &kept, M * K) == copy && !kept.sole,
			    "a later plain target is not a sole one");
		bf16_from_f32(copy, a, M * K);
		matmul_hold_written(ctx, 0, &kept, a, M * K);
		matmul_release(ctx, 0);
	}

	/* float32: no buffer to write, bookkeeping only */
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, false, err, sizeof(err)) == 0, "bf16 off");
	EXPECT_TRUE(matmul_kept_target(ctx, &kept, M * K) == NULL,
		    "a float32 context has no copy to write");
	EXPECT_TRUE(matmul_sole_target(ctx, &kept, M * K) == NULL && !kept.sole,
		    "nor a copy to write alone: the producer writes float32");
	matmul_hold_written(ctx, 0, &kept, a, M * K);
	matmul_release(ctx, 0);
	EXPECT_TRUE(!kept.converted, "a float32 hold_written leaves no bf16 copy");
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, true, err, sizeof(err)) == 0, "bf16 on: %s", err);
	matmul_kept_free(&kept);
}

static void check_matmul(void)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	const int64_t sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 192, 64}, {130, 257, 96}};
	char err[256];
	const struct matmul_plan *f32_plan;
	struct matmul_shape probe = matmul_shape_dense(64, 192, 64, false, false, false);
	int plans, rc;

	if (kernels_ctx_set_bf16(ctx, true, err, sizeof(err))) {
		printf("skip bf16 matmul checks: %s\n", err);
		kernels_ctx_free(ctx);
		return;
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				for (int acc = 0; acc < 2; acc++)
					check_case(ctx, sizes[i][0], sizes[i][1], sizes[i][2],
						   ta, tb, acc, (i & 1) ? 3 : 0);
	check_batched(ctx);
	check_threaded(ctx);
	check_prepacked(ctx);
	check_bf16_output(ctx);
	check_held(ctx);
	check_kept(ctx);
	check_written(ctx);
	printf("impl of the bf16 64x192x64 plan: %s\n",
	       matmul_plan_impl(matmul_plan_get(ctx, &probe)));

	/* Precision is the context's: switching back gets float32 plans, and both kinds
	 * stay cached side by side. */
	rc = kernels_ctx_set_bf16(ctx, false, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "turning bf16 off: %d", rc);
	plans = matmul_plan_count(ctx);
	f32_plan = matmul_plan_get(ctx, &probe);
	EXPECT_TRUE(!matmul_plan_is_bf16(f32_plan) && matmul_plan_count(ctx) == plans + 1,
		    "bf16 off must give a new float32 plan for the same shape");
	rc = kernels_ctx_set_bf16(ctx, true, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "turning bf16 on again: %d", rc);
	EXPECT_TRUE(matmul_plan_is_bf16(matmul_plan_get(ctx, &probe)) &&
			    matmul_plan_count(ctx) == plans + 1,
		    "bf16 on again must reuse the cached bf16 plan");
	kernels_ctx_free(ctx);
}

/* Under ONEDNN_MAX_CPU_ISA=AVX512_CORE: a refusal with one line, not a crash. */
static int expect_unsupported(void)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	char err[256] = "";
	int rc = kernels_ctx_set_bf16(ctx, true, err, sizeof(err));

	printf("kernels_ctx_set_bf16: %d: %s\n", rc, err);
	EXPECT_TRUE(rc == -ENOTSUP && strstr(err, "--bf16: ") == err &&
			    strstr(err, "avx512_core_bf16") && !strchr(err, '\n'),
		    "want -ENOTSUP and one line naming the missing ISA");
	EXPECT_TRUE(!kernels_ctx_bf16(ctx), "a refused switch must leave float32 on");
	kernels_ctx_free(ctx);
	return test_finish();
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--expect-unsupported"))
		return expect_unsupported();
	check_conversion_cases();
	check_conversion_sweep();
	check_pack();
	check_matmul();
	return test_finish();
}
