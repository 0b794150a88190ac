#include "trainer/kernels/retention.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/simd.h"

/*
 * Work is split over (batch, head) pairs: each pair touches only its own columns of
 * Q, K, V, O and its own states, so pairs run in parallel without synchronisation,
 * and inside a pair the chunks are swept in order. The matrix products of a chunk
 * run on oneDNN plans; the decay masks and row scalings are plain C.
 */

double retention_gamma(int64_t global_head)
{
	return 1.0 - ldexp(1.0, (int)(-5 - global_head));
}

double retention_decay(int64_t global_head, int64_t n)
{
	double p = pow(retention_gamma(global_head), (double)n);

	return p < 0x1p-300 ? 0.0 : p;
}

/* Round a float count up to 64 bytes so every per-thread block starts aligned. */
static int64_t pad16(int64_t n)
{
	return (n + 15) & ~(int64_t)15;
}

void retention_check_dims(const struct retention_dims *d)
{
	ENSURE(d->batch > 0 && d->seq_len > 0 && d->heads > 0 && d->head_offset >= 0);
	ENSURE(d->dk > 0 && d->dv > 0);
	ENSURE(d->ldq >= d->heads * d->dk && d->ldk >= d->heads * d->dk);
	ENSURE(d->ldv >= d->heads * d->dv && d->ldo >= d->heads * d->dv);
}

static void check_chunk_dims(const struct retention_dims *d)
{
	retention_check_dims(d);
	ENSURE(d->chunk > 0 && d->seq_len % d->chunk == 0);
}

void retention_decay_powers(float *pw, int64_t global_head, int64_t n_pow)
{
	const double gamma = retention_gamma(global_head);

	for (int64_t n = 0; n < n_pow; n++)
		pw[n] = (float)pow(gamma, (double)n);
}

int64_t retention_state_floats(const struct retention_dims *dims)
{
	check_chunk_dims(dims);
	return dims->batch * dims->heads * (dims->seq_len / dims->chunk) * dims->dk * dims->dv;
}

/* ---------------------------------------------------------------------------------
 * Per-thread scratch of the chunkwise form.
 */

struct chunk_scratch {
	float *pw;   /* (C + 1) gamma^n */
	float *xi;   /* (C) gamma^(i+1): decay of the carried state seen by row i */
	float *zeta; /* (C) gamma^(C-1-j): decay of key j up to the chunk's end */
	float *a;    /* (C, C) masked scores Q K^T .* D, or P in backward */
	float *w;    /* (C, dk) a row-scaled copy of Q or K, or a product to be scaled */
	float *xr, *zr; /* (C) xi and zeta of a chunk that holds a document start */
	float *g;    /* (dk, dv) backward: the gradient G_{c+1} flowing into the state */
	float *gt;   /* (dk, dv) backward: G_{c+1} with the gradient from later pieces */
	/* bf16 products only: one copy per chunk of the operands several products read */
	uint16_t *q16, *k16; /* (C, dk) */
	uint16_t *v16, *do16; /* (C, dv) */
	uint16_t *a16;       /* (C, C) backward: P */
	uint16_t *g16;       /* (dk, dv) backward: G_{c+1} */
};

/* Floats that hold n bf16 values, padded like the float blocks. */
static int64_t bf16_floats(int64_t n)
{
	return pad16((n + 1) / 2);
}

static int64_t scratch_per_thread(const struct retention_dims *d)
{
	int64_t c = d->chunk;

	return pad16(c + 1) + 4 * pad16(c) + pad16(c * c) + pad16(c * d->dk) +
	       2 * pad16(d->dk * d->dv) + 2 * bf16_floats(c * d->dk) +
	       2 * bf16_floats(c * d->dv) + bf16_floats(c * c) + bf16_floats(d->dk * d->dv);
}

int64_t retention_scratch_floats(const struct retention_dims *dims)
{
	check_chunk_dims(dims);
	return (int64_t)omp_get_max_threads() * scratch_per_thread(dims);
}

/* Point the calling thread's blocks into the caller's scratch and fill its decay
 * tables for global head `global_head`. */
