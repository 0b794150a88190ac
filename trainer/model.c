#include "trainer/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "parallel/comm.h"
#include "trainer/kernels/activation.h"
#include "trainer/kernels/colsum.h"
#include "trainer/kernels/embedding.h"
#include "trainer/kernels/matmul.h"
#include "trainer/kernels/norm.h"
#include "trainer/kernels/retention.h"
#include "trainer/kernels/retention_forms.h"
#include "trainer/kernels/retention_cp.h"
#include "trainer/kernels/xent.h"
#include "parallel/grid.h"
#include "trainer/metrics.h"
#include "trainer/model_internal.h"
#include "trainer/model_setup.h"
#include "trainer/spec.h"

/* matmul_hold slots: an input read by several products, and an output gradient. */
enum { HOLD_X, HOLD_DY };

int model_chunk_count(const struct run_spec *spec, const struct grid *g)
{
	const int64_t n = spec->num_layers_per_virtual_stage;
	const int64_t pp = g ? g->axis[GRID_PIPELINE].size : 1;

	return n ? (int)(spec->num_layers / (pp * n)) : 1;
}

struct model *model_create(const struct run_spec *spec, const struct grid *g, int slots)
{
	const int n = model_chunk_count(spec, g);
	int *each = xcalloc((size_t)n, sizeof(*each));
	struct model *m;

	for (int c = 0; c < n; c++)
		each[c] = slots;
	m = model_create_chunked(spec, g, each);
	free(each);
	return m;
}

struct model *model_create_chunked(const struct run_spec *spec, const struct grid *g,
				   const int *slots)
{
	struct model *m = xcalloc(1, sizeof(*m));
	struct grid one;

	m->nchunks = model_chunk_count(spec, g);
	if (!g) {
		grid_single(&one);
		g = &one;
	}
	m->V = spec->vocab_size;
	m->d = spec->hidden_size;
	m->L = spec->num_layers;
	m->H = spec->num_heads;
	m->f = spec->ffn_hidden_size;
	m->C = spec->chunk_size;
	m->cp_rank = g->axis[GRID_CONTEXT].rank;
	m->cp_size = g->axis[GRID_CONTEXT].size;
	m->cp_comm = g->axis[GRID_CONTEXT].comm;
	ENSURE(spec->seq_length % m->cp_size == 0);
	m->T = spec->seq_length / m->cp_size;
	m->B = spec->micro_batch_size;
	m->seed = (uint64_t)spec->seed;
	m->recompute = spec->recompute_activations;
	m->tp_rank = g->axis[GRID_TENSOR].rank;
	m->tp_size = g->axis[GRID_TENSOR].size;
	m->tp_comm = g->axis[GRID_TENSOR].comm;
	m->pp_rank = g->axis[GRID_PIPELINE].rank;
	m->pp_size = g->axis[GRID_PIPELINE].size;
	ENSURE(m->V > 0 && m->d > 0 && m->L > 0 && m->H > 0 && m->f > 0);
	ENSURE(m->d % m->H == 0 && (m->d / m->H) % 2 == 0);
	ENSURE(m->C > 0 && m->T % m->C == 0 && m->B > 0);
	ENSURE(m->tp_size >= 1 && m->H % m->tp_size == 0 && m->f % m->tp_size == 0);
	ENSURE(m->pp_size >= 1 && m->pp_size <= m->L && m->nchunks >= 1);
	ENSURE(!spec->num_layers_per_virtual_stage ||
	       m->L == (int64_t)m->nchunks * m->pp_size * spec->num_layers_per_virtual_stage);
	m->dk = m->d / m->H;
	m->dv = 2 * m->dk;
	m->heads_local = m->H / m->tp_size;
	m->head_offset = m->tp_rank * m->heads_local;
	m->qk = m->heads_local * m->dk;
	m->vw = m->heads_local * m->dv;
	m->fl = m->f / m->tp_size;
	m->rows = m->B * m->T;
	m->first_stage = m->pp_rank == 0;
	m->last_stage = m->pp_rank == m->pp_size - 1;
	model_setup_chunks(m, spec->num_layers_per_virtual_stage, slots);
	m->form = RETENTION_CHUNKWISE;
	model_setup_params(m);
	param_set_init_values(&m->params, m->seed);
	m->kernels = kernels_ctx_init();
	/* a piece's tokens sit at their positions in the whole sequence */
	rotary_table_init(&m->rotary, m->T, m->dk, (int64_t)m->cp_rank * m->T);
	m->activation_bytes = model_setup_activations(m);
	return m;
}

