/*
 * Retention: the three forms are one function.
 *
 *   1. float64 reference: parallel, recurrent and chunkwise agree to ~1e-12.
 *   2. float32 kernels against the float64 reference, form by form; then the float32
 *      forms against each other after the per-head GroupNorm of the model.
 *   3. Strided layout: heads inside wider rows at a column offset, head_offset > 0;
 *      the columns outside the heads stay untouched.
 *   4. Streaming: the chunkwise form over two halves carrying the state equals one
 *      pass; the recurrent form continues from the same state.
 *   5. Chunkwise backward against the float64 parallel backward, the float32
 *      parallel backward and central differences of L = sum(O .* W).
 *   6. The chunkwise forward and backward on bf16 products against the float64
 *      reference (normwise; limits at test_bf16_chunkwise).
 *   7. V and dO held as bf16 alone give every chunkwise pass the same bits as the
 *      float32 arrays they round.
 *   8. More than 20 heads: the heads whose gamma rounds to 1.0f decay in the
 *      recurrent form as in the chunkwise form (limits at test_recurrent_decay).
 *
 * Tolerances are |got - want| <= rtol |want| + atol. Elementwise relative error alone
 * is meaningless for entries near zero, so atol = a * max|want| (|O| grows like
 * 1/(1 - gamma), so the floor follows the scale); after GroupNorm the values have
 * unit scale and atol is absolute. float32 against float64: rtol 1e-4, a = 2e-6
 * (forward) or 3e-6 (backward); float32 forms against each other after GroupNorm:
 * rtol 1e-5, atol 1e-5. Observed errors are 3-10x below these.
 */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/retention_ref.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/retention.h"
#include "trainer/kernels/retention_forms.h"

#define SENTINEL 7.25f

struct cfg {
	const char *name;
	int64_t batch, seq_len, heads, head_offset, dk, dv, chunk;
	/* Extra row width and the column where the heads start, per operand (Q, K,
	 * V, O); 0 for the dense layout. */
	int64_t pad[4], col[4];
};

/* One operand: float32 and float64 copies of the same values. Heads start at
 * column `col` of rows of stride `ld`. */
struct operand {
	float *f;
	double *d;
	int64_t rows, ld, col, width;
	size_t n;
};

static struct operand operand_new(int64_t rows, int64_t width, int64_t pad, int64_t col)
{
	struct operand x = {.rows = rows, .width = width, .ld = width + pad + col, .col = col};

	x.n = (size_t)(rows * x.ld);
	x.f = xmalloc(sizeof(float) * x.n);
	x.d = xmalloc(sizeof(double) * x.n);
	for (size_t i = 0; i < x.n; i++) {
		x.f[i] = SENTINEL;
		x.d[i] = SENTINEL;
	}
	return x;
}

static void operand_free(struct operand *x)
{
	free(x->f);
	free(x->d);
}

/* The heads' values uniform in (-scale, scale); the other columns keep SENTINEL. */
static void operand_random(struct operand *x, uint64_t stream, double scale)
{
	for (int64_t r = 0; r < x->rows; r++)
		for (int64_t j = 0; j < x->width; j++) {
			int64_t i = r * x->ld + x->col + j;
			double u = rng_uniform(42, stream, (uint64_t)i);
			float val = (float)(scale * (2.0 * u - 1.0));

			x->f[i] = val;
			x->d[i] = val;
		}
}

/* NaN in the heads' float values. */
static void operand_poison_f(struct operand *x)
{
	for (int64_t r = 0; r < x->rows; r++)
		for (int64_t j = 0; j < x->width; j++)
			x->f[r * x->ld + x->col + j] = NAN;
}

static float *fp(const struct operand *x)
{
	return x->f + x->col;
}

static double *dp(const struct operand *x)
{
	return x->d + x->col;
}

/* The heads' columns as a dense (rows, width) float64 array (caller frees). */
static double *gather_f(const struct operand *x)
{
	double *g = xmalloc(sizeof(double) * (size_t)(x->rows * x->width));

	for (int64_t r = 0; r < x->rows; r++)
		for (int64_t j = 0; j < x->width; j++)
			g[r * x->width + j] = x->f[r * x->ld + x->col + j];
	return g;
}

static double *gather_d(const struct operand *x)
{
	double *g = xmalloc(sizeof(double) * (size_t)(x->rows * x->width));

	for (int64_t r = 0; r < x->rows; r++)
		for (int64_t j = 0; j < x->width; j++)
			g[r * x->width + j] = x->d[r * x->ld + x->col + j];
	return g;
}

/* Float values outside the heads' columns that are no longer SENTINEL. */
static int64_t count_touched(const struct operand *x)
{
	int64_t bad = 0;

	for (int64_t r = 0; r < x->rows; r++)
		for (int64_t j = 0; j < x->ld; j++) {
			bool outside = j < x->col || j >= x->col + x->width;

			if (outside && x->f[r * x->ld + j] != SENTINEL)
				bad++;
		}
	return bad;
}

