/* The oneDNN matmul plans against the float64 reference: every transpose
 * combination, accumulation, leading dimensions wider than the operand, batches,
 * plan reuse, and calls from inside an OpenMP region; and autotuned plans: the same
 * products, what the tuning recorded, small products left untuned, and plans tuned
 * together with another rank (imitated): refused when their plan lists differ, first
 * choices kept when the ranks are offered different candidates, and the
 * implementation whose slowest rank is fastest kept. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/matmul_ref.h"
#include "trainer/kernels/matmul.h"

static void fill(float *x, double *xd, int64_t n, uint64_t stream)
{
	for (int64_t i = 0; i < n; i++) {
		x[i] = (float)(2.0 * rng_uniform(7, stream, (uint64_t)i) - 1.0);
		xd[i] = x[i];
	}
}

static void check_case(struct kernels_ctx *ctx, int64_t m, int64_t n, int64_t k, bool ta,
		       bool tb, bool acc, int64_t pad)
{
	struct matmul_shape s = matmul_shape_dense(m, n, k, ta, tb, acc);
	int64_t arows = ta ? k : m, brows = tb ? n : k;
	float *a, *b, *c;
	double *ad, *bd, *cd;
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
	fill(a, ad, arows * s.lda, 1);
	fill(b, bd, brows * s.ldb, 2);
	fill(c, cd, m * s.ldc, 3);
	matmul_run(ctx, matmul_plan_get(ctx, &s), c, a, b);
	ref_matmul(cd, ad, bd, m, n, k, s.lda, s.ldb, s.ldc, ta, tb, acc);
	snprintf(label, sizeof(label), "matmul m=%ld n=%ld k=%ld ta=%d tb=%d acc=%d pad=%ld",
		 (long)m, (long)n, (long)k, ta, tb, acc, (long)pad);
	/* float32 dot products of length k: error grows like sqrt(k) * 2^-24 * |terms|. */
	EXPECT_CLOSE(c, cd, m * s.ldc, 1e-5, 1e-5, label);
	free(a), free(b), free(c), free(ad), free(bd), free(cd);
}

static void check_batched(struct kernels_ctx *ctx)
{
	/* 3 products of 5x7 by 7x4 packed side by side in wider rows, as the
	 * retention kernels address heads inside the projection rows. */
	enum { B = 3, M = 5, N = 4, K = 7, LDA = 3 * K + 2, LDB = 3 * N + 1, LDC = 3 * N };
	struct matmul_shape s = {
		.batch = B, .m = M, .n = N, .k = K, .lda = LDA, .ldb = LDB, .ldc = LDC,
		.stride_a = K, .stride_b = N, .stride_c = N,
	};
	float a[M * LDA], b[K * LDB], c[M * LDC];
	double ad[M * LDA], bd[K * LDB], cd[M * LDC];

	fill(a, ad, M * LDA, 4);
	fill(b, bd, K * LDB, 5);
	matmul_run(ctx, matmul_plan_get(ctx, &s), c, a, b);
	for (int i = 0; i < B; i++)
		ref_matmul(cd + i * N, ad + i * K, bd + i * N, M, N, K, LDA, LDB, LDC, false,
			   false, false);
	EXPECT_CLOSE(c, cd, M * LDC, 1e-5, 1e-6, "batched strided matmul");
}

