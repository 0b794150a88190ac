#include "trainer/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "parallel/comm.h"
#include "trainer/kernels/activation.h"
#include "trainer/kernels/embedding.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/norm.h"
#include "trainer/kernels/retention.h"
#include "trainer/kernels/xent.h"

/* Initialisation gains of the specification. */
#define GAIN_QKVG 0.17677669529663687 /* 2^-2.5 */
#define GAIN_WO 0.5                   /* 2^-1 */
#define EMBEDDING_STD 0.02

/* ---- parameter registry ------------------------------------------------ */

static int add_matrix(struct param_set *p, const char *name, int64_t rows, int64_t cols,
		      double gain)
{
	return param_set_add(p, name, 2, rows, cols, -1, 0, 0, PARAM_INIT_XAVIER, gain, true);
}

/* A matrix of which this rank holds rows (split_dim 0) or columns (1) [start, +len). */
static int add_split_matrix(struct param_set *p, const char *name, int64_t rows, int64_t cols,
			    int split_dim, int64_t start, int64_t len, double gain)
{
	return param_set_add(p, name, 2, rows, cols, split_dim, start, len, PARAM_INIT_XAVIER,
			     gain, true);
}

static int add_vector(struct param_set *p, const char *name, int64_t n, enum param_init init)
{
	return param_set_add(p, name, 1, n, 1, -1, 0, 0, init, 0.0, false);
}

/* Indices of one layer's tensors in the registry, in struct layer_tensors order. */
enum { LT_LN1_GAIN, LT_LN1_BIAS, LT_WQ, LT_WK, LT_WV, LT_WG, LT_WO, LT_LN2_GAIN, LT_LN2_BIAS,
       LT_W1, LT_B1, LT_W2, LT_B2, LT_COUNT };

/*
 * One layer's tensors with this rank's tensor-parallel slices: heads
 * [head_offset, +H/P) are columns [head_offset*dk, +qk) of Wq and Wk, columns
 * [head_offset*dv, +vw) of Wv and Wg and the same rows of Wo; FFN columns
 * [tp_rank*fl, +fl) of W1 and b1 and the same rows of W2.
 */
static void register_layer(struct model *m, int64_t l, int idx[LT_COUNT])
{
	struct param_set *p = &m->params;
	const int64_t d = m->cfg.hidden, f = m->cfg.ffn_hidden;
	const int64_t qk0 = m->head_offset * m->dk, v0 = m->head_offset * m->dv;
	const int64_t f0 = m->layout.tp_rank * m->fl;
	char name[PARAM_NAME_MAX];

#define NAME(suffix) (snprintf(name, sizeof(name), "layers/%ld/%s", (long)l, suffix), name)
	idx[LT_LN1_GAIN] = add_vector(p, NAME("ln1/gain"), d, PARAM_INIT_ONE);
	idx[LT_LN1_BIAS] = add_vector(p, NAME("ln1/bias"), d, PARAM_INIT_ZERO);
	idx[LT_WQ] = add_split_matrix(p, NAME("retention/wq"), d, d, 1, qk0, m->qk, GAIN_QKVG);
	idx[LT_WK] = add_split_matrix(p, NAME("retention/wk"), d, d, 1, qk0, m->qk, GAIN_QKVG);
	idx[LT_WV] = add_split_matrix(p, NAME("retention/wv"), d, 2 * d, 1, v0, m->vw, GAIN_QKVG);
	idx[LT_WG] = add_split_matrix(p, NAME("retention/wg"), d, 2 * d, 1, v0, m->vw, GAIN_QKVG);
	idx[LT_WO] = add_split_matrix(p, NAME("retention/wo"), 2 * d, d, 0, v0, m->vw, GAIN_WO);
	idx[LT_LN2_GAIN] = add_vector(p, NAME("ln2/gain"), d, PARAM_INIT_ONE);
	idx[LT_LN2_BIAS] = add_vector(p, NAME("ln2/bias"), d, PARAM_INIT_ZERO);
	idx[LT_W1] = add_split_matrix(p, NAME("ffn/w1"), d, f, 1, f0, m->fl, 1.0);
	idx[LT_B1] = param_set_add(p, NAME("ffn/b1"), 1, f, 1, 0, f0, m->fl, PARAM_INIT_ZERO, 0.0,
				   false);
	idx[LT_W2] = add_split_matrix(p, NAME("ffn/w2"), f, d, 0, f0, m->fl, 1.0);
	idx[LT_B2] = add_vector(p, NAME("ffn/b2"), d, PARAM_INIT_ZERO);
#undef NAME
}