static double max_abs(const double *x, int64_t n)
{
	double m = 0.0;

	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

/* EXPECT_CLOSE with atol = a * max|want|, the tolerances in the label. */
static void check(const char *cfg_name, const char *what, const double *got,
		  const double *want, int64_t n, double rtol, double a)
{
	char label[256];

	snprintf(label, sizeof(label), "%s: %s (rtol %.0e, atol %.0e*max|want|=%.2g)", cfg_name,
		 what, rtol, a, a * max_abs(want, n));
	EXPECT_CLOSE(got, want, n, rtol, a * max_abs(want, n), label);
}

/*
 * EXPECT_CLOSE with an absolute atol, for values of known unit scale; and the
 * normwise relative error max|got - want| / max|want| <= rtol, the sense in which
 * "relative error" is meaningful for entries near zero.
 */
static void check_abs(const char *cfg_name, const char *what, const double *got,
		      const double *want, int64_t n, double rtol, double atol)
{
	char label[256];
	double err = 0.0, norm;

	snprintf(label, sizeof(label), "%s: %s (rtol %.0e, atol %.0e)", cfg_name, what, rtol,
		 atol);
	EXPECT_CLOSE(got, want, n, rtol, atol, label);
	for (int64_t i = 0; i < n; i++)
		err = fmax(err, fabs(got[i] - want[i]));
	norm = err / max_abs(want, n);
	printf("     normwise rel %.3g (limit %.0e)\n", norm, rtol);
	EXPECT_TRUE(norm <= rtol, "%s: normwise relative error %.3g", label, norm);
}

/* Per row and head: LayerNorm over the head's dv lanes, no gain or bias, eps 1e-5,
 * in float64 so the comparison sees only the kernels' error. In place. */
static void groupnorm(double *x, int64_t rows, int64_t heads, int64_t dv)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t h = 0; h < heads; h++) {
			double *g = x + (r * heads + h) * dv, mean = 0.0, var = 0.0;

			for (int64_t j = 0; j < dv; j++)
				mean += g[j];
			mean /= (double)dv;
			for (int64_t j = 0; j < dv; j++)
				var += (g[j] - mean) * (g[j] - mean);
			var /= (double)dv;
			for (int64_t j = 0; j < dv; j++)
				g[j] = (g[j] - mean) / sqrt(var + 1e-5);
		}
}

struct problem {
	struct cfg c;
	struct retention_dims d;
	struct operand q, k, v, o, dout;
	int64_t rows;
};

/* Random Q, V, dO in (-1, 1) and K scaled by 1/sqrt(dk) as the model does. */
static struct problem problem_new(const struct cfg *c)
{
	struct problem p = {.c = *c, .rows = c->batch * c->seq_len};
	int64_t hk = c->heads * c->dk, hv = c->heads * c->dv;

	p.q = operand_new(p.rows, hk, c->pad[0], c->col[0]);
	p.k = operand_new(p.rows, hk, c->pad[1], c->col[1]);
	p.v = operand_new(p.rows, hv, c->pad[2], c->col[2]);
	p.o = operand_new(p.rows, hv, c->pad[3], c->col[3]);
	p.dout = operand_new(p.rows, hv, c->pad[3], c->col[3]);
	operand_random(&p.q, 1, 1.0);
	operand_random(&p.k, 2, 1.0 / sqrt((double)c->dk));
	operand_random(&p.v, 3, 1.0);
	operand_random(&p.dout, 4, 1.0);
	p.d = (struct retention_dims){
		.batch = c->batch, .seq_len = c->seq_len, .heads = c->heads,
		.head_offset = c->head_offset, .dk = c->dk, .dv = c->dv, .chunk = c->chunk,
		.ldq = p.q.ld, .ldk = p.k.ld, .ldv = p.v.ld, .ldo = p.o.ld,
	};
	return p;
}

static void problem_free(struct problem *p)
{
	operand_free(&p->q);
	operand_free(&p->k);
	operand_free(&p->v);
	operand_free(&p->o);
	operand_free(&p->dout);
}

static int64_t state_size(const struct retention_dims *d)
{
	return d->batch * d->heads * d->dk * d->dv;
}

/* 1. The float64 reference forms agree. */
static void test_reference_forms(const struct cfg *c)
{
	struct problem p = problem_new(c);
	const struct retention_dims *d = &p.d;
	int64_t n = p.rows * c->heads * c->dv;
	double *st_rec = xcalloc((size_t)state_size(d), sizeof(double));
	double *st_chk = xcalloc((size_t)state_size(d), sizeof(double));
	double *par, *rec, *chk;

	ref_retention_parallel(dp(&p.o), dp(&p.q), dp(&p.k), dp(&p.v), d);
	par = gather_d(&p.o);
	ref_retention_recurrent(dp(&p.o), st_rec, dp(&p.q), dp(&p.k), dp(&p.v), d);
	rec = gather_d(&p.o);
	ref_retention_chunkwise(dp(&p.o), st_chk, dp(&p.q), dp(&p.k), dp(&p.v), d);
	chk = gather_d(&p.o);
	check(c->name, "ref f64 recurrent vs parallel", rec, par, n, 1e-12, 1e-13);
	check(c->name, "ref f64 chunkwise vs parallel", chk, par, n, 1e-12, 1e-13);
	check(c->name, "ref f64 chunkwise vs recurrent final state", st_chk, st_rec,
	      state_size(d), 1e-12, 1e-13);
	free(par), free(rec), free(chk), free(st_rec), free(st_chk);
	problem_free(&p);
}