void model_destroy(struct model *m)
{
	if (!m)
		return;
	model_setup_free(m);
	rotary_table_free(&m->rotary);
	kernels_ctx_free(m->kernels);
	free(m);
}

int model_autotune_matmuls(struct model *m, const struct matmul_agree *agree)
{
	return matmul_autotune_plans(m->kernels, agree);
}

void model_matmul_tuning(const struct model *m, struct matmul_tuning_totals *out)
{
	matmul_tuning_totals(m->kernels, out);
}

int model_set_bf16(struct model *m, bool on, char *err, size_t errlen)
{
	const bool was_on = kernels_ctx_bf16(m->kernels);
	int rc = kernels_ctx_set_bf16(m->kernels, on, err, errlen);

	if (rc)
		return rc;
	/* The float32 outputs that bf16 writes as their copy alone are not the
	 * activations of a bf16 step: mapped, they take no memory until float32 steps
	 * write them (model_setup.c). They are left as they are when bf16 comes on
	 * after float32 steps, so that float32 steps after it do not fault them in
	 * again. */
	if (on != was_on) {
		size_t bytes = model_setup_copied_outputs(m);

		if (on)
			m->activation_bytes -= bytes;
		else
			m->activation_bytes += bytes;
	}
	/* The bf16 copies kept from forward to backward are allocated now, once, and
	 * counted with the activations. */
	if (!on || m->kept_reserved)
		return 0;
	for (int i = 0; i < m->nkept_refs; i++) {
		matmul_kept_reserve(m->kept_refs[i].kept, m->kept_refs[i].elems);
		m->activation_bytes += (size_t)m->kept_refs[i].elems * sizeof(uint16_t);
	}
	m->kept_reserved = true;
	return 0;
}

size_t model_activation_bytes(const struct model *m)
{
	return m->activation_bytes;
}

struct param_set *model_params(struct model *m)
{
	return &m->params;
}

void model_set_form(struct model *m, enum retention_form form)
{
	m->form = form;
}

bool model_first_stage(const struct model *m)
{
	return m->first_stage;
}

bool model_last_stage(const struct model *m)
{
	return m->last_stage;
}

int model_chunks(const struct model *m)
{
	return m->nchunks;
}

/* Chunk `chunk`, checked. */
static struct model_chunk *chunk_of(const struct model *m, int chunk)
{
	ENSURE(chunk >= 0 && chunk < m->nchunks);
	return &m->chunks[chunk];
}

/* Its micro-batch in `slot`, checked. */
static struct micro_acts *micro_of(const struct model *m, int chunk, int slot)
{
	struct model_chunk *ch = chunk_of(m, chunk);

	ENSURE(slot >= 0 && slot < ch->slots);
	return &ch->micro[slot];
}

int model_slots(const struct model *m, int chunk)
{
	return chunk_of(m, chunk)->slots;
}

size_t model_boundary_floats(const struct model *m)
{
	return (size_t)(m->rows * m->d);
}

float *model_stage_input(struct model *m, int chunk, int slot)
{
	return micro_of(m, chunk, slot)->layers[0].x;
}

float *model_stage_output(struct model *m, int chunk, int slot)
{
	return micro_of(m, chunk, slot)->out;
}

float *model_boundary_grad(struct model *m)
{
	return m->dx;
}

const float *model_losses(const struct model *m, int slot)
{
	ENSURE(m->last_stage);
	return micro_of(m, m->nchunks - 1, slot)->losses;
}

const float *model_logits(const struct model *m, int slot)
{
	ENSURE(m->last_stage);
	return micro_of(m, m->nchunks - 1, slot)->logits;
}

int model_grad_range_count(const struct model *m)
{
	return m->nranges;
}

int model_grad_ranges(const struct model *m, struct grad_range *out)
{
	memcpy(out, m->ranges, sizeof(*out) * (size_t)m->nranges);
	return m->nranges;
}

void model_set_backward_hooks(struct model *m, const struct backward_hooks *hooks)
{
	m->hooks = *hooks;
}

void model_comm(const struct model *m, struct comm_tally *tp, struct comm_tally *cp)
{
	*tp = m->tp;
	*cp = m->cp;
}

