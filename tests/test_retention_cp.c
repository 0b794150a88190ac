/*
 * Retention under context parallelism: a sequence cut into cp pieces and run piece
 * by piece through the split kernels and the scans, as cp ranks would run it with
 * an all-gather between the passes, is the whole sequence.
 *
 *   1. retention_decay: pow in double, 0 below 2^-300.
 *   2. The scans alone: against the recurrences they unroll (S_in(p+1) =
 *      gamma^T_p S_in(p) + summary(p), and backwards), against each other by the
 *      adjoint identity <scan_states(x), y> = <x, scan_grads(y)>, and with pieces so
 *      long that the decays leave the float and the double range.
 *   3. Forward: states -> scan -> output, for cp = 1 .. 4, against the one-pass
 *      chunkwise forward (float32), the float64 parallel reference, and after
 *      GroupNorm; every piece's summary, incoming state and saved states against
 *      float64 references; cp = 1 bit for bit the one-pass forward.
 *   4. Backward: state_grad -> reverse scan -> backward(ds_out): dQ, dK, dV of every
 *      piece against the slice of the one-pass chunkwise backward and of the float64
 *      parallel backward; ds_in and ds_out against the float64 state gradient of the
 *      piece and of the rest of the sequence, which central differences check.
 *
 * Cases: T not a power of two, batch 2, heads at a column offset inside wider rows
 * with head_offset > 0 (a tensor-parallel rank), pieces of several chunks and of one
 * chunk, and long pieces of small-gamma heads (gamma_0^4096 = 2^-187 < FLT_MIN).
 *
 * Tolerances are |got - want| <= rtol |want| + a max|want|, as in test_retention:
 * float32 against float64 rtol 1e-4, a = 2e-6 (forward) or 3e-6 (backward), after
 * GroupNorm 1e-5 absolute; the pieces against the one-pass float32 kernels, which
 * differ in how the state crossing a piece boundary is rounded and so by up to the
 * sum of two float32 errors, rtol 1e-5, a = 1e-6. The largest errors seen are 5-20x
 * below these (every line prints its own); the scans, exact in double and rounded
 * once, are held to rtol 1e-6.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/retention_ref.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/retention.h"
#include "trainer/kernels/retention_cp.h"

struct cfg {
	const char *name;
	int64_t batch, seq_len, heads, head_offset, dk, dv, chunk;
	int64_t col_qk, col_v; /* column of the first head in rows of Q/K and of V/O */
	bool with_ref;         /* float64 parallel references (O(T^2): short T only) */
};

/* A (rows, ld) matrix in float and the same values in double. */
struct mat {
	float *f;
	double *d;
	int64_t rows, ld;
};

static struct mat mat_new(int64_t rows, int64_t ld)
{
	struct mat m = {.rows = rows, .ld = ld};

	m.f = xcalloc((size_t)(rows * ld), sizeof(float));
	m.d = xcalloc((size_t)(rows * ld), sizeof(double));
	return m;
}

static void mat_free(struct mat *m)
{
	free(m->f);
	free(m->d);
}

/* Uniform in (-scale, scale), float-exact in both copies. */
static void mat_random(struct mat *m, uint64_t stream, double scale)
{
	for (int64_t i = 0; i < m->rows * m->ld; i++) {
		float x = (float)(scale * (2.0 * rng_uniform(77, stream, (uint64_t)i) - 1.0));

		m->f[i] = x;
		m->d[i] = x;
	}
}

/* Rows [t0, t0 + len) of each of the `batch` sequences of length seq_len. */
static struct mat mat_rows(const struct mat *m, int64_t batch, int64_t seq_len, int64_t t0,
			   int64_t len)
{
	struct mat s = mat_new(batch * len, m->ld);

	for (int64_t b = 0; b < batch; b++) {
		size_t from = (size_t)((b * seq_len + t0) * m->ld), to = (size_t)(b * len * m->ld);

		memcpy(s.f + to, m->f + from, sizeof(float) * (size_t)(len * m->ld));
		memcpy(s.d + to, m->d + from, sizeof(double) * (size_t)(len * m->ld));
	}
	return s;
}

/* The heads' columns [col, col + width) of rows [r0, r0 + rows) as dense doubles,
 * from the float (f = true) or the double copy. */