static struct chunk_scratch chunk_scratch_of(float *scratch, const struct retention_dims *d,
					     int64_t global_head)
{
	int64_t c = d->chunk;
	float *p = scratch + (int64_t)omp_get_thread_num() * scratch_per_thread(d);
	struct chunk_scratch s;

	s.pw = p;
	p += pad16(c + 1);
	s.xi = p;
	p += pad16(c);
	s.zeta = p;
	p += pad16(c);
	s.xr = p;
	p += pad16(c);
	s.zr = p;
	p += pad16(c);
	s.a = p;
	p += pad16(c * c);
	s.w = p;
	p += pad16(c * d->dk);
	s.g = p;
	p += pad16(d->dk * d->dv);
	s.gt = p;
	p += pad16(d->dk * d->dv);
	s.q16 = (uint16_t *)p;
	p += bf16_floats(c * d->dk);
	s.k16 = (uint16_t *)p;
	p += bf16_floats(c * d->dk);
	s.v16 = (uint16_t *)p;
	p += bf16_floats(c * d->dv);
	s.do16 = (uint16_t *)p;
	p += bf16_floats(c * d->dv);
	s.a16 = (uint16_t *)p;
	p += bf16_floats(c * c);
	s.g16 = (uint16_t *)p;

	retention_decay_powers(s.pw, global_head, c + 1);
	for (int64_t i = 0; i < c; i++) {
		s.xi[i] = s.pw[i + 1];
		s.zeta[i] = s.pw[c - 1 - i];
	}
	return s;
}

/* a (n x n) .*= D: gamma^(i-j) on and below the diagonal, zero above it. */
RN_SIMD_CLONES
static void apply_decay_mask(float *a, const float *pw, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float *row = a + i * n;

		for (int64_t j = 0; j <= i; j++)
			row[j] *= pw[i - j];
		for (int64_t j = i + 1; j < n; j++)
			row[j] = 0.0f;
	}
}

/* a (n x n): the scores of row i for keys before the last document start at or
 * before i are zeroed (st: the chunk's n starts). */
static void apply_doc_mask(float *a, const uint8_t *st, int64_t n)
{
	int64_t seg = 0;

	for (int64_t i = 0; i < n; i++) {
		if (st[i])
			seg = i;
		memset(a + i * n, 0, sizeof(float) * (size_t)seg);
	}
}

/* dst (rows x cols, dense) = diag(s) src (row stride ld). */
RN_SIMD_CLONES
static void scale_rows(float *dst, const float *src, const float *s, int64_t rows,
		       int64_t cols, int64_t ld)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			dst[i * cols + j] = s[i] * src[i * ld + j];
}

/* dst (row stride ld) += diag(s) src (rows x cols, dense). */
RN_SIMD_CLONES
static void add_scaled_rows(float *dst, const float *src, const float *s, int64_t rows,
			    int64_t cols, int64_t ld)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			dst[i * ld + j] += s[i] * src[i * cols + j];
}

/*
 * The cached plan for C (+)= op(A) op(B), op(A): m x k, op(B): k x n. On a bf16
 * context every product is bf16, those that read a state S or its gradient G too:
 * S and G are summed in float32 (the output of the products that form them), so a
 * chunk reads them rounded once and the rounding does not compound along the
 * sequence (docs/benchmarks.md, "bf16: the whole main job", for what float32 state
 * readers would cost and give).
 */
static const struct matmul_plan *plan_of(struct kernels_ctx *ctx, int64_t m, int64_t n,
					 int64_t k, int64_t lda, bool trans_a, int64_t ldb,
					 bool trans_b, int64_t ldc, bool accumulate)
{
	struct matmul_shape s = {
		.batch = 1, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
		.trans_a = trans_a, .trans_b = trans_b, .accumulate = accumulate,
	};
	return matmul_plan_get(ctx, &s);
}

/* On bf16 products (on): dst, the bf16 copy of a rows x cols block with row stride
 * ld that several of a chunk's products read, converted once. NULL otherwise. */
static const uint16_t *chunk_bf16(bool on, uint16_t *dst, const float *src, int64_t rows,
				  int64_t cols, int64_t ld)
{
	if (!on)
		return NULL;
	bf16_pack(dst, src, 1, 0, rows, cols, ld);
	return dst;
}

/* As chunk_bf16, for an operand that is either float32 (src) or held as bf16 alone
 * (src16, the same layout): its rows are then copied, not converted. */
static const uint16_t *chunk_bf16_of(bool on, uint16_t *dst, const float *src,
				     const uint16_t *src16, int64_t rows, int64_t cols,
				     int64_t ld)
{
	if (!src16)
		return chunk_bf16(on, dst, src, rows, cols, ld);
	ENSURE(on); /* bf16 operands are for bf16 products */
	bf16_copy_rows(dst, src16, rows, cols, ld);
	return dst;
}

