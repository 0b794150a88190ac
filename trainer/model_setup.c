#include "trainer/model_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoints/layout.h"
#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/retention.h"
#include "trainer/model_internal.h"

/* Initialisation gains of the specification. */
#define GAIN_QKVG 0.17677669529663687 /* 2^-2.5 */
#define GAIN_WO 0.5                   /* 2^-1 */
#define EMBEDDING_STD 0.02

void model_setup_stage_layers(int64_t layers, int stages, int stage, int64_t *first,
			      int64_t *count)
{
	layout_even_range(layers, stages, stage, first, count);
}

void model_setup_chunk_layers(int64_t layers, int stages, int stage, int64_t per_chunk,
			      int chunk, int64_t *first, int64_t *count)
{
	if (!per_chunk) {
		ENSURE(chunk == 0);
		model_setup_stage_layers(layers, stages, stage, first, count);
		return;
	}
	*first = ((int64_t)chunk * stages + stage) * per_chunk;
	*count = per_chunk;
}

void model_setup_chunks(struct model *m, int64_t per_chunk, const int *slots)
{
	m->chunks = xcalloc((size_t)m->nchunks, sizeof(*m->chunks));
	m->num_layers = 0;
	for (int c = 0; c < m->nchunks; c++) {
		struct model_chunk *ch = &m->chunks[c];

		model_setup_chunk_layers(m->L, (int)m->pp_size, (int)m->pp_rank, per_chunk, c,
					 &ch->first_layer, &ch->num_layers);
		ENSURE(ch->num_layers >= 1 && ch->first_layer + ch->num_layers <= m->L);
		ch->local_first = m->num_layers;
		m->num_layers += ch->num_layers;
		ch->first = m->first_stage && c == 0;
		ch->last = m->last_stage && c == m->nchunks - 1;
		ch->slots = slots[c];
		ENSURE(ch->slots >= 1);
	}
}

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
	const int64_t d = m->d, f = m->f;
	const int64_t qk0 = m->head_offset * m->dk, v0 = m->head_offset * m->dv;
	const int64_t f0 = m->tp_rank * m->fl;
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

/* Adds the range of the flat block spanned by registry entries first..last to the
 * list of ranges backward finishes; returns its index. */
static int add_range(struct model *m, int first, int last)
{
	const struct param_desc *a = &m->params.desc[first], *b = &m->params.desc[last];

	m->ranges[m->nranges] = (struct grad_range){a->offset, b->offset + b->numel - a->offset};
	return m->nranges++;
}

/* Registry order = flat-block order: embedding, the stage's layers (its chunks in
 * order), final LN, head. Backward finishes them in reverse: a stage ends its chunks'
 * last backwards in the order last chunk .. chunk 0 (parallel/pipeline.h). */
void model_setup_params(struct model *m)
{
	const int64_t nl = m->num_layers;
	struct param_set *p = &m->params;
	int (*layer_idx)[LT_COUNT] = xcalloc((size_t)nl, sizeof(*layer_idx));
	int emb = -1, lnf_g = -1, lnf_b = -1, head = -1;

	param_set_init(p);
	if (m->first_stage)
		emb = param_set_add(p, "embedding", 2, m->V, m->d, -1, 0, 0,
				    PARAM_INIT_NORMAL, EMBEDDING_STD, false);
	for (int c = 0; c < m->nchunks; c++)
		for (int64_t j = 0; j < m->chunks[c].num_layers; j++)
			register_layer(m, m->chunks[c].first_layer + j,
				       layer_idx[m->chunks[c].local_first + j]);
	if (m->last_stage) {
		lnf_g = add_vector(p, "final_ln/gain", m->d, PARAM_INIT_ONE);
		lnf_b = add_vector(p, "final_ln/bias", m->d, PARAM_INIT_ZERO);
		head = add_matrix(p, "lm_head", m->d, m->V, 1.0);
	}
	param_set_alloc(p);

	m->w.layers = xcalloc((size_t)nl, sizeof(struct layer_tensors));
	m->dw.layers = xcalloc((size_t)nl, sizeof(struct layer_tensors));
	for (int64_t i = 0; i < nl; i++) {
		bind_layer(&m->w.layers[i], param_data, p, layer_idx[i]);
		bind_layer(&m->dw.layers[i], param_grad, p, layer_idx[i]);
	}
	if (m->first_stage) {
		m->w.embedding = param_data(p, emb);
		m->dw.embedding = param_grad(p, emb);
	}
	if (m->last_stage) {
		m->w.lnf_gain = param_data(p, lnf_g);
		m->w.lnf_bias = param_data(p, lnf_b);
		m->w.lm_head = param_data(p, head);
		m->dw.lnf_gain = param_grad(p, lnf_g);
		m->dw.lnf_bias = param_grad(p, lnf_b);
		m->dw.lm_head = param_grad(p, head);
	}
	/* in the order backward finishes them: head, layers from the last, embedding */
	m->ranges = xcalloc((size_t)nl + 2, sizeof(*m->ranges));
	m->layer_range = xcalloc((size_t)nl, sizeof(*m->layer_range));
	m->head_range = m->last_stage ? add_range(m, lnf_g, head) : -1;
	for (int64_t i = nl - 1; i >= 0; i--)
		m->layer_range[i] = add_range(m, layer_idx[i][0], layer_idx[i][LT_COUNT - 1]);
	m->embedding_range = m->first_stage ? add_range(m, emb, emb) : -1;
	free(layer_idx);
}