static void bind_layer(struct layer_tensors *t, float *(*at)(const struct param_set *, int),
		       const struct param_set *p, const int idx[LT_COUNT])
{
	float **slot[LT_COUNT] = {
		&t->ln1_gain, &t->ln1_bias, &t->wq, &t->wk, &t->wv, &t->wg, &t->wo,
		&t->ln2_gain, &t->ln2_bias, &t->w1, &t->b1, &t->w2, &t->b2,
	};

	for (int i = 0; i < LT_COUNT; i++)
		*slot[i] = at(p, idx[i]);
}

/* The range of the flat block spanned by registry entries first..last. */
static struct grad_range range_of(const struct param_set *p, int first, int last)
{
	const struct param_desc *a = &p->desc[first], *b = &p->desc[last];
	struct grad_range r = {a->offset, b->offset + b->numel - a->offset};

	return r;
}

static void register_params(struct model *m)
{
	const struct model_config *c = &m->cfg;
	struct param_set *p = &m->params;
	int (*layer_idx)[LT_COUNT] = xcalloc((size_t)c->layers, sizeof(*layer_idx));
	int emb, lnf_g, lnf_b, head;

	param_set_init(p);
	emb = param_set_add(p, "embedding", 2, c->vocab, c->hidden, -1, 0, 0, PARAM_INIT_NORMAL,
			    EMBEDDING_STD, false);
	for (int64_t l = 0; l < c->layers; l++)
		register_layer(m, l, layer_idx[l]);
	lnf_g = add_vector(p, "final_ln/gain", c->hidden, PARAM_INIT_ONE);
	lnf_b = add_vector(p, "final_ln/bias", c->hidden, PARAM_INIT_ZERO);
	head = add_matrix(p, "lm_head", c->hidden, c->vocab, 1.0);
	param_set_alloc(p);

	m->w.layers = xcalloc((size_t)c->layers, sizeof(struct layer_tensors));
	m->dw.layers = xcalloc((size_t)c->layers, sizeof(struct layer_tensors));
	m->w.embedding = param_data(p, emb);
	m->dw.embedding = param_grad(p, emb);
	for (int64_t l = 0; l < c->layers; l++) {
		bind_layer(&m->w.layers[l], param_data, p, layer_idx[l]);
		bind_layer(&m->dw.layers[l], param_grad, p, layer_idx[l]);
	}
	m->w.lnf_gain = param_data(p, lnf_g);
	m->w.lnf_bias = param_data(p, lnf_b);
	m->w.lm_head = param_data(p, head);
	m->dw.lnf_gain = param_grad(p, lnf_g);
	m->dw.lnf_bias = param_grad(p, lnf_b);
	m->dw.lm_head = param_grad(p, head);

	m->head_range = range_of(p, lnf_g, head);
	m->embedding_range = range_of(p, emb, emb);
	m->layer_range = xcalloc((size_t)c->layers, sizeof(*m->layer_range));
	for (int64_t l = 0; l < c->layers; l++)
		m->layer_range[l] = range_of(p, layer_idx[l][0], layer_idx[l][LT_COUNT - 1]);
	free(layer_idx);
}

/* ---- activations --------------------------------------------------------- */

static float *alloc_floats(size_t *total, int64_t count)
{
	size_t bytes = size_mul_checked(sizeof(float), (size_t)count, "activation buffer");

	*total += bytes;
	return xaligned_alloc(bytes);
}

static struct retention_dims retention_dims_of(const struct model *m)
{
	struct retention_dims r = {
		.batch = m->cfg.micro_batch, .seq_len = m->cfg.seq_len, .heads = m->heads_local,
		.head_offset = m->head_offset, .dk = m->dk, .dv = m->dv, .chunk = m->cfg.chunk,
		.ldq = m->qk, .ldk = m->qk, .ldv = m->vw, .ldo = m->vw,
	};
	return r;
}