static double *cols(const struct mat *m, int64_t r0, int64_t rows, int64_t col, int64_t width,
		    bool f)
{
	double *x = xmalloc(sizeof(double) * (size_t)(rows * width));

	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < width; j++) {
			int64_t i = (r0 + r) * m->ld + col + j;

			x[r * width + j] = f ? (double)m->f[i] : m->d[i];
		}
	return x;
}

static double *widen(const float *x, int64_t n)
{
	double *w = xmalloc(sizeof(double) * (size_t)n);

	for (int64_t i = 0; i < n; i++)
		w[i] = x[i];
	return w;
}

static double max_abs(const double *x, int64_t n)
{
	double m = 0.0;

	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

/* EXPECT_CLOSE with atol = a * max|want|, the tolerances in the label. */
static void check(const char *name, const char *what, const double *got, const double *want,
		  int64_t n, double rtol, double a)
{
	char label[256];

	snprintf(label, sizeof(label), "%s: %s (rtol %.0e, atol %.0e*max|want|=%.2g)", name, what,
		 rtol, a, a * max_abs(want, n));
	EXPECT_CLOSE(got, want, n, rtol, a * max_abs(want, n), label);
}

/* Per row and head: LayerNorm over the head's dv lanes, no gain or bias, eps 1e-5,
 * in float64. In place; x is (rows, heads, dv). */
static void groupnorm(double *x, int64_t rows, int64_t heads, int64_t dv)
{
	for (int64_t r = 0; r < rows * heads; r++) {
		double *g = x + r * dv, mean = 0.0, var = 0.0;

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

/* ---------------------------------------------------------------------------------
 * 1 and 2. retention_decay and the scans.
 */

static void test_decay(void)
{
	double got[6], want[6];
	int64_t h[6] = {0, 0, 3, 20, 0, 0}, n[6] = {0, 1, 100, 8192, 4096, 20000};

	for (int i = 0; i < 6; i++) {
		got[i] = retention_decay(h[i], n[i]);
		want[i] = pow(ref_retention_gamma(h[i]), (double)n[i]);
	}
	/* gamma_0^20000 = 2^-916: below the cut, so 0 */
	want[5] = 0.0;
	EXPECT_CLOSE(got, want, 6, 1e-15, 0.0, "retention_decay = pow(gamma, n), 0 below 2^-300");
	EXPECT_TRUE(retention_decay(0, 4096) < FLT_MIN && retention_decay(0, 4096) > 0x1p-300,
		    "gamma_0^4096 = %g is below float's range and kept", retention_decay(0, 4096));
}

/*
 * Random summaries of cp pieces of piece_len tokens: scan_states against the forward
 * recurrence, scan_grads against the backward one (float64), and the adjoint identity.
 */
static void test_scans(const char *name, int64_t cp, int64_t piece_len, int64_t heads,
		       int64_t head_offset)
{
	struct retention_dims d = {
		.batch = 2, .seq_len = piece_len, .heads = heads, .head_offset = head_offset,
		.dk = 4, .dv = 6, .chunk = 1,
	};
	int64_t ns, pairs = d.batch * d.heads;
	float *x, *y, *out;
	double *run, *got, lhs = 0.0, rhs = 0.0;
	char label[160];

	d.ldq = d.ldk = heads * d.dk;
	d.ldv = d.ldo = heads * d.dv;
	ns = retention_cp_state_floats(&d);
	EXPECT_TRUE(ns == d.batch * d.heads * d.dk * d.dv, "state floats %lld", (long long)ns);
	x = xmalloc(sizeof(float) * (size_t)(cp * ns));
	y = xmalloc(sizeof(float) * (size_t)(cp * ns));
	out = xmalloc(sizeof(float) * (size_t)ns);
	run = xcalloc((size_t)ns, sizeof(double));
	for (int64_t i = 0; i < cp * ns; i++) {
		x[i] = (float)(2.0 * rng_uniform(5, 1, (uint64_t)i) - 1.0);
		y[i] = (float)(2.0 * rng_uniform(5, 2, (uint64_t)i) - 1.0);
	}

	/* Forward: run = S_in(p); S_in(p+1) = gamma^T_p S_in(p) + x[p]. */
	for (int64_t p = 0; p <= cp; p++) {
		retention_cp_scan_states(out, x, p, cp, NULL, &d);
		got = widen(out, ns);
		snprintf(label, sizeof(label), "scan_states piece %lld of %lld vs recurrence",
			 (long long)p, (long long)cp);
		check(name, label, got, run, ns, 1e-6, 1e-7);
		free(got);
		for (int64_t i = 0; p < cp && i < ns; i++) {
			double g = pow(ref_retention_gamma(head_offset + (i / (d.dk * d.dv)) % heads),
				       (double)piece_len);

			run[i] = g * run[i] + x[p * ns + i];
		}
	}
	/* Backward: run = ds_out(p) = gamma^T_p ds_out(p+1) + y[p+1]. */
	memset(run, 0, sizeof(double) * (size_t)ns);
	for (int64_t p = cp - 1; p >= 0; p--) {
		retention_cp_scan_grads(out, y, p, cp, NULL, &d);
		got = widen(out, ns);
		snprintf(label, sizeof(label), "scan_grads piece %lld of %lld vs recurrence",
			 (long long)p, (long long)cp);
		check(name, label, got, run, ns, 1e-6, 1e-7);
		free(got);
		for (int64_t i = 0; p > 0 && i < ns; i++) {
			double g = pow(ref_retention_gamma(head_offset + (i / (d.dk * d.dv)) % heads),
				       (double)piece_len);

			run[i] = g * run[i] + y[p * ns + i];
		}
		/* <scan_states(x), y> over the pieces equals <x, scan_grads(y)>. */
		for (int64_t i = 0; i < ns; i++)
			rhs += (double)x[p * ns + i] * out[i];
	}
	for (int64_t p = 0; p < cp; p++) {
		retention_cp_scan_states(out, x, p, cp, NULL, &d);
		for (int64_t i = 0; i < ns; i++)
			lhs += (double)out[i] * y[p * ns + i];
	}
	printf("     %s: adjoint <scan_states x, y> = %.9g, <x, scan_grads y> = %.9g\n", name,
	       lhs, rhs);
	EXPECT_TRUE(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + (double)(pairs * cp)),
		    "%s: adjoint identity %.9g vs %.9g", name, lhs, rhs);
	free(x), free(y), free(out), free(run);
}

/* ---------------------------------------------------------------------------------
 * 3 and 4. The split kernels on the pieces of a sequence.
 */

struct problem {
	struct cfg c;
	struct retention_dims d; /* the whole sequence */
	struct mat q, k, v, dout;
	int64_t rows, ns;        /* rows of the whole; floats of one state */
};

static struct problem problem_new(const struct cfg *c)
{
	struct problem p = {.c = *c, .rows = c->batch * c->seq_len};
	int64_t ldqk = c->col_qk + c->heads * c->dk + 3, ldv = c->col_v + c->heads * c->dv + 5;

	p.q = mat_new(p.rows, ldqk);
	p.k = mat_new(p.rows, ldqk);
	p.v = mat_new(p.rows, ldv);
	p.dout = mat_new(p.rows, ldv);
	mat_random(&p.q, 1, 1.0);
	mat_random(&p.k, 2, 1.0 / sqrt((double)c->dk));
	mat_random(&p.v, 3, 1.0);
	mat_random(&p.dout, 4, 1.0);
	p.d = (struct retention_dims){
		.batch = c->batch, .seq_len = c->seq_len, .heads = c->heads,
		.head_offset = c->head_offset, .dk = c->dk, .dv = c->dv, .chunk = c->chunk,
		.ldq = ldqk, .ldk = ldqk, .ldv = ldv, .ldo = ldv,
	};
	p.ns = retention_cp_state_floats(&p.d);
	return p;
}

static void problem_free(struct problem *p)
{
	mat_free(&p->q);
	mat_free(&p->k);
	mat_free(&p->v);
	mat_free(&p->dout);
}

/* Float pointers at the first head's column. */
static float *fq(const struct mat *m, int64_t col)
{
	return m->f + col;
}

static double *dq_(const struct mat *m, int64_t col)
{
	return m->d + col;
}

/* The whole sequence through the one-pass kernels and the float64 references. */
struct whole {
	struct mat o, dq, dk, dv;      /* float32 chunkwise; .d: float64 references */
	float *saved;                  /* (batch, heads, T/C, dk, dv) */
	float *final;                  /* the state after the sequence */
};

static struct whole whole_run(struct kernels_ctx *ctx, struct problem *p)
{
	const struct cfg *c = &p->c;
	const struct retention_dims *d = &p->d;
	struct whole w;
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	float *saved2 = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));

	w.o = mat_new(p->rows, p->v.ld);
	w.dq = mat_new(p->rows, p->q.ld);
	w.dk = mat_new(p->rows, p->k.ld);
	w.dv = mat_new(p->rows, p->v.ld);
	w.saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
	w.final = xcalloc((size_t)p->ns, sizeof(float));
	retention_chunkwise_forward(ctx, fq(&w.o, c->col_v), w.saved, NULL, scratch,
				    fq(&p->q, c->col_qk), fq(&p->k, c->col_qk),
				    fq(&p->v, c->col_v), d);
	retention_chunkwise_backward(ctx, fq(&w.dq, c->col_qk), fq(&w.dk, c->col_qk),
				     fq(&w.dv, c->col_v), scratch, fq(&p->dout, c->col_v),
				     fq(&p->q, c->col_qk), fq(&p->k, c->col_qk),
				     fq(&p->v, c->col_v), w.saved, NULL, d);
	/* The final state, from a streaming call that starts at zero (O is the same). */
	{
		struct mat o2 = mat_new(p->rows, p->v.ld);

		retention_chunkwise_forward(ctx, fq(&o2, c->col_v), saved2, w.final, scratch,
					    fq(&p->q, c->col_qk), fq(&p->k, c->col_qk),
					    fq(&p->v, c->col_v), d);
		mat_free(&o2);
	}
	if (c->with_ref) {
		ref_retention_parallel(dq_(&w.o, c->col_v), dq_(&p->q, c->col_qk),
				       dq_(&p->k, c->col_qk), dq_(&p->v, c->col_v), d);
		ref_retention_parallel_backward(dq_(&w.dq, c->col_qk), dq_(&w.dk, c->col_qk),
						dq_(&w.dv, c->col_v), dq_(&p->dout, c->col_v),
						dq_(&p->q, c->col_qk), dq_(&p->k, c->col_qk),
						dq_(&p->v, c->col_v), d);
	} else {
		/* The float64 chunkwise form, O(T C) (test_retention checks it against
		 * the parallel one); no float64 gradients. */
		ref_retention_chunkwise(dq_(&w.o, c->col_v), NULL, dq_(&p->q, c->col_qk),
					dq_(&p->k, c->col_qk), dq_(&p->v, c->col_v), d);
	}
	free(scratch), free(saved2);
	return w;
}