/* The rows of dO at element `at`: float32 (*doc) unless dO is held as bf16
 * (the return value), as V in chunk_at. */
static const uint16_t *dout_at(const struct retention_dims *d, const float *dout, int64_t at,
			       const float **doc)
{
	*doc = dout && !d->dout16 ? dout + at : NULL;
	return d->dout16 ? d->dout16 + at : NULL;
}

/* The operands of one chunk of one (batch, head) pair, read in place; a pass that
 * does not read an operand passes NULL for it. */
struct chunk_view {
	const float *q, *k, *v; /* (C, dk), (C, dk), (C, dv) with strides ldq, ldk, ldv */
	const uint16_t *v16;    /* (C, dv) with stride ldv when V is held as bf16 alone */
	int64_t row0;           /* first row of the chunk in the (batch * seq_len) rows */
	/* document starts inside the chunk: st (C) is NULL when it holds none; first
	 * and last are the rows of its first and last start (C and 0 when none) */
	const uint8_t *st;
	int64_t first, last;
};

static struct chunk_view chunk_at(const float *q, const float *k, const float *v,
				  const struct retention_dims *d, int64_t b, int64_t h,
				  int64_t c)
{
	struct chunk_view cv;

	cv.row0 = b * d->seq_len + c * d->chunk;
	cv.q = q ? q + cv.row0 * d->ldq + h * d->dk : NULL;
	cv.k = k ? k + cv.row0 * d->ldk + h * d->dk : NULL;
	/* V held as bf16: its float32 array is not read (chunk_bf16_of copies v16) */
	cv.v = v && !d->v16 ? v + cv.row0 * d->ldv + h * d->dv : NULL;
	cv.v16 = d->v16 ? d->v16 + cv.row0 * d->ldv + h * d->dv : NULL;
	cv.st = NULL;
	cv.first = d->chunk;
	cv.last = 0;
	for (int64_t i = 0; d->starts && i < d->chunk; i++)
		if (d->starts[cv.row0 + i]) {
			if (!cv.st)
				cv.first = i;
			cv.st = d->starts + cv.row0;
			cv.last = i;
		}
	return cv;
}

/*
 * The decay tables of a chunk: xi, zeta and gamma^C (carry) of the head, or for a
 * chunk that holds a document start, xi zeroed from its first start on (the state
 * entering the chunk is no longer seen there), zeta zeroed before its last start
 * and carry 0 (the state it passes on holds only the keys of its last document).
 */
struct chunk_tables {
	const float *xi, *zeta; /* (C) */
	float carry;
};

static struct chunk_tables chunk_tables_of(const struct chunk_scratch *s,
					   const struct chunk_view *cv, int64_t c)
{
	struct chunk_tables t = { s->xi, s->zeta, s->pw[c] };

	if (!cv->st)
		return t;
	for (int64_t i = 0; i < c; i++) {
		s->xr[i] = i < cv->first ? s->xi[i] : 0.0f;
		s->zr[i] = i >= cv->last ? s->zeta[i] : 0.0f;
	}
	t.xi = s->xr;
	t.zeta = s->zr;
	t.carry = 0.0f;
	return t;
}

/* x = carry x; carry 0 clears x (keeps 0 * inf out). */
RN_SIMD_CLONES
static void carry_state(float *x, float carry, int64_t n)
{
	if (carry == 0.0f)
		memset(x, 0, sizeof(float) * (size_t)n);
	else
		for (int64_t i = 0; i < n; i++)
			x[i] *= carry;
}

/* x = x + w y elementwise in double, rounded once to float; w = 0 adds nothing
 * (and keeps 0 * inf out). */
RN_SIMD_CLONES
static void fold_state(float *x, const float *y, double w, int64_t n)
{
	if (w == 0.0)
		return;
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)((double)x[i] + w * (double)y[i]);
}

/* ---------------------------------------------------------------------------------
 * Chunkwise forward. One pass for training and streaming; the passes of context
 * parallelism (states, then output) perform the same operations, split.
 */

struct fwd_plans {
	const struct matmul_plan *qk; /* A = Q_c K_c^T                   (C x C)   */
	const struct matmul_plan *av; /* O_c = A V_c                      (C x dv)  */
	const struct matmul_plan *qs; /* O_c += (diag(xi) Q_c) S_c        (C x dv)  */
	const struct matmul_plan *kv; /* S += (diag(zeta) K_c)^T V_c      (dk x dv) */
};