static size_t alloc_activations(struct model *m)
{
	const int64_t M = m->rows, d = m->cfg.hidden, f = m->fl, H = m->heads_local;
	const int64_t qk = m->qk, vw = m->vw;
	struct retention_dims rd = retention_dims_of(m);
	size_t total = 0;

	m->acts = xcalloc((size_t)m->cfg.layers, sizeof(*m->acts));
	for (int64_t l = 0; l < m->cfg.layers; l++) {
		struct layer_acts *a = &m->acts[l];

		a->x = alloc_floats(&total, M * d);
		a->ln1 = alloc_floats(&total, M * d);
		a->ln1_mean = alloc_floats(&total, M);
		a->ln1_rstd = alloc_floats(&total, M);
		a->q = alloc_floats(&total, M * qk);
		a->k = alloc_floats(&total, M * qk);
		a->v = alloc_floats(&total, M * vw);
		a->g = alloc_floats(&total, M * vw);
		a->o = alloc_floats(&total, M * vw);
		a->gn_mean = alloc_floats(&total, M * H);
		a->gn_rstd = alloc_floats(&total, M * H);
		a->gn = alloc_floats(&total, M * vw);
		a->gated = alloc_floats(&total, M * vw);
		a->states = alloc_floats(&total, retention_state_floats(&rd));
		a->y = alloc_floats(&total, M * d);
		a->ln2 = alloc_floats(&total, M * d);
		a->ln2_mean = alloc_floats(&total, M);
		a->ln2_rstd = alloc_floats(&total, M);
		a->h_pre = alloc_floats(&total, M * f);
		a->h = alloc_floats(&total, M * f);
	}
	m->x_final = alloc_floats(&total, M * d);
	m->lnf = alloc_floats(&total, M * d);
	m->lnf_mean = alloc_floats(&total, M);
	m->lnf_rstd = alloc_floats(&total, M);
	m->logits = alloc_floats(&total, M * m->cfg.vocab);
	m->losses = alloc_floats(&total, M);
	m->targets = xcalloc((size_t)M, sizeof(int32_t));
	m->dx = alloc_floats(&total, M * d);
	m->dln = alloc_floats(&total, M * d);
	m->dq = alloc_floats(&total, M * qk);
	m->dk_ = alloc_floats(&total, M * qk);
	m->dv_ = alloc_floats(&total, M * vw);
	m->dg = alloc_floats(&total, M * vw);
	m->dgated = alloc_floats(&total, M * vw);
	m->dgn = alloc_floats(&total, M * vw);
	m->do_ = alloc_floats(&total, M * vw);
	m->dh = alloc_floats(&total, M * f);
	m->retention_scratch = alloc_floats(&total, retention_scratch_floats(&rd));
	m->recurrent_state = alloc_floats(&total, rd.batch * rd.heads * rd.dk * rd.dv);
	m->inputs = xcalloc((size_t)M, sizeof(int32_t));
	return total;
}

static void free_activations(struct model *m)
{
	for (int64_t l = 0; l < m->cfg.layers; l++) {
		struct layer_acts *a = &m->acts[l];
		float *bufs[] = {a->x, a->ln1, a->ln1_mean, a->ln1_rstd, a->q, a->k, a->v, a->g,
				 a->o, a->gn_mean, a->gn_rstd, a->gn, a->gated, a->states, a->y,
				 a->ln2, a->ln2_mean, a->ln2_rstd, a->h_pre, a->h};

		for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
			free(bufs[i]);
	}
	free(m->acts);
	float *rest[] = {m->x_final, m->lnf, m->lnf_mean, m->lnf_rstd, m->logits, m->losses,
			 m->dx, m->dln, m->dq, m->dk_, m->dv_, m->dg, m->dgated, m->dgn, m->do_,
			 m->dh, m->retention_scratch, m->recurrent_state};
	for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
		free(rest[i]);
	free(m->targets);
	free(m->inputs);
}

void model_init(struct model *m, const struct model_config *cfg,
		const struct model_layout *layout)
{
	const struct model_layout single = {.tp_rank = 0, .tp_size = 1, .tp_comm = MPI_COMM_NULL};

	memset(m, 0, sizeof(*m));
	m->layout = layout ? *layout : single;
	ENSURE(cfg->vocab > 0 && cfg->hidden > 0 && cfg->layers > 0 && cfg->heads > 0);
	ENSURE(cfg->hidden % cfg->heads == 0 && (cfg->hidden / cfg->heads) % 2 == 0);
	ENSURE(cfg->chunk > 0 && cfg->seq_len % cfg->chunk == 0 && cfg->micro_batch > 0);
	ENSURE(m->layout.tp_size >= 1 && cfg->heads % m->layout.tp_size == 0 &&
	       cfg->ffn_hidden % m->layout.tp_size == 0);
	m->cfg = *cfg;
	m->dk = cfg->hidden / cfg->heads;
	m->dv = 2 * m->dk;
	m->heads_local = cfg->heads / m->layout.tp_size;
	m->head_offset = m->layout.tp_rank * m->heads_local;
	m->qk = m->heads_local * m->dk;
	m->vw = m->heads_local * m->dv;
	m->fl = cfg->ffn_hidden / m->layout.tp_size;
	m->rows = cfg->micro_batch * cfg->seq_len;
	m->form = RETENTION_CHUNKWISE;
	register_params(m);
	param_set_init_values(&m->params, cfg->seed);
	m->kernels = kernels_ctx_init();
	rotary_table_init(&m->rotary, cfg->seq_len, m->dk, 0);
	m->activation_bytes = alloc_activations(m);
}