static void check_threaded(struct kernels_ctx *ctx)
{
	/* Each thread runs the same plan on its own buffers. */
	enum { M = 33, N = 17, K = 29, R = 8 };
	struct matmul_shape s = matmul_shape_dense(M, N, K, false, true, false);
	const struct matmul_plan *p = matmul_plan_get(ctx, &s);
	float *a = xmalloc(sizeof(float) * R * M * K), *b = xmalloc(sizeof(float) * N * K);
	float *c = xmalloc(sizeof(float) * R * M * N);
	double *ad = xmalloc(sizeof(double) * R * M * K), *bd = xmalloc(sizeof(double) * N * K);
	double *cd = xmalloc(sizeof(double) * R * M * N);

	fill(a, ad, R * M * K, 6);
	fill(b, bd, N * K, 7);
#pragma omp parallel for
	for (int r = 0; r < R; r++)
		matmul_run(ctx, p, c + r * M * N, a + r * M * K, b);
	for (int r = 0; r < R; r++)
		ref_matmul(cd + r * M * N, ad + r * M * K, bd, M, N, K, K, K, N, false, true,
			   false);
	EXPECT_CLOSE(c, cd, R * M * N, 1e-5, 1e-6, "matmul_run inside omp parallel");
	free(a), free(b), free(c), free(ad), free(bd), free(cd);
}

/* Products of 2^24 and more multiply-adds are tuned: every transpose and
 * accumulation, one with padded rows, each against the reference after tuning; the
 * tuning's record must name a real implementation no slower than oneDNN's first
 * choice. */
static void check_tunable_cases(struct kernels_ctx *ctx)
{
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int acc = 0; acc < 2; acc++)
				check_case(ctx, 256, 320, 256, ta, tb, acc, (ta ^ tb) ? 5 : 0);
	check_case(ctx, 64, 192, 64, false, false, false, 0); /* too small to tune */
}

static void check_autotune(void)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	struct matmul_tuning_totals tt;
	int tuned = 0, moved = 0, rc;

	check_tunable_cases(ctx);
	rc = matmul_autotune_plans(ctx, NULL);
	EXPECT_TRUE(rc == 8, "8 plans of 2^24 multiply-adds or more tuned (returned %d)", rc);
	check_tunable_cases(ctx);
	EXPECT_TRUE(matmul_plan_count(ctx) == 9, "the tuned plans are reused (%d plans)",
		    matmul_plan_count(ctx));
	for (int i = 0; i < matmul_plan_count(ctx); i++) {
		const struct matmul_plan *p = matmul_plan_at(ctx, i);
		const struct matmul_tuning *t = matmul_plan_tuning(p);
		const char *impl = matmul_plan_impl(p);
		bool small = i == matmul_plan_count(ctx) - 1;

		if (small) {
			EXPECT_TRUE(t->candidates == 0, "the 64x192x64 plan was tuned (%d candidates)",
				    t->candidates);
			continue;
		}
		EXPECT_TRUE(t->candidates >= 1, "plan %d (256x320x256) was not tuned", i);
		EXPECT_TRUE(!strstr(impl, "ref") && t->first_impl[0] && !strstr(t->first_impl, "ref"),
			    "plan %d: a reference implementation was a candidate (%s, first %s)", i,
			    impl, t->first_impl);
		/* One candidate is kept untimed; of several, the one of least median. */
		EXPECT_TRUE(t->candidates == 1
				    ? t->chosen_s == 0 && t->first_s == 0 && !strcmp(impl, t->first_impl)
				    : t->chosen_s > 0 && t->chosen_s <= t->first_s,
			    "plan %d: kept %s at %.3g s against the first choice %s at %.3g s "
			    "(%d candidates)", i, impl, t->chosen_s, t->first_impl, t->first_s,
			    t->candidates);
		printf("tuned plan %d: %d candidates, first %s %.3f ms, kept %s %.3f ms\n", i,
		       t->candidates, t->first_impl, 1e3 * t->first_s, impl, 1e3 * t->chosen_s);
		tuned++;
		moved += strcmp(impl, t->first_impl) != 0;
	}
	matmul_tuning_totals(ctx, &tt);
	EXPECT_TRUE(tt.tuned == tuned && tt.moved == moved && tt.chosen_s <= tt.first_s,
		    "totals: %d tuned, %d moved (counted %d, %d)", tt.tuned, tt.moved, tuned, moved);
	kernels_ctx_free(ctx);
}