static struct retention_dims retention_dims_of(const struct model *m)
{
	struct retention_dims r = {
		.batch = m->B, .seq_len = m->T, .heads = m->heads_local,
		.head_offset = m->head_offset, .dk = m->dk, .dv = m->dv, .chunk = m->C,
		.ldq = m->qk, .ldk = m->qk, .ldv = m->vw, .ldo = m->vw,
		.starts = m->starts_now,
	};
	return r;
}

/* On a bf16 context the chunkwise form's products are the only readers of V and dO,
 * and read them as bf16: their producers (the V projection, gated GroupNorm's
 * backward) write those copies alone, the float32 arrays stay unwritten. */
static bool retention_bf16_operands(const struct model *m)
{
	return kernels_ctx_bf16(m->kernels) && m->form == RETENTION_CHUNKWISE;
}

/* Retention's dims for layer a, with the bf16 operands its producers wrote. */
static struct retention_dims retention_dims_at(const struct model *m,
					       const struct layer_acts *a)
{
	struct retention_dims r = retention_dims_of(m);

	if (retention_bf16_operands(m)) {
		r.v16 = a->kept[KEPT_V]->buf;
		r.dout16 = m->do_kept->buf;
	}
	return r;
}

void model_set_docs(struct model *m, const struct model_docs *docs)
{
	static const struct model_docs none;

	m->docs = docs ? *docs : none;
}

/* Take the pending documents into the micro-batch's slot: this piece's starts,
 * which pieces of each row hold one, and on the last chunk the loss mask. */
static void keep_docs(struct model *m, struct micro_acts *mb, bool last)
{
	const struct model_docs *dc = &m->docs;
	const int64_t T = m->T, Tseq = T * m->cp_size;

	mb->has_starts = dc->starts != NULL;
	if (mb->has_starts) {
		memset(mb->piece_starts, 0, (size_t)(m->cp_size * m->B));
		for (int64_t b = 0; b < m->B; b++) {
			const uint8_t *row = dc->starts + b * Tseq;

			memcpy(mb->starts + b * T, row + m->cp_rank * T, (size_t)T);
			for (int64_t q = 0; q < m->cp_size; q++)
				for (int64_t t = q * T; t < (q + 1) * T; t++)
					if (row[t]) {
						mb->piece_starts[q * m->B + b] = 1;
						break;
					}
		}
	}
	mb->has_mask = last && dc->loss_mask;
	if (mb->has_mask) {
		memcpy(mb->loss_mask, dc->loss_mask, (size_t)m->rows);
		mb->loss_count = dc->loss_count > 0 ? dc->loss_count : 1.0;
	}
}

/* The micro-batch whose retention runs now: its starts, or none. */
static void use_docs(struct model *m, const struct micro_acts *mb)
{
	m->starts_now = mb->has_starts ? mb->starts : NULL;
	m->piece_starts_now = mb->has_starts ? mb->piece_starts : NULL;
}

/* ---- forward ------------------------------------------------------------- */

/* Every piece's (B, H/P, dk, dv) block of mine into all, in piece order. */
static void cp_allgather(struct model *m, const float *mine, float *all,
			 const struct retention_dims *rd)
{
	double t0 = metrics_now_s();

	const size_t n = (size_t)retention_cp_state_floats(rd);

	/* collective: all ranks of cp_comm */
	comm_allgather_f32(m->cp_comm, mine, n, all);
	m->cp.seconds += metrics_now_s() - t0;
	m->cp.bytes += (double)(m->cp_size - 1) * (double)(n * sizeof(float));
}

/*
 * Retention of this rank's piece of the sequence: the states of its chunks from a
 * zero state and its summary; the summaries of every piece (the all-gather is 1 of
 * 2 per layer; its conjugate in backward gathers the state gradients); the state
 * entering this piece, scanned from those before it; the outputs with it folded
 * into the cross-chunk term.
 */
static void retention_context_forward(struct model *m, struct layer_acts *a,
				      const struct retention_dims *rd)
{
	retention_chunkwise_states(m->kernels, a->states, m->cp_mine, m->retention_scratch, a->k,
				   a->v, rd);
	cp_allgather(m, m->cp_mine, m->cp_all, rd);
	retention_cp_scan_states(m->cp_state, m->cp_all, m->cp_rank, m->cp_size,
				 m->piece_starts_now, rd);
	retention_chunkwise_output(m->kernels, a->o, a->states, m->cp_state,
				   m->retention_scratch, a->q, a->k, a->v, rd);
}