static void whole_free(struct whole *w)
{
	mat_free(&w->o);
	mat_free(&w->dq);
	mat_free(&w->dk);
	mat_free(&w->dv);
	free(w->saved), free(w->final);
}

/* The float64 recurrent state after rows [0, len) of every sequence of p. */
static double *ref_state_after(const struct problem *p, int64_t len)
{
	double *st = xcalloc((size_t)p->ns, sizeof(double));
	struct retention_dims d = p->d;
	struct mat q, k, v, o;

	if (len == 0)
		return st;
	q = mat_rows(&p->q, p->c.batch, p->c.seq_len, 0, len);
	k = mat_rows(&p->k, p->c.batch, p->c.seq_len, 0, len);
	v = mat_rows(&p->v, p->c.batch, p->c.seq_len, 0, len);
	o = mat_new(p->c.batch * len, p->v.ld);
	d.seq_len = len;
	ref_retention_recurrent(dq_(&o, p->c.col_v), st, dq_(&q, p->c.col_qk),
				dq_(&k, p->c.col_qk), dq_(&v, p->c.col_v), &d);
	mat_free(&q), mat_free(&k), mat_free(&v), mat_free(&o);
	return st;
}

/* The float64 gradient w.r.t. the state entering row t0, through rows [t0, T). */
static double *ref_grad_at(const struct problem *p, int64_t t0)
{
	int64_t len = p->c.seq_len - t0;
	double *ds = xcalloc((size_t)p->ns, sizeof(double));
	struct retention_dims d = p->d;
	struct mat q, dout;

	if (len == 0)
		return ds;
	q = mat_rows(&p->q, p->c.batch, p->c.seq_len, t0, len);
	dout = mat_rows(&p->dout, p->c.batch, p->c.seq_len, t0, len);
	d.seq_len = len;
	ref_retention_state_grad(ds, dq_(&dout, p->c.col_v), dq_(&q, p->c.col_qk), &d);
	mat_free(&q), mat_free(&dout);
	return ds;
}

