/*
 * Retention with document resets (retention_dims.starts; docs/model.md, "Document
 * resets"): a window of several documents equals its documents run one by one.
 *
 *   1. The float64 references: the parallel form with the reset mask, written from
 *      its definition, against the recurrent form that zeroes the state (1e-12).
 *   2. Per form (parallel, recurrent, chunkwise): the window with its starts against
 *      each document run alone from a zero state, without starts, and concatenated;
 *      forward outputs and, for the two forms that have a backward, dQ, dK and dV
 *      of L = sum(O .* W). Documents start on chunk boundaries, between them, on a
 *      chunk's last row, and a document may be one token long. A document run alone
 *      through the chunkwise form is padded with zero rows to whole chunks (rows
 *      after it change none of its outputs nor, with zero W, its gradients).
 *      Tolerance: max |got - want| <= 1e-6 max |want| per tensor.
 *   3. The same windows against the float64 reference with the reset mask, at the
 *      tolerances of test_retention (rtol 1e-4, atol 2e-6 / 3e-6 of max |want|).
 *   4. Streaming: a start at row 0 discards the carried state; the state left after
 *      the window is the last document's alone (chunkwise and recurrent).
 *   5. Context parallelism: the window cut into 2 to 4 pieces (starts inside pieces,
 *      on their first row, at chunk boundaries) through the kernels and the scans
 *      of retention_cp.h gives the whole window's outputs and gradients (1e-6), the
 *      scanned states equal the float64 state entering each piece, and the scanned
 *      state gradients the float64 gradient leaving it.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/retention_ref.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/retention.h"
#include "trainer/kernels/retention_forms.h"
#include "trainer/kernels/retention_cp.h"

#define MAX_ROWS 4
#define MAX_DOCS 4

struct cfg {
	const char *name;
	int64_t batch, seq_len, heads, head_offset, dk, dv, chunk;
	int64_t docs[MAX_ROWS][MAX_DOCS]; /* document lengths per batch row, 0-ended */
};

/* A window: dense operands (rows B*T; Q, K: H dk wide; V, O, W: H dv wide). */
struct win {
	struct retention_dims d;
	float *q, *k, *v, *w;
	uint8_t *starts; /* (B, T) */
};

enum form { PARALLEL, RECURRENT, CHUNKWISE };
static const char *const form_names[] = {"parallel", "recurrent", "chunkwise"};

static struct retention_dims dims_of(const struct cfg *c, int64_t batch, int64_t seq_len)
{
	struct retention_dims d = {
		.batch = batch, .seq_len = seq_len, .heads = c->heads,
		.head_offset = c->head_offset, .dk = c->dk, .dv = c->dv, .chunk = c->chunk,
		.ldq = c->heads * c->dk, .ldk = c->heads * c->dk, .ldv = c->heads * c->dv,
		.ldo = c->heads * c->dv,
	};
	return d;
}

static float *random_f(size_t n, uint64_t stream, double scale)
{
	float *x = xmalloc(sizeof(float) * n);

	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * (2.0 * rng_uniform(7, stream, i) - 1.0));
	return x;
}

static double *widen(const float *x, size_t n)
{
	double *y = xmalloc(sizeof(double) * n);

	for (size_t i = 0; i < n; i++)
		y[i] = x[i];
	return y;
}

static struct win win_new(const struct cfg *c)
{
	struct win p = {.d = dims_of(c, c->batch, c->seq_len)};
	const size_t rows = (size_t)(c->batch * c->seq_len);