/*
 * matmul_autotune_plans with an imitated second rank: the callback takes the
 * maximum of this rank's values and that rank's. Its calls are told apart by their
 * contents: the agreement checks hold two values and their negations (the first is
 * the plan list's, then one per plan on the candidates offered), the candidates'
 * medians are all positive.
 */
struct other_rank {
	bool other_plans;     /* its plan list differs */
	bool other_offer;     /* oneDNN offers it other candidates (another CPU) */
	bool first_slow;      /* oneDNN's first choice takes it a second */
	bool last_fast;       /* every candidate but the last takes it a second */
	int checks, median_calls;
};

static void other_rank_max(double *v, int n, void *arg)
{
	struct other_rank *o = arg;

	if (n == 4 && v[2] == -v[0] && v[3] == -v[1]) {
		const bool plan_list = o->checks++ == 0;

		if (plan_list ? o->other_plans : o->other_offer)
			v[1] += 1; /* another hash */
		return;
	}
	o->median_calls++;
	if (o->first_slow && v[0] < 1.0)
		v[0] = 1.0;
	for (int i = 0; o->last_fast && i < n - 1; i++)
		v[i] = v[i] < 1.0 ? 1.0 : v[i];
}

static struct kernels_ctx *ctx_with_dense_plans(void)
{
	struct kernels_ctx *ctx = kernels_ctx_init();

	for (int ta = 0; ta < 2; ta++)
		for (int acc = 0; acc < 2; acc++)
			check_case(ctx, 256, 320, 256, ta, ta, acc, 0);
	check_case(ctx, 64, 192, 64, false, false, false, 0);
	return ctx;
}

static void check_autotune_agreed(void)
{
	struct kernels_ctx *ctx = ctx_with_dense_plans();
	struct other_rank o = {.other_plans = true};
	struct matmul_agree agree = {other_rank_max, &o};
	int rc = matmul_autotune_plans(ctx, &agree), several = 0;

	EXPECT_TRUE(rc == -1 && o.median_calls == 0,
		    "plan lists that differ: nothing tuned (returned %d, %d timings agreed)", rc,
		    o.median_calls);
	for (int i = 0; i < matmul_plan_count(ctx); i++)
		EXPECT_TRUE(matmul_plan_tuning(matmul_plan_at(ctx, i))->candidates == 0,
			    "plan %d tuned although the plan lists differ", i);

	o = (struct other_rank){.first_slow = true};
	rc = matmul_autotune_plans(ctx, &agree);
	EXPECT_TRUE(rc == 4, "4 plans of 2^24 multiply-adds or more tuned (returned %d)", rc);
	for (int i = 0; i < matmul_plan_count(ctx); i++) {
		const struct matmul_plan *p = matmul_plan_at(ctx, i);
		const struct matmul_tuning *t = matmul_plan_tuning(p);

		if (t->candidates < 2)
			continue;
		several++;
		/* The other rank's second on the first choice decides: the implementation
		 * whose slowest rank is fastest is another one. */
		EXPECT_TRUE(strcmp(matmul_plan_impl(p), t->first_impl) && t->first_s >= 1.0,
			    "plan %d: kept %s (first %s at %.3g s on the slowest rank)", i,
			    matmul_plan_impl(p), t->first_impl, t->first_s);
	}
	EXPECT_TRUE(several == o.median_calls,
		    "one agreed timing per plan of several candidates (%d plans, %d timings)",
		    several, o.median_calls);
	printf("agreed tuning: %d plans with several candidates\n", several);
	/* The re-made plans compute the same products (the cache returns them). */
	for (int ta = 0; ta < 2; ta++)
		for (int acc = 0; acc < 2; acc++)
			check_case(ctx, 256, 320, 256, ta, ta, acc, 0);
	EXPECT_TRUE(matmul_plan_count(ctx) == 5, "the tuned plans are reused (%d plans)",
		    matmul_plan_count(ctx));
	rc = matmul_autotune_plans(ctx, NULL);
	EXPECT_TRUE(rc == 0, "nothing left to tune (returned %d)", rc);
	kernels_ctx_free(ctx);

	/* The same plans, but the other rank is offered other candidates: each plan
	 * keeps oneDNN's first choice, untimed. */
	ctx = ctx_with_dense_plans();
	o = (struct other_rank){.other_offer = true, .first_slow = true};
	rc = matmul_autotune_plans(ctx, &agree);
	EXPECT_TRUE(rc == 4 && o.median_calls == 0,
		    "other candidates on the other rank: first choices kept untimed (returned %d, "
		    "%d timings agreed)",
		    rc, o.median_calls);
	for (int i = 0; i < matmul_plan_count(ctx); i++) {
		const struct matmul_plan *p = matmul_plan_at(ctx, i);
		const struct matmul_tuning *t = matmul_plan_tuning(p);

		if (t->candidates)
			EXPECT_TRUE(!strcmp(matmul_plan_impl(p), t->first_impl) && t->first_s == 0.0,
				    "plan %d: kept %s, not oneDNN's first choice %s, with "
				    "other candidates on the other rank",
				    i, matmul_plan_impl(p), t->first_impl);
	}
	kernels_ctx_free(ctx);
}