/* Its backward: the gradient with respect to the state entering each piece as if
 * nothing flowed from later pieces, gathered (2 of 2), scanned back into the
 * gradient leaving this piece, which the chunkwise backward takes in. */
static void retention_context_backward(struct model *m, struct layer_acts *a,
				       const struct retention_dims *rd)
{
	retention_chunkwise_state_grad(m->kernels, m->cp_mine, m->retention_scratch, m->do_, a->q,
				       rd);
	cp_allgather(m, m->cp_mine, m->cp_all, rd);
	retention_cp_scan_grads(m->cp_state, m->cp_all, m->cp_rank, m->cp_size,
				m->piece_starts_now, rd);
	retention_chunkwise_backward(m->kernels, m->dq, m->dk_, m->dv_, m->retention_scratch,
				     m->do_, a->q, a->k, a->v, a->states, m->cp_state, rd);
}

/* Retention of local layer l; streaming carries the layer's state across calls. */
static void retention_forward(struct model *m, struct layer_acts *a, int64_t l)
{
	struct retention_dims rd = retention_dims_at(m, a);
	const size_t state_floats = (size_t)(rd.batch * rd.heads * rd.dk * rd.dv);
	float *state = m->stream_state + (size_t)l * state_floats;

	switch (m->form) {
	case RETENTION_CHUNKWISE:
		if (m->cp_size > 1) {
			retention_context_forward(m, a, &rd);
			break;
		}
		retention_chunkwise_forward(m->kernels, a->o, a->states,
					    m->streaming ? state : NULL, m->retention_scratch,
					    a->q, a->k, a->v, &rd);
		break;
	case RETENTION_PARALLEL:
		ENSURE(!m->streaming);
		retention_parallel_forward(a->o, a->q, a->k, a->v, &rd);
		break;
	case RETENTION_RECURRENT:
		if (!m->streaming)
			memset(state, 0, sizeof(float) * state_floats);
		retention_recurrent_forward(a->o, state, a->q, a->k, a->v, &rd);
		break;
	}
}

void model_stream_begin(struct model *m)
{
	struct retention_dims rd = retention_dims_of(m);

	ENSURE(m->form != RETENTION_PARALLEL && m->cp_size == 1);
	memset(m->stream_state, 0,
	       sizeof(float) * (size_t)(m->num_layers * rd.batch * rd.heads * rd.dk * rd.dv));
	m->streaming = true;
	model_set_first_position(m, 0);
}

void model_stream_end(struct model *m)
{
	m->streaming = false;
	model_set_first_position(m, 0);
}

void model_set_first_position(struct model *m, int64_t first_pos)
{
	if (m->rotary.first_pos != first_pos)
		rotary_table_reposition(&m->rotary, first_pos);
}

/* Sums a partial result over the tensor-parallel group (the identity for P = 1). */
static void tp_allreduce(struct model *m, float *buf, int64_t count)
{
	double t0;

	if (m->tp_size == 1)
		return;
	t0 = metrics_now_s();
	/* collective: all ranks of tp_comm */
	comm_allreduce_sum_f32(m->tp_comm, buf, (size_t)count);
	m->tp.seconds += metrics_now_s() - t0;
	m->tp.bytes += 2.0 * (m->tp_size - 1) / m->tp_size * (double)count * sizeof(float);
}

/* The float32 output of a kernel that writes `copy`, the bf16 copy its products read:
 * none with a copy (matmul_sole_target), for those products read nothing else. */
static float *uncopied(float *dst, const uint16_t *copy)
{
	return copy ? NULL : dst;
}

/* Local layer l: x_out = Y + FFN(LN2(Y)), Y = x + MSR(LN1(x)), with x = a->x.
 * x_out NULL: recomputation for backward, which needs nothing after gelu. */