static struct fwd_plans fwd_plans_get(struct kernels_ctx *ctx, const struct retention_dims *d)
{
	int64_t c = d->chunk, dk = d->dk, dv = d->dv;
	struct fwd_plans p;

	p.qk = plan_of(ctx, c, c, dk, d->ldq, false, d->ldk, true, c, false);
	p.av = plan_of(ctx, c, dv, c, c, false, d->ldv, false, d->ldo, false);
	p.qs = plan_of(ctx, c, dv, dk, dk, false, dv, false, d->ldo, true);
	p.kv = plan_of(ctx, dk, dv, c, dk, true, d->ldv, false, dv, true);
	return p;
}

/* A = (Q_c K_c^T) .* D in the thread's scratch; q16, k16: bf16 copies or NULL. */
static void chunk_scores(struct kernels_ctx *ctx, const struct matmul_plan *qk,
			 const struct chunk_scratch *s, const struct chunk_view *cv,
			 const uint16_t *q16, const uint16_t *k16, int64_t c)
{
	matmul_run_pre(ctx, qk, s->a, cv->q, q16, cv->k, k16);
	apply_decay_mask(s->a, s->pw, c);
	if (cv->st)
		apply_doc_mask(s->a, cv->st, c);
}

/* O_c = A V_c, plus (diag(xi) Q_c) S_c when the chunk has a state (S_0 = 0 without a
 * carried state: the term is then skipped, not added as zero; so it is when a
 * document starts at the chunk's first row). */
static void chunk_output(struct kernels_ctx *ctx, const struct fwd_plans *p, float *oc,
			 const float *sc, bool has_state, const struct chunk_scratch *s,
			 const struct chunk_view *cv, const uint16_t *v16,
			 const struct retention_dims *d)
{
	chunk_scores(ctx, p->qk, s, cv, NULL, NULL, d->chunk);
	matmul_run_pre(ctx, p->av, oc, s->a, NULL, cv->v, v16);
	if (has_state && cv->first > 0) {
		struct chunk_tables t = chunk_tables_of(s, cv, d->chunk);

		scale_rows(s->w, cv->q, t.xi, d->chunk, d->dk, d->ldq);
		matmul_run(ctx, p->qs, oc, s->w, sc);
	}
}

/* next = gamma^C S_c + (diag(zeta) K_c)^T V_c, with the chunk's tables */
static void chunk_next_state(struct kernels_ctx *ctx, const struct fwd_plans *p, float *next,
			     const float *sc, const struct chunk_scratch *s,
			     const struct chunk_view *cv, const uint16_t *v16,
			     const struct retention_dims *d)
{
	int64_t sdim = d->dk * d->dv;
	struct chunk_tables t = chunk_tables_of(s, cv, d->chunk);

	if (t.carry == 0.0f)
		memset(next, 0, sizeof(float) * (size_t)sdim);
	else
		for (int64_t i = 0; i < sdim; i++)
			next[i] = t.carry * sc[i];
	scale_rows(s->w, cv->k, t.zeta, d->chunk, d->dk, d->ldk);
	matmul_run_pre(ctx, p->kv, next, s->w, NULL, cv->v, v16);
}

/*
 * One (batch, head) pair. S_c lives in saved_states; the state after the last chunk
 * goes to `state` when the caller streams, and is not formed otherwise.
 */
static void chunkwise_forward_pair(struct kernels_ctx *ctx, const struct fwd_plans *p,
				   float *o, float *saved, float *state, float *scratch,
				   const float *q, const float *k, const float *v,
				   const struct retention_dims *d, int64_t b, int64_t h)
{
	int64_t c = d->chunk, dv = d->dv, nchunks = d->seq_len / c;
	int64_t sdim = d->dk * dv;
	struct chunk_scratch s = chunk_scratch_of(scratch, d, d->head_offset + h);
	const bool bf16 = matmul_plan_is_bf16(p->av);

	if (state)
		memcpy(saved, state, sizeof(float) * sdim);
	else
		memset(saved, 0, sizeof(float) * sdim);

	for (int64_t ci = 0; ci < nchunks; ci++) {
		struct chunk_view cv = chunk_at(q, k, v, d, b, h, ci);
		float *oc = o + cv.row0 * d->ldo + h * d->dv;
		float *sc = saved + ci * sdim;
		float *next = ci + 1 < nchunks ? sc + sdim : state;
		/* read by A V_c and, but for the last chunk, the state update */
		const uint16_t *v16 = chunk_bf16_of(bf16, s.v16, cv.v, cv.v16, c, dv, d->ldv);

		chunk_output(ctx, p, oc, sc, ci > 0 || state, &s, &cv, v16, d);
		if (!next)
			break;
		chunk_next_state(ctx, p, next, sc, &s, &cv, v16, d);
	}
}