	p.q = random_f(rows * (size_t)p.d.ldq, 1, 1.0);
	p.k = random_f(rows * (size_t)p.d.ldk, 2, 0.35);
	p.v = random_f(rows * (size_t)p.d.ldv, 3, 1.0);
	p.w = random_f(rows * (size_t)p.d.ldo, 4, 1.0);
	p.starts = xcalloc(rows, 1);
	for (int64_t b = 0; b < c->batch; b++) {
		int64_t at = 0;

		for (int i = 0; i < MAX_DOCS && c->docs[b][i]; i++) {
			p.starts[b * c->seq_len + at] = 1;
			at += c->docs[b][i];
		}
		if (at != c->seq_len) {
			fprintf(stderr, "%s: row %lld's documents do not fill the window\n",
				c->name, (long long)b);
			abort();
		}
	}
	p.d.starts = p.starts;
	return p;
}

static void win_free(struct win *p)
{
	free(p->q), free(p->k), free(p->v), free(p->w), free(p->starts);
}

/* O of form f (and with dq the gradients of sum(O .* w)); state: the state to start
 * from, updated (recurrent, chunkwise), or NULL for zero. */
static void run(struct kernels_ctx *ctx, enum form f, const struct retention_dims *d,
		float *o, float *state, const float *q, const float *k, const float *v,
		const float *w, float *dq, float *dk, float *dv)
{
	const size_t sfl = (size_t)(d->batch * d->heads * d->dk * d->dv);
	float *zero = NULL;

	switch (f) {
	case PARALLEL:
		retention_parallel_forward(o, q, k, v, d);
		if (dq)
			retention_parallel_backward(dq, dk, dv, w, q, k, v, d);
		break;
	case RECURRENT:
		if (!state)
			state = zero = xcalloc(sfl, sizeof(float));
		retention_recurrent_forward(o, state, q, k, v, d);
		break;
	case CHUNKWISE: {
		float *saved = xmalloc(sizeof(float) * (size_t)retention_state_floats(d));
		float *scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(d));

		retention_chunkwise_forward(ctx, o, saved, state, scratch, q, k, v, d);
		if (dq)
			retention_chunkwise_backward(ctx, dq, dk, dv, scratch, w, q, k, v, saved,
						     NULL, d);
		free(saved), free(scratch);
		break;
	}
	}
	free(zero);
}

/* Copy n rows of width wd from row r0 of src (row stride ld) to row s0 of dst. */
static void copy_rows(float *dst, int64_t s0, const float *src, int64_t r0, int64_t n,
		      int64_t ld)
{
	memcpy(dst + s0 * ld, src + r0 * ld, sizeof(float) * (size_t)(n * ld));
}

/* max |got - want| <= tol max |want| over n values. */
static void check_rel(const char *name, const char *what, const float *got, const float *want,
		      size_t n, double tol)
{
	double mx = 0.0;
	char label[160];

	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs((double)want[i]));
	snprintf(label, sizeof(label), "%s: %s", name, what);
	EXPECT_CLOSE(got, want, n, 0.0, tol * mx, label);
}

static void check_ref(const char *name, const char *what, const float *got, const double *want,
		      size_t n, double a)
{
	double mx = 0.0;
	char label[160];

	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(want[i]));
	snprintf(label, sizeof(label), "%s: %s", name, what);
	EXPECT_CLOSE(got, want, n, 1e-4, a * mx, label);
}