void model_free(struct model *m)
{
	free_activations(m);
	rotary_table_free(&m->rotary);
	kernels_ctx_free(m->kernels);
	free(m->w.layers);
	free(m->dw.layers);
	free(m->layer_range);
	param_set_free(&m->params);
}

size_t model_activation_bytes(const struct model *m)
{
	return m->activation_bytes;
}

/* ---- forward ------------------------------------------------------------- */

static void scale(float *x, float s, int64_t n)
{
#pragma omp parallel for simd
	for (int64_t i = 0; i < n; i++)
		x[i] *= s;
}

static void retention_forward(struct model *m, struct layer_acts *a)
{
	struct retention_dims rd = retention_dims_of(m);

	switch (m->form) {
	case RETENTION_CHUNKWISE:
		retention_chunkwise_forward(m->kernels, a->o, a->states, NULL,
					    m->retention_scratch, a->q, a->k, a->v, &rd);
		break;
	case RETENTION_PARALLEL:
		retention_parallel_forward(a->o, a->q, a->k, a->v, &rd);
		break;
	case RETENTION_RECURRENT:
		memset(m->recurrent_state, 0,
		       sizeof(float) * (size_t)(rd.batch * rd.heads * rd.dk * rd.dv));
		retention_recurrent_forward(a->o, m->recurrent_state, a->q, a->k, a->v, &rd);
		break;
	}
}

/* Sums a partial result over the tensor-parallel group (the identity for P = 1). */
static void tp_allreduce(const struct model *m, float *buf, int64_t count)
{
	if (m->layout.tp_size > 1)
		/* collective: all ranks of tp_comm */
		comm_allreduce_sum_f32(m->layout.tp_comm, buf, (size_t)count);
}

/* One pre-LN block: x_out = Y + FFN(LN2(Y)), Y = x + MSR(LN1(x)), with x = a->x. */
static void block_forward(struct model *m, int64_t l, float *x_out)
{
	const struct layer_tensors *w = &m->w.layers[l];
	struct layer_acts *a = &m->acts[l];
	struct kernels_ctx *kc = m->kernels;
	const int64_t M = m->rows, d = m->cfg.hidden, qk = m->qk, vw = m->vw, fl = m->fl;
	const int64_t B = m->cfg.micro_batch, Hl = m->heads_local;

	/* MSR(LN1(x)) on this rank's heads */
	layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, a->x, w->ln1_gain, w->ln1_bias, M, d);
	matmul(kc, a->q, a->ln1, w->wq, M, qk, d, false, false, false);
	matmul(kc, a->k, a->ln1, w->wk, M, qk, d, false, false, false);
	matmul(kc, a->v, a->ln1, w->wv, M, vw, d, false, false, false);
	matmul(kc, a->g, a->ln1, w->wg, M, vw, d, false, false, false);
	scale(a->k, (float)(1.0 / sqrt((double)m->dk)), M * qk);
	rotary_apply(a->q, &m->rotary, B, Hl, qk, +1);
	rotary_apply(a->k, &m->rotary, B, Hl, qk, +1);
	retention_forward(m, a);
	groupnorm_forward(a->gn, a->gn_mean, a->gn_rstd, a->o, M, Hl, m->dv);
	swish_gate_forward(a->gated, a->g, a->gn, M * vw);
	matmul(kc, a->y, a->gated, w->wo, M, d, vw, false, false, false);
	/* TP all-reduce 1 of 2 (forward): the heads' partial MSR outputs. Its conjugate
	 * in backward is the all-reduce of the LN1 output gradient. */
	tp_allreduce(m, a->y, M * d);
	vec_add(a->y, a->y, a->x, M * d);

	/* FFN(LN2(Y)) on this rank's columns */
	layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->y, w->ln2_gain, w->ln2_bias, M, d);
	matmul(kc, a->h_pre, a->ln2, w->w1, M, fl, d, false, false, false);
	bias_add(a->h_pre, w->b1, M, fl);
	gelu_forward(a->h, a->h_pre, M * fl);
	matmul(kc, x_out, a->h, w->w2, M, d, fl, false, false, false);
	/* TP all-reduce 2 of 2 (forward): the partial FFN outputs; b2 is added once,
	 * after it. Conjugate: the all-reduce of the LN2 output gradient. */
	tp_allreduce(m, x_out, M * d);
	bias_add(x_out, w->b2, M, d);
	vec_add(x_out, x_out, a->y, M * d);
}