/* Saved state of chunk `chunk` of pair pr, in a buffer of nchunks per pair. */
static const float *state_at(const float *saved, int64_t pr, int64_t chunk, int64_t nchunks,
			     int64_t sdim)
{
	return saved + (pr * nchunks + chunk) * sdim;
}

/*
 * Sum over the entries of a sample of the initial state s0 of L(s0) = sum(O .* dO)
 * through the float64 recurrent form: L is linear in s0, so a central difference of
 * any step is exact up to round-off.
 */
static void fd_state_grad(const struct problem *p, const double *ds_ref)
{
	enum { SAMPLES = 12 };
	const double eps = 0.5;
	double fd[SAMPLES], an[SAMPLES];
	double *s0 = xcalloc((size_t)p->ns, sizeof(double));
	struct mat o = mat_new(p->rows, p->v.ld);

	for (int s = 0; s < SAMPLES; s++) {
		int64_t i = (int64_t)(rng_uniform(9, 31, (uint64_t)s) * (double)p->ns);
		double l[2];

		for (int side = 0; side < 2; side++) {
			double *st = xcalloc((size_t)p->ns, sizeof(double));

			st[i] = side ? -eps : eps;
			ref_retention_recurrent(dq_(&o, p->c.col_v), st, dq_(&p->q, p->c.col_qk),
						dq_(&p->k, p->c.col_qk), dq_(&p->v, p->c.col_v),
						&p->d);
			l[side] = 0.0;
			for (int64_t r = 0; r < p->rows; r++)
				for (int64_t j = 0; j < p->c.heads * p->c.dv; j++) {
					int64_t at = r * p->v.ld + p->c.col_v + j;

					l[side] += o.d[at] * p->dout.d[at];
				}
			free(st);
		}
		fd[s] = (l[0] - l[1]) / (2 * eps);
		an[s] = ds_ref[i];
	}
	check(p->c.name, "f64 state gradient vs central differences", an, fd, SAMPLES, 1e-9,
	      1e-11);
	free(s0);
	mat_free(&o);
}