/* 1. and 3.: the references, and each float32 form against them. */
static void test_reference(struct kernels_ctx *ctx, const struct cfg *c)
{
	struct win p = win_new(c);
	const struct retention_dims *d = &p.d;
	const size_t rows = (size_t)(d->batch * d->seq_len);
	const size_t nq = rows * (size_t)d->ldq, nv = rows * (size_t)d->ldv;
	double *q = widen(p.q, nq), *k = widen(p.k, nq), *v = widen(p.v, nv), *w = widen(p.w, nv);
	double *o_par = xcalloc(nv, sizeof(double)), *o_rec = xcalloc(nv, sizeof(double));
	double *s = xcalloc((size_t)(d->batch * d->heads * d->dk * d->dv), sizeof(double));
	double *gq = xcalloc(nq, sizeof(double)), *gk = xcalloc(nq, sizeof(double));
	double *gv = xcalloc(nv, sizeof(double));
	float *o = xmalloc(sizeof(float) * nv), *dq = xmalloc(sizeof(float) * nq);
	float *dk = xmalloc(sizeof(float) * nq), *dv = xmalloc(sizeof(float) * nv);
	char what[96];

	ref_retention_parallel(o_par, q, k, v, d);
	ref_retention_recurrent(o_rec, s, q, k, v, d);
	ref_retention_parallel_backward(gq, gk, gv, w, q, k, v, d);
	EXPECT_CLOSE(o_rec, o_par, nv, 1e-12, 1e-12, c->name);
	for (int f = PARALLEL; f <= CHUNKWISE; f++) {
		bool bwd = f != RECURRENT;

		run(ctx, (enum form)f, d, o, NULL, p.q, p.k, p.v, p.w, bwd ? dq : NULL, dk, dv);
		snprintf(what, sizeof(what), "f32 %s O vs ref", form_names[f]);
		check_ref(c->name, what, o, o_par, nv, 2e-6);
		if (!bwd)
			continue;
		snprintf(what, sizeof(what), "f32 %s dQ vs ref", form_names[f]);
		check_ref(c->name, what, dq, gq, nq, 3e-6);
		snprintf(what, sizeof(what), "f32 %s dK vs ref", form_names[f]);
		check_ref(c->name, what, dk, gk, nq, 3e-6);
		snprintf(what, sizeof(what), "f32 %s dV vs ref", form_names[f]);
		check_ref(c->name, what, dv, gv, nv, 3e-6);
	}
	free(q), free(k), free(v), free(w), free(o_par), free(o_rec), free(s);
	free(gq), free(gk), free(gv), free(o), free(dq), free(dk), free(dv);
	win_free(&p);
}

/* 2.: the window against its documents run alone, form by form. */
static void test_separate(struct kernels_ctx *ctx, const struct cfg *c, enum form f)
{
	struct win p = win_new(c);
	const struct retention_dims *d = &p.d;
	const bool bwd = f != RECURRENT;
	const size_t rows = (size_t)(d->batch * d->seq_len);
	const size_t nq = rows * (size_t)d->ldq, nv = rows * (size_t)d->ldv;
	float *o = xmalloc(sizeof(float) * nv), *dq = xmalloc(sizeof(float) * nq);
	float *dk = xmalloc(sizeof(float) * nq), *dv = xmalloc(sizeof(float) * nv);
	float *so = xmalloc(sizeof(float) * nv), *sdq = xmalloc(sizeof(float) * nq);
	float *sdk = xmalloc(sizeof(float) * nq), *sdv = xmalloc(sizeof(float) * nv);
	/* one document, padded to whole chunks */
	const size_t cap = (size_t)(d->seq_len + d->chunk);
	float *q1 = xmalloc(sizeof(float) * cap * (size_t)d->ldq);
	float *k1 = xmalloc(sizeof(float) * cap * (size_t)d->ldk);
	float *v1 = xmalloc(sizeof(float) * cap * (size_t)d->ldv);
	float *w1 = xmalloc(sizeof(float) * cap * (size_t)d->ldo);
	float *o1 = xmalloc(sizeof(float) * cap * (size_t)d->ldo);
	float *dq1 = xmalloc(sizeof(float) * cap * (size_t)d->ldq);
	float *dk1 = xmalloc(sizeof(float) * cap * (size_t)d->ldk);
	float *dv1 = xmalloc(sizeof(float) * cap * (size_t)d->ldv);
	char what[96];

	run(ctx, f, d, o, NULL, p.q, p.k, p.v, p.w, bwd ? dq : NULL, dk, dv);
	for (int64_t b = 0; b < d->batch; b++) {
		int64_t at = b * d->seq_len;

		for (int i = 0; i < MAX_DOCS && c->docs[b][i]; i++) {
			int64_t n = c->docs[b][i];
			int64_t len = f == CHUNKWISE ? (n + d->chunk - 1) / d->chunk * d->chunk : n;
			struct retention_dims d1 = dims_of(c, 1, len);

			memset(q1, 0, sizeof(float) * (size_t)(len * d->ldq));
			memset(k1, 0, sizeof(float) * (size_t)(len * d->ldk));
			memset(v1, 0, sizeof(float) * (size_t)(len * d->ldv));
			memset(w1, 0, sizeof(float) * (size_t)(len * d->ldo));
			copy_rows(q1, 0, p.q, at, n, d->ldq);
			copy_rows(k1, 0, p.k, at, n, d->ldk);
			copy_rows(v1, 0, p.v, at, n, d->ldv);
			copy_rows(w1, 0, p.w, at, n, d->ldo);
			run(ctx, f, &d1, o1, NULL, q1, k1, v1, w1, bwd ? dq1 : NULL, dk1, dv1);
			copy_rows(so, at, o1, 0, n, d->ldo);
			if (bwd) {
				copy_rows(sdq, at, dq1, 0, n, d->ldq);
				copy_rows(sdk, at, dk1, 0, n, d->ldk);
				copy_rows(sdv, at, dv1, 0, n, d->ldv);
			}
			at += n;
		}
	}
	snprintf(what, sizeof(what), "%s O, window vs documents alone", form_names[f]);
	check_rel(c->name, what, o, so, nv, 1e-6);
	if (bwd) {
		snprintf(what, sizeof(what), "%s dQ, window vs documents alone", form_names[f]);
		check_rel(c->name, what, dq, sdq, nq, 1e-6);
		snprintf(what, sizeof(what), "%s dK, window vs documents alone", form_names[f]);
		check_rel(c->name, what, dk, sdk, nq, 1e-6);
		snprintf(what, sizeof(what), "%s dV, window vs documents alone", form_names[f]);
		check_rel(c->name, what, dv, sdv, nv, 1e-6);
	}
	free(o), free(dq), free(dk), free(dv), free(so), free(sdq), free(sdk), free(sdv);
	free(q1), free(k1), free(v1), free(w1), free(o1), free(dq1), free(dk1), free(dv1);
	win_free(&p);
}