/* 2 and 3. The float32 forms against the reference and, after GroupNorm, each other. */
static void test_forward_forms(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct problem p = problem_new(c);
	const struct retention_dims *d = &p.d;
	int64_t n = p.rows * c->heads * c->dv, plans;
	float *state = xcalloc((size_t)state_size(d), sizeof(float));
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	double *ref, *par, *rec, *chk, *chk2;

	ref_retention_parallel(dp(&p.o), dp(&p.q), dp(&p.k), dp(&p.v), d);
	ref = gather_d(&p.o);

	retention_parallel_forward(fp(&p.o), fp(&p.q), fp(&p.k), fp(&p.v), d);
	par = gather_f(&p.o);
	EXPECT_TRUE(count_touched(&p.o) == 0, "%s: parallel wrote outside its heads", c->name);
	retention_recurrent_forward(fp(&p.o), state, fp(&p.q), fp(&p.k), fp(&p.v), d);
	rec = gather_f(&p.o);
	EXPECT_TRUE(count_touched(&p.o) == 0, "%s: recurrent wrote outside its heads", c->name);
	retention_chunkwise_forward(ctx, fp(&p.o), saved, NULL, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	chk = gather_f(&p.o);
	EXPECT_TRUE(count_touched(&p.o) == 0, "%s: chunkwise wrote outside its heads", c->name);

	/* A second call reuses the plans and gives the same numbers. */
	plans = matmul_plan_count(ctx);
	retention_chunkwise_forward(ctx, fp(&p.o), saved, NULL, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	chk2 = gather_f(&p.o);
	EXPECT_TRUE(matmul_plan_count(ctx) == plans, "%s: a repeated call created plans",
		    c->name);
	EXPECT_CLOSE(chk2, chk, n, 0.0, 0.0, "chunkwise forward is deterministic");

	/* float32 against float64: dot products of length dk and C, sums over T;
	 * observed max error ~5e-7 of max|O|. */
	check(c->name, "f32 parallel vs ref", par, ref, n, 1e-4, 2e-6);
	check(c->name, "f32 recurrent vs ref", rec, ref, n, 1e-4, 2e-6);
	check(c->name, "f32 chunkwise vs ref", chk, ref, n, 1e-4, 2e-6);

	/* The model only ever sees O through GroupNorm, whose output has unit
	 * variance per (row, head): the absolute 1e-5 is 1e-5 of that scale. */
	groupnorm(par, p.rows, c->heads, c->dv);
	groupnorm(rec, p.rows, c->heads, c->dv);
	groupnorm(chk, p.rows, c->heads, c->dv);
	groupnorm(ref, p.rows, c->heads, c->dv);
	check_abs(c->name, "GN(f32 chunkwise) vs GN(f32 parallel)", chk, par, n, 1e-5, 1e-5);
	check_abs(c->name, "GN(f32 recurrent) vs GN(f32 parallel)", rec, par, n, 1e-5, 1e-5);
	check_abs(c->name, "GN(f32 recurrent) vs GN(f32 chunkwise)", rec, chk, n, 1e-5, 1e-5);
	check_abs(c->name, "GN(f32 chunkwise) vs GN(ref)", chk, ref, n, 1e-5, 1e-5);

	free(ref), free(par), free(rec), free(chk), free(chk2);
	free(state), free(saved), free(scratch);
	problem_free(&p);
}

/* Rows [t0, t0 + len) of every sequence of x, as a new operand of the same layout. */
static struct operand slice_rows(const struct operand *x, int64_t batch, int64_t seq_len,
				 int64_t t0, int64_t len)
{
	struct operand s = operand_new(batch * len, x->width, x->ld - x->width - x->col, x->col);

	for (int64_t b = 0; b < batch; b++)
		for (int64_t t = 0; t < len; t++) {
			memcpy(s.f + (b * len + t) * s.ld, x->f + (b * seq_len + t0 + t) * x->ld,
			       sizeof(float) * (size_t)x->ld);
			memcpy(s.d + (b * len + t) * s.ld, x->d + (b * seq_len + t0 + t) * x->ld,
			       sizeof(double) * (size_t)x->ld);
		}
	return s;
}

/* A float32 state as float64, for the checks. */
static double *widen(const float *x, int64_t n)
{
	double *w = xmalloc(sizeof(double) * (size_t)n);

	for (int64_t i = 0; i < n; i++)
		w[i] = x[i];
	return w;
}

/*
 * 4. Streaming: the chunkwise form over two halves, carrying the state, equals one
 * pass (the same operations in the same order, so to the last bit in practice); the
 * recurrent form continues from the state after the first half.
 */
static void test_streaming(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct problem p = problem_new(c);
	struct retention_dims half = p.d;
	int64_t t2 = c->seq_len / 2, ns = state_size(&p.d), n = p.rows * c->heads * c->dv;
	float *st_full = xcalloc((size_t)ns, sizeof(float));
	float *st_half = xcalloc((size_t)ns, sizeof(float));
	float *st_rec = xmalloc(sizeof(float) * (size_t)ns);
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(&p.d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(&p.d));
	double *st_ref = xcalloc((size_t)ns, sizeof(double));
	double *out_full, *out_ref, *got[2], *want[2], *rec2, *stf, *sth, *str;
	struct operand q[2], k[2], v[2], o[2], o_full[2];

	half.seq_len = t2;
	retention_chunkwise_forward(ctx, fp(&p.o), saved, st_full, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), &p.d);
	out_full = gather_f(&p.o);
	for (int i = 0; i < 2; i++)
		o_full[i] = slice_rows(&p.o, c->batch, c->seq_len, i * t2, t2);
	ref_retention_recurrent(dp(&p.o), st_ref, dp(&p.q), dp(&p.k), dp(&p.v), &p.d);
	out_ref = gather_d(&p.o);

	for (int i = 0; i < 2; i++) {
		q[i] = slice_rows(&p.q, c->batch, c->seq_len, i * t2, t2);
		k[i] = slice_rows(&p.k, c->batch, c->seq_len, i * t2, t2);
		v[i] = slice_rows(&p.v, c->batch, c->seq_len, i * t2, t2);
		o[i] = operand_new(half.batch * t2, p.o.width, p.o.ld - p.o.width - p.o.col,
				   p.o.col);
		retention_chunkwise_forward(ctx, fp(&o[i]), saved, st_half, scratch, fp(&q[i]),
					    fp(&k[i]), fp(&v[i]), &half);
		if (i == 0)
			memcpy(st_rec, st_half, sizeof(float) * (size_t)ns);
		got[i] = gather_f(&o[i]);
		want[i] = gather_f(&o_full[i]);
	}
	retention_recurrent_forward(fp(&o[1]), st_rec, fp(&q[1]), fp(&k[1]), fp(&v[1]), &half);
	rec2 = gather_f(&o[1]);
	stf = widen(st_full, ns);
	sth = widen(st_half, ns);
	str = widen(st_rec, ns);

	check(c->name, "stream chunkwise half 1 vs one pass", got[0], want[0], n / 2, 1e-6, 1e-7);
	check(c->name, "stream chunkwise half 2 vs one pass", got[1], want[1], n / 2, 1e-6, 1e-7);
	check(c->name, "stream final state, halves vs one pass", sth, stf, ns, 1e-6, 1e-7);
	check(c->name, "stream recurrent half 2 vs chunkwise one pass", rec2, want[1], n / 2,
	      1e-4, 2e-6);
	check(c->name, "stream recurrent final state vs chunkwise", str, stf, ns, 1e-4, 2e-6);
	check(c->name, "chunkwise one pass vs ref", out_full, out_ref, n, 1e-4, 2e-6);
	check(c->name, "chunkwise final state vs ref recurrent", stf, st_ref, ns, 1e-4, 2e-6);

	for (int i = 0; i < 2; i++) {
		operand_free(&q[i]);
		operand_free(&k[i]);
		operand_free(&v[i]);
		operand_free(&o[i]);
		operand_free(&o_full[i]);
		free(got[i]), free(want[i]);
	}
	free(out_full), free(out_ref), free(rec2), free(stf), free(sth), free(str), free(st_ref);
	free(st_full), free(st_half), free(st_rec), free(saved), free(scratch);
	problem_free(&p);
}

/* L = sum(O .* W) through the float64 parallel reference. */
static double objective(struct problem *p)
{
	double l = 0.0;

	ref_retention_parallel(dp(&p->o), dp(&p->q), dp(&p->k), dp(&p->v), &p->d);
	for (int64_t r = 0; r < p->rows; r++)
		for (int64_t j = 0; j < p->o.width; j++)
			l += p->o.d[r * p->o.ld + p->o.col + j] *
			     p->dout.d[r * p->dout.ld + p->dout.col + j];
	return l;
}

/*
 * Central differences on a sample of entries of x. L is linear in each single
 * entry of Q, K or V (O is trilinear), so the difference quotient has no
 * truncation error and a large step keeps round-off small.
 */
static void finite_diff(const char *cfg_name, const char *what, struct problem *p,
			struct operand *x, const struct operand *grad_f,
			const struct operand *grad_d, uint64_t stream)
{
	enum { SAMPLES = 24 };
	const double eps = 1e-2;
	double fd[SAMPLES], an_d[SAMPLES], an_f[SAMPLES];
	char label[128];

	for (int s = 0; s < SAMPLES; s++) {
		int64_t r = (int64_t)(rng_uniform(9, stream, 2 * s) * x->rows);
		int64_t j = (int64_t)(rng_uniform(9, stream, 2 * s + 1) * x->width);
		int64_t i = r * x->ld + x->col + j;
		double keep = x->d[i], lp, lm;

		x->d[i] = keep + eps;
		lp = objective(p);
		x->d[i] = keep - eps;
		lm = objective(p);
		x->d[i] = keep;
		fd[s] = (lp - lm) / (2 * eps);
		an_d[s] = grad_d->d[i];
		an_f[s] = grad_f->f[i];
	}
	snprintf(label, sizeof(label), "%s vs central differences", what);
	check(cfg_name, label, an_d, fd, SAMPLES, 1e-8, 1e-10);
	snprintf(label, sizeof(label), "f32 chunkwise %s vs central differences", what);
	check(cfg_name, label, an_f, fd, SAMPLES, 1e-4, 3e-6);
}

/* dQ, dK, dV shaped like p's Q, K, V. */
static void grad_operands(const struct problem *p, const struct cfg *c, struct operand *dq,
			  struct operand *dk, struct operand *dv)
{
	*dq = operand_new(p->rows, p->q.width, c->pad[0], c->col[0]);
	*dk = operand_new(p->rows, p->k.width, c->pad[1], c->col[1]);
	*dv = operand_new(p->rows, p->v.width, c->pad[2], c->col[2]);
}

/* 5. The chunkwise backward. */
static void test_backward(struct kernels_ctx *ctx, const struct cfg *c, bool with_fd)
{
	struct problem p = problem_new(c);
	const struct retention_dims *d = &p.d;
	struct operand dq, dk, dv;
	struct operand *g[3] = {&dq, &dk, &dv};
	const char *names[3] = {"dQ", "dK", "dV"};
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	double *chk[3], *par[3], *ref[3];
	char label[64];

	grad_operands(&p, c, &dq, &dk, &dv);
	/* dq, dk, dv are overwritten: start them from NaN, which any read would spread. */
	for (int i = 0; i < 3; i++)
		operand_poison_f(g[i]);

	ref_retention_parallel_backward(dp(&dq), dp(&dk), dp(&dv), dp(&p.dout), dp(&p.q),
					dp(&p.k), dp(&p.v), d);
	retention_parallel_backward(fp(&dq), fp(&dk), fp(&dv), fp(&p.dout), fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	for (int i = 0; i < 3; i++) {
		par[i] = gather_f(g[i]);
		ref[i] = gather_d(g[i]);
	}
	for (int i = 0; i < 3; i++)
		operand_poison_f(g[i]);
	retention_chunkwise_forward(ctx, fp(&p.o), saved, NULL, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	retention_chunkwise_backward(ctx, fp(&dq), fp(&dk), fp(&dv), scratch, fp(&p.dout),
				     fp(&p.q), fp(&p.k), fp(&p.v), saved, NULL, d);
	for (int i = 0; i < 3; i++) {
		int64_t n = g[i]->rows * g[i]->width;

		chk[i] = gather_f(g[i]);
		EXPECT_TRUE(count_touched(g[i]) == 0, "%s: backward wrote outside the heads of %s",
			    c->name, names[i]);
		snprintf(label, sizeof(label), "f32 chunkwise %s vs ref", names[i]);
		check(c->name, label, chk[i], ref[i], n, 1e-4, 3e-6);
		snprintf(label, sizeof(label), "f32 chunkwise %s vs f32 parallel", names[i]);
		check(c->name, label, chk[i], par[i], n, 1e-4, 3e-6);
		snprintf(label, sizeof(label), "f32 parallel %s vs ref", names[i]);
		check(c->name, label, par[i], ref[i], n, 1e-4, 3e-6);
	}
	if (with_fd) {
		finite_diff(c->name, "dQ", &p, &p.q, &dq, &dq, 21);
		finite_diff(c->name, "dK", &p, &p.k, &dk, &dk, 22);
		finite_diff(c->name, "dV", &p, &p.v, &dv, &dv, 23);
	}
	for (int i = 0; i < 3; i++) {
		free(chk[i]), free(par[i]), free(ref[i]);
		operand_free(g[i]);
	}
	free(saved), free(scratch);
	problem_free(&p);
}

/* Normwise relative error max|got - want| / max|want|. */
static double normwise(const double *got, const double *want, int64_t n)
{
	double err = 0.0;

	for (int64_t i = 0; i < n; i++)
		err = fmax(err, fabs(got[i] - want[i]));
	return err / max_abs(want, n);
}

/*
 * 6. bf16 products (each chunk's operands converted once and read by several
 * products, the state S and its gradient G read rounded too): chunkwise forward and
 * backward against the float64 reference, normwise.
 * bf16 keeps 8 significant bits, so a rounding is up to 2^-9 = 2e-3 relative and the
 * chunk's products chain two or three of them; the limit is 1e-2, 2.6x the largest
 * error observed (3.8e-3). Passing q's copy where k's belongs fails it.
 */
static void test_bf16_chunkwise(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct problem p = problem_new(c);
	const struct retention_dims *d = &p.d;
	struct operand dq, dk, dv;
	struct operand *g[3] = {&dq, &dk, &dv};
	const char *names[4] = {"dQ", "dK", "dV", "O"};
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	double *ref[4], *got[4];
	char err[256];

	grad_operands(&p, c, &dq, &dk, &dv);
	if (kernels_ctx_set_bf16(ctx, true, err, sizeof(err))) {
		printf("skip bf16 chunkwise: %s\n", err);
		goto out;
	}
	ref_retention_parallel(dp(&p.o), dp(&p.q), dp(&p.k), dp(&p.v), d);
	ref[3] = gather_d(&p.o);
	ref_retention_parallel_backward(dp(&dq), dp(&dk), dp(&dv), dp(&p.dout), dp(&p.q),
					dp(&p.k), dp(&p.v), d);
	for (int i = 0; i < 3; i++) {
		ref[i] = gather_d(g[i]);
		operand_poison_f(g[i]);
	}
	retention_chunkwise_forward(ctx, fp(&p.o), saved, NULL, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	got[3] = gather_f(&p.o);
	retention_chunkwise_backward(ctx, fp(&dq), fp(&dk), fp(&dv), scratch, fp(&p.dout),
				     fp(&p.q), fp(&p.k), fp(&p.v), saved, NULL, d);
	for (int i = 0; i < 3; i++) {
		got[i] = gather_f(g[i]);
		EXPECT_TRUE(count_touched(g[i]) == 0, "%s: bf16 backward wrote outside the heads of %s",
			    c->name, names[i]);
	}
	for (int i = 0; i < 4; i++) {
		int64_t n = i == 3 ? p.rows * c->heads * c->dv : g[i]->rows * g[i]->width;
		double rel = normwise(got[i], ref[i], n);

		printf("  %s: bf16 chunkwise %s vs ref: normwise rel %.3g (limit 1e-2)\n", c->name,
		       names[i], rel);
		EXPECT_TRUE(rel <= 1e-2, "%s: bf16 chunkwise %s normwise error %.3g", c->name,
			    names[i], rel);
		free(got[i]), free(ref[i]);
	}
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, false, err, sizeof(err)) == 0, "bf16 off");
out:
	for (int i = 0; i < 3; i++)
		operand_free(g[i]);
	free(saved), free(scratch);
	problem_free(&p);
}

/* scale[i] = max |want| over the values of i's head: x is (rows, heads, dv). */
/* What every chunkwise pass wrote, from one set of operands. */
enum { PASS_OUTPUTS = 8 };
struct pass_outputs {
	float *x[PASS_OUTPUTS];
	int64_t n[PASS_OUTPUTS];
};

static void keep_output(struct pass_outputs *r, int i, const float *x, int64_t n)
{
	r->x[i] = xmalloc(sizeof(float) * (size_t)n);
	memcpy(r->x[i], x, sizeof(float) * (size_t)n);
	r->n[i] = n;
}

/* The one-pass forward from state s0, the context-parallel passes with s0 coming in
 * and, as the gradient from later pieces, going out; v and dout: float32, not read
 * when d's v16 and dout16 are set. */
static struct pass_outputs run_passes(struct kernels_ctx *ctx, struct problem *p,
				      const struct retention_dims *d, const float *v,
				      const float *dout, const float *s0)
{
	const int64_t ns = state_size(d);
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	float *state = xmalloc(sizeof(float) * (size_t)ns);
	struct operand dq, dk, dv;
	struct pass_outputs r;

	grad_operands(p, &p->c, &dq, &dk, &dv);
	memcpy(state, s0, sizeof(float) * (size_t)ns);
	retention_chunkwise_forward(ctx, fp(&p->o), saved, state, scratch, fp(&p->q), fp(&p->k),
				    v, d);
	keep_output(&r, 0, p->o.f, (int64_t)p->o.n);
	keep_output(&r, 1, state, ns);
	retention_chunkwise_states(ctx, saved, state, scratch, fp(&p->k), v, d);
	keep_output(&r, 2, state, ns);
	retention_chunkwise_output(ctx, fp(&p->o), saved, s0, scratch, fp(&p->q), fp(&p->k), v, d);
	keep_output(&r, 3, p->o.f, (int64_t)p->o.n);
	retention_chunkwise_state_grad(ctx, state, scratch, dout, fp(&p->q), d);
	keep_output(&r, 4, state, ns);
	retention_chunkwise_backward(ctx, fp(&dq), fp(&dk), fp(&dv), scratch, dout, fp(&p->q),
				     fp(&p->k), v, saved, s0, d);
	keep_output(&r, 5, dq.f, (int64_t)dq.n);
	keep_output(&r, 6, dk.f, (int64_t)dk.n);
	keep_output(&r, 7, dv.f, (int64_t)dv.n);
	operand_free(&dq), operand_free(&dk), operand_free(&dv);
	free(saved), free(scratch), free(state);
	return r;
}

/* x's whole buffer rounded to bf16, in its layout; *at: where its heads start. */
static uint16_t *bf16_buffer(const struct operand *x, const uint16_t **at)
{
	uint16_t *b = xmalloc(sizeof(uint16_t) * x->n);

	bf16_from_f32(b, x->f, (int64_t)x->n);
	*at = b + x->col;
	return b;
}

/*
 * 7. V and dO held as bf16 alone (dims v16 and dout16; their float32 arrays not
 * read): on bf16 products every chunkwise pass writes the same bits as from the
 * float32 arrays they round, since each chunk's copy is then the same.
 */
static void test_bf16_operands(struct kernels_ctx *ctx, const struct cfg *c)
{
	static const char *const names[PASS_OUTPUTS] = {
		"forward O", "forward state", "states' summary", "output O",
		"state gradient", "backward dQ", "backward dK", "backward dV",
	};
	struct problem p = problem_new(c);
	struct retention_dims d16 = p.d;
	const int64_t ns = state_size(&p.d);
	float *s0 = xmalloc(sizeof(float) * (size_t)ns);
	uint16_t *v16, *do16;
	struct pass_outputs f32, b16;
	char err[256];

	if (kernels_ctx_set_bf16(ctx, true, err, sizeof(err))) {
		printf("skip bf16 operands: %s\n", err);
		free(s0);
		problem_free(&p);
		return;
	}
	for (int64_t i = 0; i < ns; i++)
		s0[i] = (float)(rng_uniform(7, 5, (uint64_t)i) - 0.5);
	v16 = bf16_buffer(&p.v, &d16.v16);
	do16 = bf16_buffer(&p.dout, &d16.dout16);
	f32 = run_passes(ctx, &p, &p.d, fp(&p.v), fp(&p.dout), s0);
	operand_poison_f(&p.v);
	operand_poison_f(&p.dout);
	/* the float32 arrays, poisoned, are given too: read, they would spread NaN */
	b16 = run_passes(ctx, &p, &d16, fp(&p.v), fp(&p.dout), s0);
	for (int i = 0; i < PASS_OUTPUTS; i++) {
		EXPECT_TRUE(f32.n[i] == b16.n[i] &&
				    memcmp(f32.x[i], b16.x[i], sizeof(float) * (size_t)f32.n[i]) == 0,
			    "%s: %s with V and dO held as bf16 differs from float32 V and dO",
			    c->name, names[i]);
		free(f32.x[i]), free(b16.x[i]);
	}
	EXPECT_TRUE(kernels_ctx_set_bf16(ctx, false, err, sizeof(err)) == 0, "bf16 off");
	free(s0), free(v16), free(do16);
	problem_free(&p);
}

static double *head_scale(const double *want, int64_t rows, int64_t heads, int64_t dv)
{
	double *sc = xmalloc(sizeof(double) * (size_t)(rows * heads * dv));

	for (int64_t h = 0; h < heads; h++) {
		double m = 0.0;

		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < dv; j++)
				m = fmax(m, fabs(want[(r * heads + h) * dv + j]));
		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < dv; j++)
				sc[(r * heads + h) * dv + j] = m;
	}
	return sc;
}