static void block_forward(struct model *m, struct layer_acts *a, int64_t l, float *x_out)
{
	const struct layer_tensors *w = &m->w.layers[l];
	struct kernels_ctx *kc = m->kernels;
	const int64_t M = m->rows, d = m->d, qk = m->qk, vw = m->vw, fl = m->fl;
	const int64_t B = m->B, Hl = m->heads_local;

	uint16_t *copy;

	/* MSR(LN1(x)) on this rank's heads */
	copy = matmul_sole_target(kc, a->kept[KEPT_LN1], M * d);
	layernorm_forward(uncopied(a->ln1, copy), copy, a->ln1_mean, a->ln1_rstd, a->x,
			  w->ln1_gain, w->ln1_bias, M, d);
	matmul_hold_written(kc, HOLD_X, a->kept[KEPT_LN1], a->ln1, M * d); /* four projections */
	matmul(kc, a->q, a->ln1, w->wq, M, qk, d, false, false, false);
	matmul(kc, a->k, a->ln1, w->wk, M, qk, d, false, false, false);
	if (retention_bf16_operands(m))
		matmul_to_bf16(kc, matmul_sole_target(kc, a->kept[KEPT_V], M * vw), a->ln1,
			       w->wv, M, vw, d, false, false);
	else
		matmul(kc, a->v, a->ln1, w->wv, M, vw, d, false, false, false);
	matmul(kc, a->g, a->ln1, w->wg, M, vw, d, false, false, false);
	matmul_release(kc, HOLD_X);
	/* K carries retention's 1 / sqrt(dk) */
	rotary_apply(a->q, &m->rotary, B, Hl, qk, +1, 1.0f);
	rotary_apply(a->k, &m->rotary, B, Hl, qk, +1, (float)(1.0 / sqrt((double)m->dk)));
	retention_forward(m, a, l);
	copy = matmul_sole_target(kc, a->kept[KEPT_GATED], M * vw);
	gated_groupnorm_forward(uncopied(a->gated, copy), copy, a->gn_mean, a->gn_rstd, a->o,
				a->g, M, Hl, m->dv);
	matmul_hold_written(kc, HOLD_X, a->kept[KEPT_GATED], a->gated, M * vw);
	matmul(kc, a->y, a->gated, w->wo, M, d, vw, false, false, false);
	matmul_release(kc, HOLD_X);
	/* TP all-reduce 1 of 2 (forward): the heads' partial MSR outputs. Its conjugate
	 * in backward is the all-reduce of the LN1 output gradient. */
	tp_allreduce(m, a->y, M * d);
	vec_add(a->y, a->y, a->x, M * d);

	/* FFN(LN2(Y)) on this rank's columns */
	copy = matmul_sole_target(kc, a->kept[KEPT_LN2], M * d);
	layernorm_forward(uncopied(a->ln2, copy), copy, a->ln2_mean, a->ln2_rstd, a->y,
			  w->ln2_gain, w->ln2_bias, M, d);
	matmul_hold_written(kc, HOLD_X, a->kept[KEPT_LN2], a->ln2, M * d);
	matmul(kc, a->h_pre, a->ln2, w->w1, M, fl, d, false, false, false);
	matmul_release(kc, HOLD_X);
	/* Converted even when recomputing: backward's dW2 reads it. */
	copy = matmul_sole_target(kc, a->kept[KEPT_H], M * fl);
	bias_gelu_forward(uncopied(a->h, copy), copy, a->h_pre, w->b1, M, fl);
	matmul_hold_written(kc, HOLD_X, a->kept[KEPT_H], a->h, M * fl);
	if (x_out)
		matmul(kc, x_out, a->h, w->w2, M, d, fl, false, false, false);
	matmul_release(kc, HOLD_X);
	if (!x_out)
		return;
	/* TP all-reduce 2 of 2 (forward): the partial FFN outputs; b2 is added once,
	 * after it. Conjugate: the all-reduce of the LN2 output gradient. */
	tp_allreduce(m, x_out, M * d);
	bias_add(x_out, w->b2, a->y, M, d);
}