/* 4.: a carried state, discarded by the start at row 0; the state left after the
 * window is what the last document leaves alone. */
static void test_streaming(struct kernels_ctx *ctx, const struct cfg *c, enum form f)
{
	struct win p = win_new(c);
	const struct retention_dims *d = &p.d;
	const size_t sfl = (size_t)(d->batch * d->heads * d->dk * d->dv);
	const size_t nv = (size_t)(d->batch * d->seq_len * d->ldv);
	float *s_in = random_f(sfl, 9, 3.0), *s_zero = xcalloc(sfl, sizeof(float));
	float *o = xmalloc(sizeof(float) * nv), *o0 = xmalloc(sizeof(float) * nv);
	float *s_last = xcalloc(sfl, sizeof(float));
	struct retention_dims d1 = *d;
	const size_t cap = (size_t)(d->batch * d->seq_len);
	float *q1 = xcalloc(cap * (size_t)d->ldq, sizeof(float));
	float *k1 = xcalloc(cap * (size_t)d->ldk, sizeof(float));
	float *v1 = xcalloc(cap * (size_t)d->ldv, sizeof(float));
	float *o1 = xmalloc(sizeof(float) * nv);
	char what[96];

	run(ctx, f, d, o, s_in, p.q, p.k, p.v, NULL, NULL, NULL, NULL);
	run(ctx, f, d, o0, s_zero, p.q, p.k, p.v, NULL, NULL, NULL, NULL);
	snprintf(what, sizeof(what), "%s stream O, carried state vs none", form_names[f]);
	check_rel(c->name, what, o, o0, nv, 0.0);
	/* The last document alone, moved to the end of a window of zeros: zero keys and
	 * values before it leave a zero state, and a chunk-aligned end keeps the decay
	 * of its keys to the window's end. */
	d1.starts = NULL;
	for (int64_t b = 0; b < d->batch; b++) {
		int64_t i = 0, n;

		while (i + 1 < MAX_DOCS && c->docs[b][i + 1])
			i++;
		n = c->docs[b][i];
		copy_rows(q1, (b + 1) * d->seq_len - n, p.q, (b + 1) * d->seq_len - n, n, d->ldq);
		copy_rows(k1, (b + 1) * d->seq_len - n, p.k, (b + 1) * d->seq_len - n, n, d->ldk);
		copy_rows(v1, (b + 1) * d->seq_len - n, p.v, (b + 1) * d->seq_len - n, n, d->ldv);
	}
	run(ctx, f, &d1, o1, s_last, q1, k1, v1, NULL, NULL, NULL, NULL);
	snprintf(what, sizeof(what), "%s stream, state after the window", form_names[f]);
	check_rel(c->name, what, s_in, s_last, sfl, 1e-6);
	free(s_in), free(s_zero), free(o), free(o0), free(s_last);
	free(q1), free(k1), free(v1), free(o1);
	win_free(&p);
}