static void test_pieces(struct kernels_ctx *ctx, const struct cfg *c, int64_t cp)
{
	struct problem p = problem_new(c);
	struct whole w = whole_run(ctx, &p);
	int64_t tp = c->seq_len / cp, ns = p.ns, sdim = c->dk * c->dv;
	int64_t pairs = c->batch * c->heads, hk = c->heads * c->dk, hv = c->heads * c->dv;
	struct retention_dims dp = p.d;
	int64_t nc, nc_all = c->seq_len / c->chunk;
	float *summaries = xmalloc(sizeof(float) * (size_t)(cp * ns));
	float *ds_locals = xmalloc(sizeof(float) * (size_t)(cp * ns));
	float *s_in = xmalloc(sizeof(float) * (size_t)ns);
	float *ds_out = xmalloc(sizeof(float) * (size_t)ns);
	float *scratch, **saved = xmalloc(sizeof(float *) * (size_t)cp);
	struct mat *q = xmalloc(sizeof(struct mat) * (size_t)cp), *k, *v, *dout, *o, *gq, *gk, *gv;
	char name[96], what[128];

	snprintf(name, sizeof(name), "%s cp=%lld (%lld-token pieces)", c->name, (long long)cp,
		 (long long)tp);
	ENSURE(c->seq_len % (cp * c->chunk) == 0);
	k = xmalloc(sizeof(struct mat) * (size_t)cp);
	v = xmalloc(sizeof(struct mat) * (size_t)cp);
	dout = xmalloc(sizeof(struct mat) * (size_t)cp);
	o = xmalloc(sizeof(struct mat) * (size_t)cp);
	gq = xmalloc(sizeof(struct mat) * (size_t)cp);
	gk = xmalloc(sizeof(struct mat) * (size_t)cp);
	gv = xmalloc(sizeof(struct mat) * (size_t)cp);
	dp.seq_len = tp;
	nc = tp / c->chunk;
	scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(&dp));

	/* Forward, pass 1 on every rank: states from zero and the summary. */
	for (int64_t r = 0; r < cp; r++) {
		q[r] = mat_rows(&p.q, c->batch, c->seq_len, r * tp, tp);
		k[r] = mat_rows(&p.k, c->batch, c->seq_len, r * tp, tp);
		v[r] = mat_rows(&p.v, c->batch, c->seq_len, r * tp, tp);
		dout[r] = mat_rows(&p.dout, c->batch, c->seq_len, r * tp, tp);
		o[r] = mat_new(c->batch * tp, p.v.ld);
		gq[r] = mat_new(c->batch * tp, p.q.ld);
		gk[r] = mat_new(c->batch * tp, p.k.ld);
		gv[r] = mat_new(c->batch * tp, p.v.ld);
		saved[r] = xmalloc(sizeof(float) * (size_t)retention_state_floats(&dp));
		retention_chunkwise_states(ctx, saved[r], summaries + r * ns, scratch,
					   fq(&k[r], c->col_qk), fq(&v[r], c->col_v), &dp);
	}
	/* (all-gather of the summaries) then pass 2: scan and output. */
	for (int64_t r = 0; r < cp; r++) {
		double *got, *want;

		retention_cp_scan_states(s_in, summaries, r, cp, NULL, &dp);
		got = widen(s_in, ns);
		want = ref_state_after(&p, r * tp);
		snprintf(what, sizeof(what), "piece %lld s_in vs f64 state", (long long)r);
		check(name, what, got, want, ns, 1e-4, 2e-6);
		free(got), free(want);
		got = widen(summaries + r * ns, ns);
		{
			struct problem pr = p;

			pr.q = q[r], pr.k = k[r], pr.v = v[r];
			pr.c.seq_len = tp;
			pr.d.seq_len = tp;
			want = ref_state_after(&pr, tp);
		}
		snprintf(what, sizeof(what), "piece %lld summary vs f64 state of the piece",
			 (long long)r);
		check(name, what, got, want, ns, 1e-4, 2e-6);
		free(got), free(want);
		retention_chunkwise_output(ctx, fq(&o[r], c->col_v), saved[r], s_in, scratch,
					   fq(&q[r], c->col_qk), fq(&k[r], c->col_qk),
					   fq(&v[r], c->col_v), &dp);
	}
	{
		double *got, *want = ref_state_after(&p, c->seq_len), *one = widen(w.final, ns);

		retention_cp_scan_states(s_in, summaries, cp, cp, NULL, &dp);
		got = widen(s_in, ns);
		check(name, "scan_states(p = cp) vs f64 final state", got, want, ns, 1e-4, 2e-6);
		check(name, "scan_states(p = cp) vs one-pass final state", got, one, ns, 1e-5,
		      1e-6);
		free(got), free(want), free(one);
	}

	/* O, slice by slice, and the saved states, against the whole sequence. */
	for (int64_t r = 0; r < cp; r++) {
		int64_t n = c->batch * tp * hv;
		double *got = xmalloc(sizeof(double) * (size_t)n);
		double *one = xmalloc(sizeof(double) * (size_t)n);
		double *ref = xmalloc(sizeof(double) * (size_t)n);
		double *st_got = xmalloc(sizeof(double) * (size_t)(pairs * nc * sdim));
		double *st_one = xmalloc(sizeof(double) * (size_t)(pairs * nc * sdim));

		for (int64_t b = 0; b < c->batch; b++) {
			double *g = cols(&o[r], b * tp, tp, c->col_v, hv, true);
			double *f = cols(&w.o, b * c->seq_len + r * tp, tp, c->col_v, hv, true);
			double *e = cols(&w.o, b * c->seq_len + r * tp, tp, c->col_v, hv, false);

			memcpy(got + b * tp * hv, g, sizeof(double) * (size_t)(tp * hv));
			memcpy(one + b * tp * hv, f, sizeof(double) * (size_t)(tp * hv));
			memcpy(ref + b * tp * hv, e, sizeof(double) * (size_t)(tp * hv));
			free(g), free(f), free(e);
		}
		snprintf(what, sizeof(what), "piece %lld O vs one-pass chunkwise", (long long)r);
		check(name, what, got, one, n, 1e-5, 1e-6);
		snprintf(what, sizeof(what), "piece %lld O vs f64 %s", (long long)r,
			 c->with_ref ? "parallel" : "chunkwise");
		check(name, what, got, ref, n, 1e-4, 2e-6);
		groupnorm(got, c->batch * tp, c->heads, c->dv);
		groupnorm(ref, c->batch * tp, c->heads, c->dv);
		snprintf(what, sizeof(what), "piece %lld GN(O) vs GN(f64)", (long long)r);
		{
			char label[256];

			snprintf(label, sizeof(label), "%s: %s (atol 1e-5)", name, what);
			EXPECT_CLOSE(got, ref, n, 0.0, 1e-5, label);
		}
		for (int64_t pr = 0; pr < pairs; pr++)
			for (int64_t ci = 0; ci < nc; ci++)
				for (int64_t i = 0; i < sdim; i++) {
					int64_t at = (pr * nc + ci) * sdim + i;

					st_got[at] = state_at(saved[r], pr, ci, nc, sdim)[i];
					st_one[at] = state_at(w.saved, pr, r * nc + ci, nc_all, sdim)[i];
				}
		snprintf(what, sizeof(what), "piece %lld saved states vs one-pass", (long long)r);
		check(name, what, st_got, st_one, pairs * nc * sdim, 1e-5, 1e-6);
		free(got), free(one), free(ref), free(st_got), free(st_one);
	}

	/* Backward, pass 1: the gradient w.r.t. each piece's incoming state. */
	for (int64_t r = 0; r < cp; r++) {
		double *got, *want;
		struct problem pr = p;

		retention_chunkwise_state_grad(ctx, ds_locals + r * ns, scratch,
					       fq(&dout[r], c->col_v), fq(&q[r], c->col_qk), &dp);
		pr.q = q[r], pr.dout = dout[r];
		pr.c.seq_len = tp;
		pr.d.seq_len = tp;
		got = widen(ds_locals + r * ns, ns);
		want = ref_grad_at(&pr, 0);
		snprintf(what, sizeof(what), "piece %lld ds_in vs f64 state gradient", (long long)r);
		check(name, what, got, want, ns, 1e-4, 3e-6);
		free(got), free(want);
	}
	/* (all-gather) then pass 2: reverse scan and backward. */
	for (int64_t r = 0; r < cp; r++) {
		const float *gout = NULL;
		struct mat *g[3] = {&gq[r], &gk[r], &gv[r]};
		struct mat *gw[3] = {&w.dq, &w.dk, &w.dv};
		const char *names[3] = {"dQ", "dK", "dV"};
		int64_t col[3] = {c->col_qk, c->col_qk, c->col_v}, width[3] = {hk, hk, hv};

		if (r + 1 < cp) {
			double *got, *want;

			retention_cp_scan_grads(ds_out, ds_locals, r, cp, NULL, &dp);
			got = widen(ds_out, ns);
			want = ref_grad_at(&p, (r + 1) * tp);
			snprintf(what, sizeof(what), "piece %lld ds_out vs f64 state gradient",
				 (long long)r);
			check(name, what, got, want, ns, 1e-4, 3e-6);
			free(got), free(want);
			gout = ds_out;
		}
		retention_chunkwise_backward(ctx, fq(&gq[r], c->col_qk), fq(&gk[r], c->col_qk),
					     fq(&gv[r], c->col_v), scratch, fq(&dout[r], c->col_v),
					     fq(&q[r], c->col_qk), fq(&k[r], c->col_qk),
					     fq(&v[r], c->col_v), saved[r], gout, &dp);
		for (int i = 0; i < 3; i++) {
			int64_t n = c->batch * tp * width[i];
			double *got = xmalloc(sizeof(double) * (size_t)n);
			double *one = xmalloc(sizeof(double) * (size_t)n);
			double *ref = xmalloc(sizeof(double) * (size_t)n);

			for (int64_t b = 0; b < c->batch; b++) {
				int64_t r0 = b * c->seq_len + r * tp;
				double *x = cols(g[i], b * tp, tp, col[i], width[i], true);
				double *y = cols(gw[i], r0, tp, col[i], width[i], true);
				double *z = cols(gw[i], r0, tp, col[i], width[i], false);

				memcpy(got + b * tp * width[i], x, sizeof(double) * (size_t)(tp * width[i]));
				memcpy(one + b * tp * width[i], y, sizeof(double) * (size_t)(tp * width[i]));
				memcpy(ref + b * tp * width[i], z, sizeof(double) * (size_t)(tp * width[i]));
				free(x), free(y), free(z);
			}
			snprintf(what, sizeof(what), "piece %lld %s vs one-pass chunkwise",
				 (long long)r, names[i]);
			check(name, what, got, one, n, 1e-5, 1e-6);
			if (c->with_ref) {
				snprintf(what, sizeof(what), "piece %lld %s vs f64 parallel",
					 (long long)r, names[i]);
				check(name, what, got, ref, n, 1e-4, 3e-6);
			}
			free(got), free(one), free(ref);
		}
	}
	if (cp == 2 && c->with_ref) {
		double *ds_ref = ref_grad_at(&p, 0);

		fd_state_grad(&p, ds_ref);
		free(ds_ref);
	}

	for (int64_t r = 0; r < cp; r++) {
		mat_free(&q[r]), mat_free(&k[r]), mat_free(&v[r]), mat_free(&dout[r]);
		mat_free(&o[r]), mat_free(&gq[r]), mat_free(&gk[r]), mat_free(&gv[r]);
		free(saved[r]);
	}
	free(q), free(k), free(v), free(dout), free(o), free(gq), free(gk), free(gv);
	free(saved), free(summaries), free(ds_locals), free(s_in), free(ds_out), free(scratch);
	whole_free(&w);
	problem_free(&p);
}