void retention_chunkwise_forward(struct kernels_ctx *ctx, float *o, float *saved_states,
				 float *state, float *scratch, const float *q, const float *k,
				 const float *v, const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads;
	int64_t sdim = dims->dk * dims->dv;
	int64_t nchunks;
	struct fwd_plans plans;

	check_chunk_dims(dims);
	nchunks = dims->seq_len / dims->chunk;
	/* Plans are created outside the parallel region (matmul_plan_get is not
	 * thread-safe); matmul_run is. */
	plans = fwd_plans_get(ctx, dims);

	/* Every pass hands out (batch, head) pairs one at a time: the pairs are the same
	 * work, but two threads sharing a memory bus do not run them at the same speed,
	 * and a fixed split leaves the faster one waiting. Which thread runs a pair
	 * changes no bit: each pair writes only its own outputs. */
#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t pr = 0; pr < pairs; pr++) {
		int64_t b = pr / dims->heads, h = pr % dims->heads;

		chunkwise_forward_pair(ctx, &plans, o, saved_states + pr * nchunks * sdim,
				       state ? state + pr * sdim : NULL, scratch, q, k, v, dims,
				       b, h);
	}
}

/* ---------------------------------------------------------------------------------
 * Context parallelism: the forward split around the exchange of states, and the
 * gradient with respect to a piece's incoming state.
 */

static void chunkwise_states_pair(struct kernels_ctx *ctx, const struct fwd_plans *p,
				  float *saved, float *summary, float *scratch, const float *k,
				  const float *v, const struct retention_dims *d, int64_t b,
				  int64_t h)
{
	int64_t nchunks = d->seq_len / d->chunk, sdim = d->dk * d->dv;
	struct chunk_scratch s = chunk_scratch_of(scratch, d, d->head_offset + h);
	const bool bf16 = matmul_plan_is_bf16(p->kv);

	memset(saved, 0, sizeof(float) * sdim);
	for (int64_t ci = 0; ci < nchunks; ci++) {
		struct chunk_view cv = chunk_at(NULL, k, v, d, b, h, ci);
		float *sc = saved + ci * sdim;

		chunk_next_state(ctx, p, ci + 1 < nchunks ? sc + sdim : summary, sc, &s, &cv,
				 chunk_bf16_of(bf16, s.v16, cv.v, cv.v16, d->chunk, d->dv, d->ldv),
				 d);
	}
}

void retention_chunkwise_states(struct kernels_ctx *ctx, float *saved_states, float *summary,
				float *scratch, const float *k, const float *v,
				const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads, sdim = dims->dk * dims->dv;
	int64_t nchunks;
	struct fwd_plans plans;

	check_chunk_dims(dims);
	nchunks = dims->seq_len / dims->chunk;
	plans = fwd_plans_get(ctx, dims);

#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t pr = 0; pr < pairs; pr++)
		chunkwise_states_pair(ctx, &plans, saved_states + pr * nchunks * sdim,
				      summary + pr * sdim, scratch, k, v, dims, pr / dims->heads,
				      pr % dims->heads);
}

static void chunkwise_output_pair(struct kernels_ctx *ctx, const struct fwd_plans *p,
				  float *o, float *saved, const float *s_in, float *scratch,
				  const float *q, const float *k, const float *v,
				  const struct retention_dims *d, int64_t b, int64_t h)
{
	int64_t c = d->chunk, nchunks = d->seq_len / c, sdim = d->dk * d->dv;
	int64_t gh = d->head_offset + h;
	struct chunk_scratch s = chunk_scratch_of(scratch, d, gh);
	const bool bf16 = matmul_plan_is_bf16(p->av);
	bool reset = false; /* a document started in an earlier chunk of the piece */

	for (int64_t ci = 0; ci < nchunks; ci++) {
		struct chunk_view cv = chunk_at(q, k, v, d, b, h, ci);
		float *sc = saved + ci * sdim;

		/* S_c = S_c(from zero) + gamma^(cC) s_in: the state of the whole sequence
		 * so far, which the inter-chunk term reads and backward reads again;
		 * after a document start s_in is no longer part of it. */
		if (s_in && !reset)
			fold_state(sc, s_in, retention_decay(gh, ci * c), sdim);
		reset = reset || cv.st;
		chunk_output(ctx, p, o + cv.row0 * d->ldo + h * d->dv, sc, ci > 0 || s_in, &s,
			     &cv, chunk_bf16_of(bf16, s.v16, cv.v, cv.v16, c, d->dv, d->ldv), d);
	}
}