/* ---- activations --------------------------------------------------------- */

/* Every buffer goes through here and is remembered for model_setup_free. */
struct buffer_list {
	struct buffer {
		void *p;
		size_t bytes;
		bool copied; /* a copied output (COPIED_OUTPUT), mapped */
	} *items;
	size_t count, cap, bytes;
};

static void *take_buffer(struct buffer_list *l, size_t count, size_t elem, bool copied)
{
	size_t bytes = size_mul_checked(elem, count, "activation buffer");
	void *p = copied ? xmapped_alloc(bytes) : xaligned_alloc(bytes);

	if (l->count == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->items = realloc(l->items, l->cap * sizeof(*l->items));
		CHECK_PTR(l->items);
	}
	l->items[l->count++] = (struct buffer){p, bytes, copied};
	l->bytes += bytes;
	return p;
}

static void *take(struct buffer_list *l, size_t count, size_t elem)
{
	return take_buffer(l, count, elem, false);
}

#define FLOATS(n) take(bl, (size_t)(n), sizeof(float))
/* The float32 output of a kernel that, on bf16, writes its bf16 copy alone (model.c,
 * matmul_sole_target): mapped, so that a bf16 run, which never writes it, gives it
 * no memory (model_setup_copied_outputs). */
#define COPIED_OUTPUT(n) take_buffer(bl, (size_t)(n), sizeof(float), true)

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
	int64_t ab = a > b ? a : b;

	return ab > c ? ab : c;
}

/* An empty bf16 copy of `elems` values, listed for model_set_bf16 and
 * model_setup_free; its buffer comes on first use or reservation. */
static struct matmul_kept *new_kept(struct model *m, int64_t elems)
{
	struct matmul_kept *k = xcalloc(1, sizeof(*k));

	m->kept_refs = realloc(m->kept_refs, (size_t)(m->nkept_refs + 1) * sizeof(*m->kept_refs));
	CHECK_PTR(m->kept_refs);
	m->kept_refs[m->nkept_refs++] = (struct kept_ref){k, elems};
	return k;
}

static void alloc_layer(struct buffer_list *bl, struct layer_acts *a, struct model *m,
			int64_t state_floats)
{
	const int64_t M = m->rows, d = m->d, qk = m->qk, vw = m->vw, fl = m->fl;
	const int64_t Hl = m->heads_local;

	a->x = FLOATS(M * d);
	a->ln1 = COPIED_OUTPUT(M * d);
	a->ln1_mean = FLOATS(M);
	a->ln1_rstd = FLOATS(M);
	a->q = FLOATS(M * qk);
	a->k = FLOATS(M * qk);
	a->v = COPIED_OUTPUT(M * vw);
	a->g = FLOATS(M * vw);
	a->o = FLOATS(M * vw);
	a->gn_mean = take(bl, (size_t)(M * Hl), sizeof(double));
	a->gn_rstd = take(bl, (size_t)(M * Hl), sizeof(double));
	a->gated = COPIED_OUTPUT(M * vw);
	a->states = FLOATS(state_floats);
	a->y = FLOATS(M * d);
	a->ln2 = COPIED_OUTPUT(M * d);
	a->ln2_mean = FLOATS(M);
	a->ln2_rstd = FLOATS(M);
	a->h_pre = FLOATS(M * fl);
	a->h = COPIED_OUTPUT(M * fl);
	a->kept[KEPT_LN1] = new_kept(m, M * d);
	a->kept[KEPT_GATED] = new_kept(m, M * vw);
	a->kept[KEPT_LN2] = new_kept(m, M * d);
	a->kept[KEPT_H] = new_kept(m, M * fl);
	a->kept[KEPT_V] = new_kept(m, M * vw);
}

/* One micro-batch's activations on chunk ch; shared: recompute's layer buffers, all
 * but each block's input shared by every layer (NULL: each layer its own). */