/*
 * 7. Heads that decay by less than float resolves per token, gamma = 1 - 2^-25 and
 * on from global head 20, over a sequence long enough for their decay to matter
 * (head 20: gamma^8192 = 1 - 2.4e-4). Recurrent in one call, recurrent token by token
 * (as retnet-generate runs it, the state rounded to float after every token) and
 * chunkwise against the float64 recurrent reference, and recurrent against
 * chunkwise, each head normwise: |got - want| <= limit * max over the head |want|.
 * A recurrent form that multiplies a float state by gamma rounded to float (1.0f
 * from head 20 on) is off by 1.2e-4 of the head's scale here and fails every
 * recurrent check; the limits are 4-8x the largest errors seen (LIMITS below).
 */
static void test_recurrent_decay(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct problem p = problem_new(c);
	const struct retention_dims *d = &p.d;
	struct retention_dims tok = p.d;
	int64_t n = p.rows * c->heads * c->dv, ns = state_size(d);
	float *st_one = xcalloc((size_t)ns, sizeof(float));
	float *st_tok = xcalloc((size_t)ns, sizeof(float));
	float *st_chk = xcalloc((size_t)ns, sizeof(float));
	float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	double *st_ref = xcalloc((size_t)ns, sizeof(double));
	double *ref, *one, *each, *chk, *sc, *ssc, *s_one, *s_tok, *s_chk;
	char label[128];

	ref_retention_recurrent(dp(&p.o), st_ref, dp(&p.q), dp(&p.k), dp(&p.v), d);
	ref = gather_d(&p.o);
	retention_recurrent_forward(fp(&p.o), st_one, fp(&p.q), fp(&p.k), fp(&p.v), d);
	one = gather_f(&p.o);
	/* One token per call: rows b * T + t of every sequence b, seen as a batch of
	 * sequences of length 1 whose rows are T rows apart. */
	tok.seq_len = 1;
	tok.ldq = c->seq_len * d->ldq;
	tok.ldk = c->seq_len * d->ldk;
	tok.ldv = c->seq_len * d->ldv;
	tok.ldo = c->seq_len * d->ldo;
	for (int64_t t = 0; t < c->seq_len; t++)
		retention_recurrent_forward(fp(&p.o) + t * d->ldo, st_tok, fp(&p.q) + t * d->ldq,
					    fp(&p.k) + t * d->ldk, fp(&p.v) + t * d->ldv, &tok);
	each = gather_f(&p.o);
	retention_chunkwise_forward(ctx, fp(&p.o), saved, st_chk, scratch, fp(&p.q), fp(&p.k),
				    fp(&p.v), d);
	chk = gather_f(&p.o);
	sc = head_scale(ref, p.rows, c->heads, c->dv);
	ssc = head_scale(st_ref, c->batch * c->dk, c->heads, c->dv);
	s_one = widen(st_one, ns);
	s_tok = widen(st_tok, ns);
	s_chk = widen(st_chk, ns);

#define LIMITS "one call 1e-6, token by token 2e-5, chunkwise 1e-5, recurrent vs chunkwise 2e-5"
	printf("  %s: per-head normwise limits: %s\n", c->name, LIMITS);
	snprintf(label, sizeof(label), "%s: f32 recurrent, one call, vs ref", c->name);
	EXPECT_CLOSE_SCALED(one, ref, sc, n, 1e-6, label);
	snprintf(label, sizeof(label), "%s: f32 recurrent, token by token, vs ref", c->name);
	EXPECT_CLOSE_SCALED(each, ref, sc, n, 2e-5, label);
	snprintf(label, sizeof(label), "%s: f32 chunkwise vs ref", c->name);
	EXPECT_CLOSE_SCALED(chk, ref, sc, n, 1e-5, label);
	snprintf(label, sizeof(label), "%s: f32 recurrent, one call, vs f32 chunkwise", c->name);
	EXPECT_CLOSE_SCALED(one, chk, sc, n, 2e-5, label);
	snprintf(label, sizeof(label), "%s: f32 recurrent, token by token, vs f32 chunkwise",
		 c->name);
	EXPECT_CLOSE_SCALED(each, chk, sc, n, 2e-5, label);
	snprintf(label, sizeof(label), "%s: final state, recurrent one call, vs ref", c->name);
	EXPECT_CLOSE_SCALED(s_one, st_ref, ssc, ns, 1e-6, label);
	snprintf(label, sizeof(label), "%s: final state, token by token, vs ref", c->name);
	EXPECT_CLOSE_SCALED(s_tok, st_ref, ssc, ns, 2e-5, label);
	snprintf(label, sizeof(label), "%s: final state, chunkwise, vs ref", c->name);
	EXPECT_CLOSE_SCALED(s_chk, st_ref, ssc, ns, 1e-5, label);
#undef LIMITS

	free(ref), free(one), free(each), free(chk), free(sc), free(ssc);
	free(s_one), free(s_tok), free(s_chk), free(st_ref);
	free(st_one), free(st_tok), free(st_chk), free(saved), free(scratch);
	problem_free(&p);
}