void retention_chunkwise_output(struct kernels_ctx *ctx, float *o, float *saved_states,
				const float *s_in, float *scratch, const float *q, const float *k,
				const float *v, const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads, sdim = dims->dk * dims->dv;
	int64_t nchunks;
	struct fwd_plans plans;

	check_chunk_dims(dims);
	nchunks = dims->seq_len / dims->chunk;
	plans = fwd_plans_get(ctx, dims);

#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t pr = 0; pr < pairs; pr++)
		chunkwise_output_pair(ctx, &plans, o, saved_states + pr * nchunks * sdim,
				      s_in ? s_in + pr * sdim : NULL, scratch, q, k, v, dims,
				      pr / dims->heads, pr % dims->heads);
}

/*
 * ds_in = sum_c (diag(w_c) Q_c)^T dO_c with w_c[i] = gamma^(cC + i + 1): the weight
 * of the incoming state in row cC + i's output, each formed in double and rounded
 * once, rather than carried by repeated products with gamma^C.
 */
static void state_grad_pair(struct kernels_ctx *ctx, const struct matmul_plan *qdo, float *ds,
			    float *scratch, const float *dout, const float *q,
			    const struct retention_dims *d, int64_t b, int64_t h)
{
	int64_t c = d->chunk, dk = d->dk, nchunks = d->seq_len / c;
	int64_t gh = d->head_offset + h;
	struct chunk_scratch s = chunk_scratch_of(scratch, d, gh);
	const bool bf16 = matmul_plan_is_bf16(qdo);

	memset(ds, 0, sizeof(float) * dk * d->dv);
	for (int64_t ci = 0; ci < nchunks; ci++) {
		struct chunk_view cv = chunk_at(q, NULL, NULL, d, b, h, ci);
		const float *doc;
		const uint16_t *doc16 = dout_at(d, dout, cv.row0 * d->ldo + h * d->dv, &doc);
		float w0 = 0.0f;

		for (int64_t i = 0; i < c; i++) {
			float w = (float)retention_decay(gh, ci * c + i + 1);

			if (w < FLT_MIN || (cv.st && i >= cv.first))
				w = 0.0f;
			if (i == 0)
				w0 = w;
			for (int64_t j = 0; j < dk; j++)
				s.w[i * dk + j] = w * cv.q[i * d->ldq + j];
		}
		/* Weights only shrink along the piece, and are 0 after a document start:
		 * nothing further contributes. */
		if (w0 == 0.0f)
			break;
		matmul_run_pre(ctx, qdo, ds, s.w, NULL, doc,
			       chunk_bf16_of(bf16, s.do16, doc, doc16, c, d->dv, d->ldo));
		if (cv.st)
			break;
	}
}

void retention_chunkwise_state_grad(struct kernels_ctx *ctx, float *ds_in, float *scratch,
				    const float *dout, const float *q,
				    const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads, sdim = dims->dk * dims->dv;
	const struct matmul_plan *qdo;

	check_chunk_dims(dims);
	/* G += (diag(w) Q_c)^T dO_c   (dk x dv) */
	qdo = plan_of(ctx, dims->dk, dims->dv, dims->chunk, dims->dk, true, dims->ldo, false,
		      dims->dv, true);

#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t pr = 0; pr < pairs; pr++)
		state_grad_pair(ctx, qdo, ds_in + pr * sdim, scratch, dout, q, dims,
				pr / dims->heads, pr % dims->heads);
}

/* ---------------------------------------------------------------------------------
 * Chunkwise backward, sweeping chunks in reverse with G_c, the gradient flowing into
 * S_c from this piece's outputs (G_N = 0):
 *
 *   P_c  = (dO_c V_c^T) .* D
 *   dQ_c = P_c K_c + diag(xi) dO_c S_c^T
 *   dK_c = P_c^T Q_c + diag(zeta) V_c Gt_{c+1}^T
 *   dV_c = ((Q_c K_c^T) .* D)^T dO_c + diag(zeta) K_c Gt_{c+1}
 *   G_c  = (diag(xi) Q_c)^T dO_c + gamma^C G_{c+1}
 *
 * where Gt_{c+1} = G_{c+1} + gamma^((N-c-1) C) ds_out adds what flows in from later
 * pieces (Gt = G without them). G itself stays the gradient from this piece alone:
 * the later pieces' share is added once per chunk with its power in double instead
 * of being carried through N products with gamma^C rounded to float.
 */