static void alloc_micro(struct buffer_list *bl, struct micro_acts *mb, struct model *m,
			const struct model_chunk *ch, const struct layer_acts *shared,
			int64_t state_floats)
{
	const int64_t M = m->rows, d = m->d;

	mb->layers = xcalloc((size_t)ch->num_layers, sizeof(*mb->layers));
	for (int64_t i = 0; i < ch->num_layers; i++) {
		if (shared) {
			mb->layers[i] = *shared;
			mb->layers[i].x = FLOATS(M * d);
		} else {
			alloc_layer(bl, &mb->layers[i], m, state_floats);
		}
	}
	mb->out = FLOATS(M * d);
	mb->inputs = take(bl, (size_t)M, sizeof(int32_t));
	mb->targets = take(bl, (size_t)M, sizeof(int32_t));
	mb->starts = take(bl, (size_t)M, 1);
	mb->piece_starts = take(bl, (size_t)(m->cp_size * m->B), 1);
	if (ch->last) {
		mb->loss_mask = take(bl, (size_t)M, 1);
		mb->lnf = COPIED_OUTPUT(M * d);
		mb->lnf_mean = FLOATS(M);
		mb->lnf_rstd = FLOATS(M);
		mb->logits = FLOATS(M * m->V);
		mb->losses = FLOATS(M);
		mb->lnf_kept = new_kept(m, M * d);
	}
}

size_t model_setup_activations(struct model *m)
{
	struct buffer_list *bl = xcalloc(1, sizeof(*bl));
	const int64_t M = m->rows, d = m->d, qk = m->qk, vw = m->vw;
	struct retention_dims rd = {
		.batch = m->B, .seq_len = m->T, .heads = m->heads_local,
		.head_offset = m->head_offset, .dk = m->dk, .dv = m->dv, .chunk = m->C,
		.ldq = qk, .ldk = qk, .ldv = vw, .ldo = vw,
	};

	struct layer_acts shared;

	if (m->recompute)
		alloc_layer(bl, &shared, m, retention_state_floats(&rd));
	m->recompute_slot = -1;
	for (int c = 0; c < m->nchunks; c++) {
		struct model_chunk *ch = &m->chunks[c];

		ch->micro = xcalloc((size_t)ch->slots, sizeof(*ch->micro));
		for (int s = 0; s < ch->slots; s++)
			alloc_micro(bl, &ch->micro[s], m, ch, m->recompute ? &shared : NULL,
				    retention_state_floats(&rd));
	}
	m->dx = FLOATS(M * d);
	m->dln = FLOATS(M * d);
	m->dq = FLOATS(M * qk);
	m->dk_ = FLOATS(M * qk);
	m->dv_ = FLOATS(M * vw);
	m->dg = COPIED_OUTPUT(M * vw);
	m->dgated = FLOATS(M * vw);
	m->do_ = COPIED_OUTPUT(M * vw);
	m->dh = FLOATS(M * m->fl);
	/* dy_kept takes the copies of backward's output gradients in turn: a block's,
	 * and on the last stage the logits' */
	m->dy_kept = new_kept(m, M * max3(m->fl, d, m->last_stage ? m->V : 0));
	m->dg_kept = new_kept(m, M * vw);
	m->do_kept = new_kept(m, M * vw);
	m->retention_scratch = FLOATS(retention_scratch_floats(&rd));
	m->stream_state = FLOATS(m->num_layers * rd.batch * rd.heads * rd.dk * rd.dv);
	if (m->cp_size > 1) {
		m->cp_mine = FLOATS(rd.batch * rd.heads * rd.dk * rd.dv);
		m->cp_state = FLOATS(rd.batch * rd.heads * rd.dk * rd.dv);
		m->cp_all = FLOATS(m->cp_size * rd.batch * rd.heads * rd.dk * rd.dv);
	}
	m->buffers = bl;
	return bl->bytes;
}

#undef FLOATS
#undef COPIED_OUTPUT

size_t model_setup_copied_outputs(const struct model *m)
{
	const struct buffer_list *bl = m->buffers;
	size_t bytes = 0;

	for (size_t i = 0; i < bl->count; i++)
		if (bl->items[i].copied)
			bytes += bl->items[i].bytes;
	return bytes;
}

void model_setup_free(struct model *m)
{
	struct buffer_list *bl = m->buffers;

	for (size_t i = 0; bl && i < bl->count; i++) {
		if (bl->items[i].copied)
			xmapped_free(bl->items[i].p, bl->items[i].bytes);
		else
			free(bl->items[i].p);
	}
	if (bl)
		free(bl->items);
	free(bl);
	for (int i = 0; i < m->nkept_refs; i++) {
		matmul_kept_free(m->kept_refs[i].kept);
		free(m->kept_refs[i].kept);
	}
	free(m->kept_refs);
	for (int c = 0; m->chunks && c < m->nchunks; c++) {
		for (int s = 0; m->chunks[c].micro && s < m->chunks[c].slots; s++)
			free(m->chunks[c].micro[s].layers);
		free(m->chunks[c].micro);
	}
	free(m->chunks);
	free(m->w.layers);
	free(m->dw.layers);
	free(m->layer_range);
	free(m->ranges);
	param_set_free(&m->params);
}