float model_forward(struct model *m, const int32_t *inputs, const int32_t *targets)
{
	const int64_t M = m->rows, d = m->cfg.hidden, V = m->cfg.vocab, L = m->cfg.layers;
	double sum = 0.0;

	memcpy(m->inputs, inputs, sizeof(int32_t) * (size_t)M);
	memcpy(m->targets, targets, sizeof(int32_t) * (size_t)M);
	embedding_forward(m->acts[0].x, m->w.embedding, inputs, M, d);
	for (int64_t l = 0; l < L; l++)
		block_forward(m, l, l + 1 < L ? m->acts[l + 1].x : m->x_final);
	layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, m->x_final, m->w.lnf_gain,
			  m->w.lnf_bias, M, d);
	matmul(m->kernels, m->logits, m->lnf, m->w.lm_head, M, V, d, false, false, false);
	xent_forward(m->losses, m->logits, targets, M, V);
	for (int64_t r = 0; r < M; r++)
		sum += m->losses[r];
	return (float)(sum / (double)M);
}

/* ---- backward ------------------------------------------------------------ */

/* dx holds dLoss/d(block output) on entry and dLoss/d(block input) on return;
 * dx is the same on every TP rank, so are the gradients of replicated tensors. */
static void block_backward(struct model *m, int64_t l)
{
	const struct layer_tensors *w = &m->w.layers[l];
	const struct layer_tensors *dw = &m->dw.layers[l];
	struct layer_acts *a = &m->acts[l];
	struct kernels_ctx *kc = m->kernels;
	const int64_t M = m->rows, d = m->cfg.hidden, qk = m->qk, vw = m->vw, fl = m->fl;
	const int64_t B = m->cfg.micro_batch, Hl = m->heads_local;
	struct retention_dims rd = retention_dims_of(m);

	/* FFN: x_out = y + gelu(ln2 W1 + b1) W2 + b2 */
	bias_backward(dw->b2, m->dx, M, d);
	matmul(kc, dw->w2, a->h, m->dx, fl, d, M, true, false, true);
	matmul(kc, m->dh, m->dx, w->w2, M, fl, d, false, true, false);
	gelu_backward(m->dh, m->dh, a->h_pre, M * fl);
	bias_backward(dw->b1, m->dh, M, fl);
	matmul(kc, dw->w1, a->ln2, m->dh, d, fl, M, true, false, true);
	matmul(kc, m->dln, m->dh, w->w1, M, d, fl, false, true, false);
	/* TP all-reduce 1 of 2 (backward): the LN2 output gradient from this rank's
	 * columns; conjugate of the forward FFN all-reduce. */
	tp_allreduce(m, m->dln, M * d);
	layernorm_backward(m->dx, dw->ln2_gain, dw->ln2_bias, m->dln, a->y, w->ln2_gain,
			   a->ln2_mean, a->ln2_rstd, M, d);

	/* MSR: y = x + (swish(g) * GroupNorm(retention(q, k, v))) Wo */
	matmul(kc, dw->wo, a->gated, m->dx, vw, d, M, true, false, true);
	matmul(kc, m->dgated, m->dx, w->wo, M, vw, d, false, true, false);
	swish_gate_backward(m->dg, m->dgn, m->dgated, a->g, a->gn, M * vw);
	groupnorm_backward(m->do_, m->dgn, a->o, a->gn_mean, a->gn_rstd, M, Hl, m->dv);
	if (m->form == RETENTION_PARALLEL)
		retention_parallel_backward(m->dq, m->dk_, m->dv_, m->do_, a->q, a->k, a->v, &rd);
	else
		retention_chunkwise_backward(kc, m->dq, m->dk_, m->dv_, m->retention_scratch,
					     m->do_, a->q, a->k, a->v, a->states, &rd);
	rotary_apply(m->dq, &m->rotary, B, Hl, qk, -1);
	rotary_apply(m->dk_, &m->rotary, B, Hl, qk, -1);
	scale(m->dk_, (float)(1.0 / sqrt((double)m->dk)), M * qk);
	matmul(kc, dw->wq, a->ln1, m->dq, d, qk, M, true, false, true);
	matmul(kc, dw->wk, a->ln1, m->dk_, d, qk, M, true, false, true);
	matmul(kc, dw->wv, a->ln1, m->dv_, d, vw, M, true, false, true);
	matmul(kc, dw->wg, a->ln1, m->dg, d, vw, M, true, false, true);
	matmul(kc, m->dln, m->dq, w->wq, M, d, qk, false, true, false);
	matmul(kc, m->dln, m->dk_, w->wk, M, d, qk, false, true, true);
	matmul(kc, m->dln, m->dv_, w->wv, M, d, vw, false, true, true);
	matmul(kc, m->dln, m->dg, w->wg, M, d, vw, false, true, true);
	/* TP all-reduce 2 of 2 (backward): the LN1 output gradient from this rank's
	 * heads; conjugate of the forward MSR all-reduce. */
	tp_allreduce(m, m->dln, M * d);
	layernorm_backward(m->dx, dw->ln1_gain, dw->ln1_bias, m->dln, a->x, w->ln1_gain,
			   a->ln1_mean, a->ln1_rstd, M, d);
}