/* Plans that reorder B before each run (the candidates listed last, when oneDNN has
 * an implementation with a layout of its own) compute the same products: the other
 * rank makes every other candidate slow, then the products are checked again. */
static void check_autotune_reordered(void)
{
	struct kernels_ctx *ctx = ctx_with_dense_plans();
	struct other_rank o = {.last_fast = true};
	struct matmul_agree agree = {other_rank_max, &o};
	int rc = matmul_autotune_plans(ctx, &agree), reordered = 0;

	EXPECT_TRUE(rc == 4, "4 plans tuned (returned %d)", rc);
	for (int i = 0; i < matmul_plan_count(ctx); i++) {
		const char *impl = matmul_plan_impl(matmul_plan_at(ctx, i));

		reordered += strstr(impl, MATMUL_B_REORDERED) != NULL;
		printf("plan %d kept %s\n", i, impl);
	}
	/* On an AVX-512 machine brgemm offers blocked B for all four shapes. */
	EXPECT_TRUE(reordered >= 1, "no plan kept a reordered B (%d)", reordered);
	for (int ta = 0; ta < 2; ta++)
		for (int acc = 0; acc < 2; acc++)
			check_case(ctx, 256, 320, 256, ta, ta, acc, 0);
	EXPECT_TRUE(matmul_plan_count(ctx) == 5, "the tuned plans are reused (%d plans)",
		    matmul_plan_count(ctx));
	kernels_ctx_free(ctx);
}

int main(void)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	const int64_t sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 192, 64}, {130, 257, 96}};
	int plans_before;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				for (int acc = 0; acc < 2; acc++)
					check_case(ctx, sizes[i][0], sizes[i][1], sizes[i][2],
						   ta, tb, acc, (i & 1) ? 3 : 0);
	plans_before = matmul_plan_count(ctx);
	check_case(ctx, 64, 192, 64, true, false, true, 0);
	EXPECT_TRUE(matmul_plan_count(ctx) == plans_before,
		    "a repeated shape must reuse its plan (%d plans, then %d)", plans_before,
		    matmul_plan_count(ctx));
	check_batched(ctx);
	check_threaded(ctx);
	printf("impl of the 64x192x64 plan: %s\n",
	       matmul_plan_impl(matmul_plan_get(ctx, &(struct matmul_shape){
		       .batch = 1, .m = 64, .n = 192, .k = 64, .lda = 64, .ldb = 192, .ldc = 192})));
	kernels_ctx_free(ctx);
	check_autotune();
	check_autotune_agreed();
	check_autotune_reordered();
	return test_finish();
}