/* Rows [t0, t0 + n) of every batch row of x (rows of ld) into a (batch, n) block. */
static float *piece_of(const float *x, int64_t batch, int64_t seq_len, int64_t t0, int64_t n,
		       int64_t ld)
{
	float *y = xmalloc(sizeof(float) * (size_t)(batch * n * ld));

	for (int64_t b = 0; b < batch; b++)
		copy_rows(y, b * n, x, b * seq_len + t0, n, ld);
	return y;
}

static uint8_t *starts_of(const uint8_t *st, int64_t batch, int64_t seq_len, int64_t t0,
			  int64_t n)
{
	uint8_t *y = xmalloc((size_t)(batch * n));

	for (int64_t b = 0; b < batch; b++)
		memcpy(y + b * n, st + b * seq_len + t0, (size_t)n);
	return y;
}

/* The float64 state after rows [0, t) and the gradient of sum(O .* W) w.r.t. the
 * state entering row t, as one (batch, heads, dk, dv) block each. */
static void ref_boundary(const struct win *p, int64_t t, double *state, double *grad)
{
	const struct retention_dims *d = &p->d;
	const int64_t T = d->seq_len, B = d->batch;

	memset(state, 0, sizeof(double) * (size_t)(B * d->heads * d->dk * d->dv));
	memset(grad, 0, sizeof(double) * (size_t)(B * d->heads * d->dk * d->dv));
	if (t > 0) {
		struct retention_dims dp = *d;
		float *q = piece_of(p->q, B, T, 0, t, d->ldq), *k = piece_of(p->k, B, T, 0, t, d->ldk);
		float *v = piece_of(p->v, B, T, 0, t, d->ldv);
		uint8_t *st = starts_of(p->starts, B, T, 0, t);
		double *qd = widen(q, (size_t)(B * t * d->ldq)), *kd = widen(k, (size_t)(B * t * d->ldk));
		double *vd = widen(v, (size_t)(B * t * d->ldv));
		double *o = xmalloc(sizeof(double) * (size_t)(B * t * d->ldo));

		dp.seq_len = t;
		dp.starts = st;
		ref_retention_recurrent(o, state, qd, kd, vd, &dp);
		free(q), free(k), free(v), free(st), free(qd), free(kd), free(vd), free(o);
	}
	if (t < T) {
		struct retention_dims dp = *d;
		float *q = piece_of(p->q, B, T, t, T - t, d->ldq);
		float *w = piece_of(p->w, B, T, t, T - t, d->ldo);
		uint8_t *st = starts_of(p->starts, B, T, t, T - t);
		double *qd = widen(q, (size_t)(B * (T - t) * d->ldq));
		double *wd = widen(w, (size_t)(B * (T - t) * d->ldo));

		dp.seq_len = T - t;
		dp.starts = st;
		ref_retention_state_grad(grad, wd, qd, &dp);
		free(q), free(w), free(st), free(qd), free(wd);
	}
}