struct bwd_plans {
	const struct matmul_plan *qk;   /* A = Q_c K_c^T                  (C x C)   */
	const struct matmul_plan *dov;  /* P = dO_c V_c^T                 (C x C)   */
	const struct matmul_plan *pk;   /* dQ_c = P K_c                   (C x dk)  */
	const struct matmul_plan *dos;  /* W = dO_c S_c^T                 (C x dk)  */
	const struct matmul_plan *ptq;  /* dK_c = P^T Q_c                 (C x dk)  */
	const struct matmul_plan *vg;   /* W = V_c G^T                    (C x dk)  */
	const struct matmul_plan *atdo; /* dV_c = A^T dO_c                (C x dv)  */
	const struct matmul_plan *kg;   /* dV_c += (diag(zeta) K_c) G     (C x dv)  */
	const struct matmul_plan *qdo;  /* G += (diag(xi) Q_c)^T dO_c     (dk x dv) */
};

static struct bwd_plans bwd_plans_get(struct kernels_ctx *ctx, const struct retention_dims *d)
{
	int64_t c = d->chunk, dk = d->dk, dv = d->dv;
	struct bwd_plans p;

	p.qk = plan_of(ctx, c, c, dk, d->ldq, false, d->ldk, true, c, false);
	p.dov = plan_of(ctx, c, c, dv, d->ldo, false, d->ldv, true, c, false);
	p.pk = plan_of(ctx, c, dk, c, c, false, d->ldk, false, d->ldq, false);
	p.dos = plan_of(ctx, c, dk, dv, d->ldo, false, dv, true, dk, false);
	p.ptq = plan_of(ctx, c, dk, c, c, true, d->ldq, false, d->ldk, false);
	p.vg = plan_of(ctx, c, dk, dv, d->ldv, false, dv, true, dk, false);
	p.atdo = plan_of(ctx, c, dv, c, c, true, d->ldo, false, d->ldv, false);
	p.kg = plan_of(ctx, c, dv, dk, dk, false, dv, false, d->ldv, true);
	p.qdo = plan_of(ctx, dk, dv, c, dk, true, d->ldo, false, dv, true);
	return p;
}

static bool all_zero(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (x[i] != 0.0f)
			return false;
	return true;
}

/* The gradient flowing into S_{ci+1} from everything after it, for global head gh:
 * G_{ci+1}, ds_out decayed, both, or NULL when both are zero (the term is skipped).
 * reset: a document starts after chunk ci in the piece, so S_{ci+1} does not reach
 * the state the piece passes on, nor ds_out it. */
static const float *grad_after(const struct chunk_scratch *s, const float *ds_out,
			       int64_t ci, int64_t nchunks, int64_t gh, bool reset,
			       const struct retention_dims *d)
{
	int64_t sdim = d->dk * d->dv;

	if (!ds_out || reset)
		return ci + 1 < nchunks ? s->g : NULL;
	if (ci + 1 == nchunks)
		return ds_out;
	memcpy(s->gt, s->g, sizeof(float) * sdim);
	fold_state(s->gt, ds_out, retention_decay(gh, (nchunks - 1 - ci) * d->chunk), sdim);
	return s->gt;
}