static void announce(const struct model *m, struct grad_range r)
{
	if (m->grad_ready)
		m->grad_ready(m->grad_ready_arg, r.offset, r.count);
}

void model_backward(struct model *m, float loss_scale)
{
	const int64_t M = m->rows, d = m->cfg.hidden, V = m->cfg.vocab;

	ENSURE(m->form != RETENTION_RECURRENT);
	xent_backward(m->logits, m->logits, m->targets, loss_scale / (float)M, M, V);
	matmul(m->kernels, m->dw.lm_head, m->lnf, m->logits, d, V, M, true, false, true);
	matmul(m->kernels, m->dln, m->logits, m->w.lm_head, M, d, V, false, true, false);
	memset(m->dx, 0, sizeof(float) * (size_t)(M * d));
	layernorm_backward(m->dx, m->dw.lnf_gain, m->dw.lnf_bias, m->dln, m->x_final,
			   m->w.lnf_gain, m->lnf_mean, m->lnf_rstd, M, d);
	announce(m, m->head_range);
	for (int64_t l = m->cfg.layers - 1; l >= 0; l--) {
		block_backward(m, l);
		announce(m, m->layer_range[l]);
	}
	embedding_backward(m->dw.embedding, m->dx, m->inputs, M, d);
	announce(m, m->embedding_range);
}

double model_grad_sumsq(const struct model *m)
{
	const struct param_set *p = &m->params;
	double sums[2] = {0.0, 0.0}; /* sharded, replicated */

	for (int i = 0; i < p->count; i++) {
		const float *g = p->grad + p->desc[i].offset;
		const int64_t n = (int64_t)p->desc[i].numel;
		double s = 0.0;

#pragma omp parallel for reduction(+ : s)
		for (int64_t j = 0; j < n; j++)
			s += (double)g[j] * g[j];
		sums[p->desc[i].slice.split_dim >= 0 ? 0 : 1] += s;
	}
	if (m->layout.tp_size > 1)
		/* collective: all ranks of tp_comm */
		comm_allreduce_sum_f64(m->layout.tp_comm, sums, 1);
	return sums[0] + sums[1];
}

double model_flops_per_token(const struct model_config *c)
{
	const double d = (double)c->hidden, f = (double)c->ffn_hidden, V = (double)c->vocab;
	const double H = (double)c->heads, dk = d / H, dv = 2.0 * d / H, C = (double)c->chunk;
	double forward = (double)c->layers *
			 (2.0 * (2 * d * d + 4 * d * d + 2 * d * d) + 4.0 * d * f +
			  2.0 * C * (d + 2 * d) + 4.0 * H * dk * dv) +
			 2.0 * d * V;

	return 3.0 * forward;
}