static void test_gamma(void)
{
	double got[8], want[8];

	for (int g = 0; g < 8; g++) {
		got[g] = retention_gamma(g);
		want[g] = ref_retention_gamma(g);
	}
	EXPECT_CLOSE(got, want, 8, 0.0, 0.0, "gamma_h = 1 - 2^(-5-h)");
	EXPECT_TRUE(retention_gamma(0) == 1.0 - 1.0 / 32, "gamma_0 = %.17g",
		    retention_gamma(0));
}

int main(void)
{
	/*             name          B   T    H  off dk   dv   C    pad{q,k,v,o}   col */
	const struct cfg ref_cfgs[] = {
		{"ref T=24,C=8,off=2", 2, 24, 3, 2, 8, 16, 8, {0}, {0}},
		{"ref T=C=8", 1, 8, 2, 1, 8, 8, 8, {0}, {0}},
		{"ref T=40,C=8,off=5", 1, 40, 2, 5, 4, 12, 8, {0}, {0}},
	};
	const struct cfg f32_cfgs[] = {
		{"tiny", 2, 32, 4, 0, 16, 32, 8, {0}, {0}},
		{"tiny T=24", 2, 24, 4, 0, 16, 32, 8, {0}, {0}},
		{"T=C=16", 2, 16, 3, 1, 16, 32, 16, {0}, {0}},
		{"T=96,C=16,off=1", 2, 96, 3, 1, 32, 64, 16, {0}, {0}},
		{"bench-like", 1, 256, 2, 0, 128, 256, 128, {0}, {0}},
	};
	/*
	 * The model's layout: Q, K in rows of width d (a rank's heads at its column
	 * offset), V in rows of width 2d, here one TP rank of two owning heads 2..3
	 * of 4; O with an odd padding.
	 */
	const struct cfg strided = {
		"strided tp-rank-1", 2, 48, 2, 2, 16, 32, 8,
		{0, 0, 0, 5}, {2 * 16, 2 * 16, 2 * 32, 3},
	};
	const struct cfg fd_cfg = {"fd T=24,C=8,off=1", 2, 24, 2, 1, 8, 16, 8, {0}, {0}};
	/* Global heads 0..23, and 20..23 as the last of several tensor-parallel ranks;
	 * C = 64 keeps gamma^C of every head exact in float. */
	const struct cfg decay_cfgs[] = {
		{"decay H=24,T=8192", 2, 8192, 24, 0, 8, 8, 64, {0}, {0}},
		{"decay H=4,off=20,T=8192", 1, 8192, 4, 20, 8, 8, 64, {0}, {0}},
	};
	struct kernels_ctx *ctx = kernels_ctx_init();
	double t0 = omp_get_wtime();

	printf("OpenMP threads: %d\n", omp_get_max_threads());
	test_gamma();
	for (size_t i = 0; i < sizeof(ref_cfgs) / sizeof(ref_cfgs[0]); i++)
		test_reference_forms(&ref_cfgs[i]);
	for (size_t i = 0; i < sizeof(f32_cfgs) / sizeof(f32_cfgs[0]); i++)
		test_forward_forms(ctx, &f32_cfgs[i]);
	test_forward_forms(ctx, &strided);
	test_streaming(ctx, &f32_cfgs[0]);
	test_streaming(ctx, &f32_cfgs[3]);
	test_streaming(ctx, &strided);
	test_backward(ctx, &f32_cfgs[0], false);
	test_backward(ctx, &f32_cfgs[3], false);
	test_backward(ctx, &f32_cfgs[4], false);
	test_backward(ctx, &strided, true);
	test_backward(ctx, &fd_cfg, true);
	test_bf16_chunkwise(ctx, &strided);
	test_bf16_chunkwise(ctx, &f32_cfgs[3]);
	test_bf16_chunkwise(ctx, &f32_cfgs[4]);
	test_bf16_operands(ctx, &strided);
	test_bf16_operands(ctx, &f32_cfgs[3]);
	for (size_t i = 0; i < sizeof(decay_cfgs) / sizeof(decay_cfgs[0]); i++)
		test_recurrent_decay(ctx, &decay_cfgs[i]);
	printf("elapsed %.2f s\n", omp_get_wtime() - t0);
	kernels_ctx_free(ctx);
	return test_finish();
}