static void chunkwise_backward_pair(struct kernels_ctx *ctx, const struct bwd_plans *p,
				    float *dq, float *dk, float *dv, float *scratch,
				    const float *dout, const float *q, const float *k,
				    const float *v, const float *saved, const float *ds_out,
				    const struct retention_dims *d, int64_t b, int64_t h)
{
	int64_t c = d->chunk, dkw = d->dk, dvw = d->dv, nchunks = d->seq_len / c;
	int64_t sdim = dkw * dvw;
	struct chunk_scratch s = chunk_scratch_of(scratch, d, d->head_offset + h);
	const bool bf16 = matmul_plan_is_bf16(p->dov);
	/* An incoming state (streaming, or a later piece of a sequence) was read by
	 * chunk 0; from a zero state its dQ term vanishes and is skipped. */
	const bool has_s0 = !all_zero(saved, sdim);
	bool reset = false; /* a document starts in a later chunk */

	memset(s.g, 0, sizeof(float) * sdim);
	for (int64_t ci = nchunks - 1; ci >= 0; ci--) {
		struct chunk_view cv = chunk_at(q, k, v, d, b, h, ci);
		const float *doc;
		const uint16_t *doc16 = dout_at(d, dout, cv.row0 * d->ldo + h * dvw, &doc);
		float *dqc = dq + cv.row0 * d->ldq + h * dkw;
		float *dkc = dk + cv.row0 * d->ldk + h * dkw;
		float *dvc = dv + cv.row0 * d->ldv + h * dvw;
		bool has_state = (ci > 0 || has_s0) && cv.first > 0;
		const float *gnext = grad_after(&s, ds_out, ci, nchunks, d->head_offset + h,
						reset, d);
		struct chunk_tables t = chunk_tables_of(&s, &cv, c);
		/* Each read by two to four of the products below: converted once. */
		const uint16_t *q16 = chunk_bf16(bf16, s.q16, cv.q, c, dkw, d->ldq);
		const uint16_t *k16 = chunk_bf16(bf16, s.k16, cv.k, c, dkw, d->ldk);
		const uint16_t *v16 = chunk_bf16_of(bf16, s.v16, cv.v, cv.v16, c, dvw, d->ldv);
		const uint16_t *do16 = chunk_bf16_of(bf16, s.do16, doc, doc16, c, dvw, d->ldo);
		const uint16_t *a16, *g16;

		matmul_run_pre(ctx, p->dov, s.a, doc, do16, cv.v, v16);
		apply_decay_mask(s.a, s.pw, c);
		if (cv.st)
			apply_doc_mask(s.a, cv.st, c);
		a16 = chunk_bf16(bf16, s.a16, s.a, c, c, c);
		matmul_run_pre(ctx, p->pk, dqc, s.a, a16, cv.k, k16);
		if (has_state) {
			matmul_run_pre(ctx, p->dos, s.w, doc, do16, saved + ci * sdim, NULL);
			add_scaled_rows(dqc, s.w, t.xi, c, dkw, d->ldq);
		}
		matmul_run_pre(ctx, p->ptq, dkc, s.a, a16, cv.q, q16);
		/* read by V G^T and K G */
		g16 = gnext ? chunk_bf16(bf16, s.g16, gnext, dkw, dvw, dvw) : NULL;
		if (gnext) {
			matmul_run_pre(ctx, p->vg, s.w, cv.v, v16, gnext, g16);
			add_scaled_rows(dkc, s.w, t.zeta, c, dkw, d->ldk);
		}

		/* Recompute the masked scores rather than saving C x C per chunk. */
		chunk_scores(ctx, p->qk, &s, &cv, q16, k16, c);
		matmul_run_pre(ctx, p->atdo, dvc, s.a, NULL, doc, do16);
		if (gnext) {
			scale_rows(s.w, cv.k, t.zeta, c, dkw, d->ldk);
			matmul_run_pre(ctx, p->kg, dvc, s.w, NULL, gnext, g16);
		}

		/* G_0 is not needed here: the caller gets it from state_grad. */
		if (ci > 0) {
			carry_state(s.g, t.carry, sdim);
			if (cv.first > 0) {
				scale_rows(s.w, cv.q, t.xi, c, dkw, d->ldq);
				matmul_run_pre(ctx, p->qdo, s.g, s.w, NULL, doc, do16);
			}
		}
		reset = reset || cv.st;
	}
}

void retention_chunkwise_backward(struct kernels_ctx *ctx, float *dq, float *dk, float *dv,
				  float *scratch, const float *dout, const float *q,
				  const float *k, const float *v, const float *saved_states,
				  const float *ds_out, const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads;
	int64_t sdim = dims->dk * dims->dv;
	int64_t nchunks;
	struct bwd_plans plans;

	check_chunk_dims(dims);
	nchunks = dims->seq_len / dims->chunk;
	plans = bwd_plans_get(ctx, dims);

#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t pr = 0; pr < pairs; pr++) {
		int64_t b = pr / dims->heads, h = pr % dims->heads;

		chunkwise_backward_pair(ctx, &plans, dq, dk, dv, scratch, dout, q, k, v,
					saved_states + pr * nchunks * sdim,
					ds_out ? ds_out + pr * sdim : NULL, dims, b, h);
	}
}