/* One piece: states then output(NULL) is the one-pass forward, bit for bit. */
static void test_one_piece_bitwise(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct problem p = problem_new(c);
	struct whole w = whole_run(ctx, &p);
	const struct retention_dims *d = &p.d;
	int64_t nst = retention_state_floats(d);
	float *saved = xmalloc(sizeof(float) * (size_t)nst);
	float *summary = xmalloc(sizeof(float) * (size_t)p.ns);
	float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));
	struct mat o = mat_new(p.rows, p.v.ld);
	char label[160];

	retention_chunkwise_states(ctx, saved, summary, scratch, fq(&p.k, c->col_qk),
				   fq(&p.v, c->col_v), d);
	retention_chunkwise_output(ctx, fq(&o, c->col_v), saved, NULL, scratch,
				   fq(&p.q, c->col_qk), fq(&p.k, c->col_qk), fq(&p.v, c->col_v), d);
	snprintf(label, sizeof(label), "%s: states + output(NULL) O = one-pass O, bitwise",
		 c->name);
	EXPECT_CLOSE(o.f, w.o.f, p.rows * p.v.ld, 0.0, 0.0, label);
	snprintf(label, sizeof(label), "%s: saved states = one-pass saved states, bitwise",
		 c->name);
	EXPECT_CLOSE(saved, w.saved, nst, 0.0, 0.0, label);
	free(saved), free(summary), free(scratch);
	mat_free(&o);
	whole_free(&w);
	problem_free(&p);
}