float model_forward_micro(struct model *m, int chunk, int slot, const int32_t *inputs,
			  const int32_t *targets)
{
	struct micro_acts *mb = micro_of(m, chunk, slot);
	const struct model_chunk *ch = &m->chunks[chunk];
	const int64_t M = m->rows, d = m->d, V = m->V, nl = ch->num_layers;
	double sum = 0.0;
	uint16_t *copy;

	keep_docs(m, mb, ch->last);
	use_docs(m, mb);
	if (ch->first) {
		memcpy(mb->inputs, inputs, sizeof(int32_t) * (size_t)M);
		embedding_forward(mb->layers[0].x, m->w.embedding, inputs, M, d);
	}
	/* layers[j] of the micro-batch is the stage's local layer local_first + j */
	for (int64_t j = 0; j < nl; j++)
		block_forward(m, &mb->layers[j], ch->local_first + j,
			      j + 1 < nl ? mb->layers[j + 1].x : mb->out);
	m->recompute_slot = slot;
	m->recompute_layer = ch->local_first + nl - 1;
	if (!ch->last)
		return 0.0f;
	memcpy(mb->targets, targets, sizeof(int32_t) * (size_t)M);
	copy = matmul_sole_target(m->kernels, mb->lnf_kept, M * d);
	layernorm_forward(uncopied(mb->lnf, copy), copy, mb->lnf_mean, mb->lnf_rstd, mb->out,
			  m->w.lnf_gain, m->w.lnf_bias, M, d);
	matmul_hold_written(m->kernels, HOLD_X, mb->lnf_kept, mb->lnf, M * d);
	matmul(m->kernels, mb->logits, mb->lnf, m->w.lm_head, M, V, d, false, false, false);
	matmul_release(m->kernels, HOLD_X);
	xent_forward(mb->losses, mb->logits, targets, M, V);
	if (mb->has_mask) {
		for (int64_t r = 0; r < M; r++)
			if (mb->loss_mask[r])
				sum += mb->losses[r];
		return (float)(sum / mb->loss_count);
	}
	for (int64_t r = 0; r < M; r++)
		sum += mb->losses[r];
	return (float)(sum / (double)M);
}

/* ---- backward ------------------------------------------------------------ */

static void poll(const struct model *m)
{
	if (m->hooks.poll)
		m->hooks.poll(m->hooks.arg);
}

/* For y = x W (x: M x in, W: in x out): dW += x^T dy, and dx = dy W^T, or
 * dx += dy W^T with accumulate_dx. Both read dy, so bf16 converts it once, or takes
 * the copy its producer wrote (dy_written, a matmul_kept_target); x's bf16 copy is
 * forward's (x_kept), unless the caller holds x already (x_kept NULL). */
static void linear_backward(struct kernels_ctx *kc, float *dw, float *dx, const float *x,
			    struct matmul_kept *x_kept, const float *dy,
			    struct matmul_kept *dy_written, const float *w, int64_t M, int64_t in,
			    int64_t out, bool accumulate_dx)
{
	if (x_kept)
		matmul_hold_again(kc, HOLD_X, x_kept, x, M * in);
	if (dy_written)
		matmul_hold_written(kc, HOLD_DY, dy_written, dy, M * out);
	else
		matmul_hold(kc, HOLD_DY, dy, M * out);
	matmul(kc, dw, x, dy, in, out, M, true, false, true);
	matmul(kc, dx, dy, w, M, in, out, false, true, accumulate_dx);
	matmul_release(kc, HOLD_DY);
	if (x_kept)
		matmul_release(kc, HOLD_X);
}

/* The backward of the rotation (and of the scale folded into it) of dx, M x qk: in
 * place, or into copy alone (matmul_sole_target). */
static void rotate_back(const struct model *m, float *dx, uint16_t *copy, float scale)
{
	if (copy)
		rotary_apply_copy(dx, copy, &m->rotary, m->B, m->heads_local, m->qk, -1, scale);
	else
		rotary_apply(dx, &m->rotary, m->B, m->heads_local, m->qk, -1, scale);
}

/* dx holds dLoss/d(block output) on entry and dLoss/d(block input) on return;
 * dx is the same on every TP rank, so are the gradients of replicated tensors.
 * dx_written: dy_kept holds dx's bf16 copy (a matmul_kept_target written with dx);
 * copy_dx: write one of the returned dx for the block below (it reads it next). */