/* 5.: the window in cp pieces through the context-parallel passes and scans. */
static void test_pieces(struct kernels_ctx *ctx, const struct cfg *c, int64_t cp)
{
	struct win p = win_new(c);
	const struct retention_dims *d = &p.d;
	const int64_t B = d->batch, T = d->seq_len, Tp = T / cp;
	const size_t rows = (size_t)(B * T), sfl = (size_t)(B * d->heads * d->dk * d->dv);
	const size_t nq = rows * (size_t)d->ldq, nv = rows * (size_t)d->ldv;
	float *o = xmalloc(sizeof(float) * nv), *dq = xmalloc(sizeof(float) * nq);
	float *dk = xmalloc(sizeof(float) * nq), *dv = xmalloc(sizeof(float) * nv);
	float *summaries = xmalloc(sizeof(float) * sfl * (size_t)cp);
	float *locals = xmalloc(sizeof(float) * sfl * (size_t)cp);
	float *scan = xmalloc(sizeof(float) * sfl);
	double *s_ref = xmalloc(sizeof(double) * sfl), *g_ref = xmalloc(sizeof(double) * sfl);
	uint8_t *piece_starts = xcalloc((size_t)(cp * B), 1);
	struct retention_dims dp = *d;
	float *saved[4], *pq[4], *pk[4], *pv[4], *pw[4];
	uint8_t *pst[4];
	float *scratch;
	char name[96], what[96];

	if (cp > 4 || T % cp || Tp % c->chunk) {
		fprintf(stderr, "%s: bad cp %lld\n", c->name, (long long)cp);
		abort();
	}
	snprintf(name, sizeof(name), "%s cp=%lld", c->name, (long long)cp);
	run(ctx, CHUNKWISE, d, o, NULL, p.q, p.k, p.v, p.w, dq, dk, dv);
	dp.seq_len = Tp;
	scratch = xmalloc(sizeof(float) * (size_t)retention_scratch_floats(&dp));
	for (int64_t r = 0; r < cp; r++) {
		pq[r] = piece_of(p.q, B, T, r * Tp, Tp, d->ldq);
		pk[r] = piece_of(p.k, B, T, r * Tp, Tp, d->ldk);
		pv[r] = piece_of(p.v, B, T, r * Tp, Tp, d->ldv);
		pw[r] = piece_of(p.w, B, T, r * Tp, Tp, d->ldo);
		pst[r] = starts_of(p.starts, B, T, r * Tp, Tp);
		for (int64_t b = 0; b < B; b++)
			for (int64_t t = 0; t < Tp; t++)
				piece_starts[r * B + b] |= pst[r][b * Tp + t];
		saved[r] = xmalloc(sizeof(float) * (size_t)retention_state_floats(&dp));
		dp.starts = pst[r];
		retention_chunkwise_states(ctx, saved[r], summaries + (size_t)r * sfl, scratch,
					   pk[r], pv[r], &dp);
		retention_chunkwise_state_grad(ctx, locals + (size_t)r * sfl, scratch, pw[r], pq[r],
					       &dp);
	}
	for (int64_t r = 0; r < cp; r++) {
		const size_t pnq = (size_t)(B * Tp * d->ldq), pnv = (size_t)(B * Tp * d->ldv);
		float *po = xmalloc(sizeof(float) * pnv), *want = NULL;
		float *pdq = xmalloc(sizeof(float) * pnq), *pdk = xmalloc(sizeof(float) * pnq);
		float *pdv = xmalloc(sizeof(float) * pnv);

		dp.starts = pst[r];
		retention_cp_scan_states(scan, summaries, r, cp, piece_starts, &dp);
		ref_boundary(&p, r * Tp, s_ref, g_ref);
		snprintf(what, sizeof(what), "scanned state entering piece %lld vs ref", (long long)r);
		check_ref(name, what, scan, s_ref, sfl, 2e-6);
		retention_chunkwise_output(ctx, po, saved[r], r ? scan : NULL, scratch, pq[r], pk[r],
					   pv[r], &dp);
		if (r + 1 < cp) {
			retention_cp_scan_grads(scan, locals, r, cp, piece_starts, &dp);
			ref_boundary(&p, (r + 1) * Tp, s_ref, g_ref);
			snprintf(what, sizeof(what), "scanned gradient leaving piece %lld vs ref",
				 (long long)r);
			check_ref(name, what, scan, g_ref, sfl, 2e-6);
		}
		retention_chunkwise_backward(ctx, pdq, pdk, pdv, scratch, pw[r], pq[r], pk[r], pv[r],
					     saved[r], r + 1 < cp ? scan : NULL, &dp);
		snprintf(what, sizeof(what), "piece %lld O vs whole", (long long)r);
		want = piece_of(o, B, T, r * Tp, Tp, d->ldo);
		check_rel(name, what, po, want, pnv, 1e-6);
		free(want);
		snprintf(what, sizeof(what), "piece %lld dQ vs whole", (long long)r);
		want = piece_of(dq, B, T, r * Tp, Tp, d->ldq);
		check_rel(name, what, pdq, want, pnq, 1e-6);
		free(want);
		snprintf(what, sizeof(what), "piece %lld dK vs whole", (long long)r);
		want = piece_of(dk, B, T, r * Tp, Tp, d->ldk);
		check_rel(name, what, pdk, want, pnq, 1e-6);
		free(want);
		snprintf(what, sizeof(what), "piece %lld dV vs whole", (long long)r);
		want = piece_of(dv, B, T, r * Tp, Tp, d->ldv);
		check_rel(name, what, pdv, want, pnv, 1e-6);
		free(want);
		free(po), free(pdq), free(pdk), free(pdv);
	}
	for (int64_t r = 0; r < cp; r++)
		free(saved[r]), free(pq[r]), free(pk[r]), free(pv[r]), free(pw[r]), free(pst[r]);
	free(o), free(dq), free(dk), free(dv), free(summaries), free(locals), free(scan);
	free(s_ref), free(g_ref), free(piece_starts), free(scratch);
	win_free(&p);
}