int main(void)
{
	/*               name                 B   T     H  off dk  dv  C   colqk colv ref */
	const struct cfg several = {"T=96,C=8,H=3,off=2", 2, 96, 3, 2, 16, 32, 8, 32, 64, true};
	const struct cfg one_chunk = {"T=48,C=16,H=2,off=1", 2, 48, 2, 1, 16, 32, 16, 16, 32,
				      true};
	const struct cfg one_chunk4 = {"T=32,C=8,H=2,off=0", 1, 32, 2, 0, 8, 16, 8, 0, 0, true};
	/* gamma_0^4096 = 2^-187 and gamma_1^4096 = 2^-93: the decay across a piece is
	 * below float's range for head 0 and near it for head 1. */
	const struct cfg long_pieces = {"long T=12288,C=64,H=2,off=0", 1, 12288, 2, 0, 8, 8, 64,
					0, 0, false};
	struct kernels_ctx *ctx = kernels_ctx_init();
	double t0 = omp_get_wtime();

	printf("OpenMP threads: %d\n", omp_get_max_threads());
	test_decay();
	test_scans("scan cp=5 T_p=40 off=3", 5, 40, 3, 3);
	test_scans("scan cp=4 T_p=8192 off=0", 4, 8192, 2, 0);
	test_one_piece_bitwise(ctx, &several);
	for (int64_t cp = 1; cp <= 4; cp++)
		test_pieces(ctx, &several, cp);
	test_pieces(ctx, &one_chunk, 3);
	test_pieces(ctx, &one_chunk4, 4);
	test_pieces(ctx, &long_pieces, 3);
	printf("elapsed %.2f s\n", omp_get_wtime() - t0);
	kernels_ctx_free(ctx);
	return test_finish();
}