static void block_backward(struct model *m, struct layer_acts *a, int64_t l, bool dx_written,
			   bool copy_dx)
{
	const struct layer_tensors *w = &m->w.layers[l];
	const struct layer_tensors *dw = &m->dw.layers[l];
	struct kernels_ctx *kc = m->kernels;
	const int64_t M = m->rows, d = m->d, qk = m->qk, vw = m->vw, fl = m->fl;
	const int64_t Hl = m->heads_local;
	struct retention_dims rd = retention_dims_at(m, a);
	uint16_t *copy, *do_copy;

	/* FFN: x_out = y + gelu(ln2 W1 + b1) W2 + b2 */
	bias_backward(dw->b2, m->dx, M, d);
	linear_backward(kc, dw->w2, m->dh, a->h, a->kept[KEPT_H], m->dx,
			dx_written ? m->dy_kept : NULL, w->w2, M, fl, d, false);
	poll(m);
	copy = matmul_sole_target(kc, m->dy_kept, M * fl);
	gelu_backward_bias(uncopied(m->dh, copy), copy, dw->b1, m->dh, a->h_pre, M, fl);
	linear_backward(kc, dw->w1, m->dln, a->ln2, a->kept[KEPT_LN2], m->dh, m->dy_kept, w->w1,
			M, d, fl, false);
	poll(m);
	/* TP all-reduce 1 of 2 (backward): the LN2 output gradient from this rank's
	 * columns; conjugate of the forward FFN all-reduce. */
	tp_allreduce(m, m->dln, M * d);
	layernorm_backward(m->dx, matmul_kept_target(kc, m->dy_kept, M * d), dw->ln2_gain,
			   dw->ln2_bias, m->dln, a->y, w->ln2_gain, a->ln2_mean, a->ln2_rstd, M, d);

	/* MSR: y = x + (swish(g) * GroupNorm(retention(q, k, v))) Wo */
	linear_backward(kc, dw->wo, m->dgated, a->gated, a->kept[KEPT_GATED], m->dx, m->dy_kept,
			w->wo, M, vw, d, false);
	poll(m);
	copy = matmul_sole_target(kc, m->dg_kept, M * vw);
	do_copy = retention_bf16_operands(m) ? matmul_sole_target(kc, m->do_kept, M * vw) : NULL;
	gated_groupnorm_backward(uncopied(m->dg, copy), copy, uncopied(m->do_, do_copy), do_copy,
				 m->dgated, a->o, a->g, a->gn_mean, a->gn_rstd, M, Hl, m->dv);
	if (m->form == RETENTION_PARALLEL)
		retention_parallel_backward(m->dq, m->dk_, m->dv_, m->do_, a->q, a->k, a->v, &rd);
	else if (m->cp_size > 1)
		retention_context_backward(m, a, &rd);
	else
		retention_chunkwise_backward(kc, m->dq, m->dk_, m->dv_, m->retention_scratch,
					     m->do_, a->q, a->k, a->v, a->states, NULL, &rd);
	poll(m);
	/* dln sums the four in the same order as ever: q, k, v, g. The rotations' backward
	 * write dq's and then dk's copy into dy_kept, the products reading nothing else. */
	matmul_hold_again(kc, HOLD_X, a->kept[KEPT_LN1], a->ln1, M * d);
	rotate_back(m, m->dq, matmul_sole_target(kc, m->dy_kept, M * qk), 1.0f);
	linear_backward(kc, dw->wq, m->dln, a->ln1, NULL, m->dq, m->dy_kept, w->wq, M, d, qk,
			false);
	poll(m);
	rotate_back(m, m->dk_, matmul_sole_target(kc, m->dy_kept, M * qk),
		    (float)(1.0 / sqrt((double)m->dk)));
	linear_backward(kc, dw->wk, m->dln, a->ln1, NULL, m->dk_, m->dy_kept, w->wk, M, d, qk,
			true);
	poll(m);
	linear_backward(kc, dw->wv, m->dln, a->ln1, NULL, m->dv_, NULL, w->wv, M, d, vw, true);
	poll(m);
	linear_backward(kc, dw->wg, m->dln, a->ln1, NULL, m->dg, m->dg_kept, w->wg, M, d, vw,
			true);
	poll(m);
	matmul_release(kc, HOLD_X);
	/* TP all-reduce 2 of 2 (backward): the LN1 output gradient from this rank's
	 * heads; conjugate of the forward MSR all-reduce. */
	tp_allreduce(m, m->dln, M * d);
	layernorm_backward(m->dx, copy_dx ? matmul_kept_target(kc, m->dy_kept, M * d) : NULL,
			   dw->ln1_gain, dw->ln1_bias, m->dln, a->x, w->ln1_gain, a->ln1_mean,
			   a->ln1_rstd, M, d);
}

static void announce(const struct model *m, int range)
{
	if (m->hooks.ready && range >= 0)
		m->hooks.ready(m->hooks.arg, range);
}