int main(void)
{
	/*   name                      B   T   H off dk  dv  C   documents per row */
	const struct cfg cfgs[] = {
		{"two documents T=32,C=8", 2, 32, 3, 1, 8, 16, 8, {{13, 19}, {16, 16}}},
		{"three documents T=48,C=8", 3, 48, 3, 0, 8, 16, 8,
		 {{8, 23, 17}, {1, 30, 17}, {23, 1, 24}}},
		{"T=C=16", 1, 16, 2, 2, 8, 8, 16, {{5, 11}}},
		{"one document", 1, 24, 2, 0, 8, 8, 8, {{24}}},
	};
	/* starts inside pieces, on a piece's first row (24, 32, 48, 72 for some cp),
	 * and none in a row */
	const struct cfg cp_cfg = {"cp T=96,C=8", 4, 96, 2, 1, 8, 16, 8,
				   {{10, 22, 64}, {24, 24, 48}, {72, 24}, {96}}};
	struct kernels_ctx *ctx = kernels_ctx_init();

	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		test_reference(ctx, &cfgs[i]);
		for (int f = PARALLEL; f <= CHUNKWISE; f++)
			test_separate(ctx, &cfgs[i], (enum form)f);
		test_streaming(ctx, &cfgs[i], RECURRENT);
		test_streaming(ctx, &cfgs[i], CHUNKWISE);
	}
	for (int64_t cp = 2; cp <= 4; cp++)
		test_pieces(ctx, &cp_cfg, cp);
	kernels_ctx_free(ctx);
	return test_finish();
}