void model_backward_micro(struct model *m, int chunk, int slot, float loss_scale)
{
	struct micro_acts *mb = micro_of(m, chunk, slot);
	const struct model_chunk *ch = &m->chunks[chunk];
	const int64_t M = m->rows, d = m->d, V = m->V;

	ENSURE(m->form != RETENTION_RECURRENT && !m->streaming);
	use_docs(m, mb);
	if (ch->last) {
		/* The logits' gradient goes over the logits, or to its bf16 copy alone:
		 * the LM head's two products read nothing else. */
		uint16_t *copy = matmul_sole_target(m->kernels, m->dy_kept, M * V);
		/* d(sum(mask .* losses) / count): uncounted rows get no gradient */
		float scale = mb->has_mask ? (float)(loss_scale / mb->loss_count)
					   : loss_scale / (float)M;

		xent_backward(uncopied(mb->logits, copy), copy, mb->logits, mb->targets, scale, M,
			      V);
		for (int64_t r = 0; mb->has_mask && r < M; r++) {
			if (mb->loss_mask[r])
				continue;
			if (copy)
				memset(copy + r * V, 0, sizeof(uint16_t) * (size_t)V);
			else
				memset(mb->logits + r * V, 0, sizeof(float) * (size_t)V);
		}
		linear_backward(m->kernels, m->dw.lm_head, m->dln, mb->lnf, mb->lnf_kept,
				mb->logits, m->dy_kept, m->w.lm_head, M, d, V, false);
		poll(m);
		memset(m->dx, 0, sizeof(float) * (size_t)(M * d));
		layernorm_backward(m->dx, matmul_kept_target(m->kernels, m->dy_kept, M * d),
				   m->dw.lnf_gain, m->dw.lnf_bias, m->dln, mb->out, m->w.lnf_gain,
				   mb->lnf_mean, mb->lnf_rstd, M, d);
		announce(m, m->head_range);
	}
	for (int64_t j = ch->num_layers - 1; j >= 0; j--) {
		const int64_t l = ch->local_first + j;

		/* The same kernels on the same input: bit-identical activations. */
		if (m->recompute && (m->recompute_slot != slot || m->recompute_layer != l))
			block_forward(m, &mb->layers[j], l, NULL);
		m->recompute_slot = -1;
		/* dx's copy goes from block to block; on entry from the next stage it
		 * has none (its dx came from there). */
		block_backward(m, &mb->layers[j], l, ch->last || j + 1 < ch->num_layers, j > 0);
		announce(m, m->layer_range[l]);
	}
	if (ch->first) {
		embedding_backward(m->dw.embedding, m->dx, mb->inputs, M, d);
		announce(m, m->embedding_range);
	}
}

float model_forward(struct model *m, const int32_t *inputs, const int32_t *targets)
{
	ENSURE(m->first_stage && m->last_stage && m->nchunks == 1);
	return model_forward_micro(m, 0, 0, inputs, targets);
}

void model_backward(struct model *m, float loss_scale)
{
	ENSURE(m->first_stage && m->last_stage && m->nchunks == 1);
	model_backward_micro(m, 0, 0, loss_scale);
}

double model_grad_sumsq(const struct model *m)
{
	const struct param_set *p = &m->params;
	double sums[2] = {0.0, 0.0}; /* sharded, replicated */

	for (int i = 0; i < p->count; i++)
		sums[p->desc[i].sharded ? 0 : 1] +=
			colsum_sumsq(p->grad + p->desc[i].offset, (int64_t)p->desc[i].numel);
	return model_grad_sumsq_combine(m, sums);
}

double model_grad_sumsq_combine(const struct model *m, double sums[2])
{
	if (m->tp_size > 1)
		/* collective: all ranks of tp_comm */
		comm_allreduce_sum_f64(m->tp_comm, sums, 1);
	return sums[0] + sums[1];
}

double model_flops_per_token(const struct run_spec *s)
{
	const double d = (double)s->hidden_size, f = (double)s->ffn_hidden_size;
	const double V = (double)s->vocab_size, H = (double)s->num_heads;
	const double dk = d / H, dv = 2.0 * d / H, C = (double)s->chunk_size;
	double forward = (double)s->num_layers *
			 (2.0 * (2 * d * d + 4 * d * d + 2 * d * d) + 4.0 * d * f +
			  2.0 * C * (d + 2 * d) + 4.0 * H * dk * dv) +
			 2.0 * d * V;

	return 3.0 * forward;
}
