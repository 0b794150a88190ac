/*
 * Document resets through the whole single-rank model: a window [docA EOD docB]
 * scored with resets (--reset-attention-mask) equals its two documents scored as
 * separate windows, for the chunkwise, parallel and recurrent forms (forward), and
 * for the chunkwise and parallel forms the parameter gradients of the window's
 * summed loss equal the sum of the two documents' gradients.
 *
 * Each window has the model's length T; a document scored alone is padded after it
 * (causality: the padding cannot reach it) and only its targets are counted (loss
 * mask, loss_count 1, so every loss is a plain sum and the gradients add up).
 * Two rows: the second document starts mid-chunk (row 0, at 13) and on a chunk
 * boundary (row 1, at 16).
 *
 * Everything at 1e-6 (losses relative, logits and gradients relative to the largest
 * magnitude of the tensor compared), but one figure. docB is scored alone twice:
 *   at position 0     what "scored separately" means. Its rotation angles differ
 *                     from those it has in the window; retention depends on n - m
 *                     alone in exact arithmetic, so only float32 rounding separates
 *                     the two: losses and logits pass 1e-6, but the gradients of Wq
 *                     and Wk, which pass through the rotation forward and back at the
 *                     other angles, do not (see RTOL_SHIFTED);
 *   at its offset     the same positions, with padding and a reset before it:
 *                     isolates the reset. Forward is bit-identical, the gradients
 *                     differ by the rounding of gA + gB against one sum.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/doc.h"
#include "trainer/model.h"
#include "trainer/spec.h"

enum { B = 2, T = 32, V = 256, EOD = 0 };

#define RTOL 1e-6
/*
 * The gradients with docB at position 0: measured 1.35e-6 (chunkwise) and 1.07e-6
 * (parallel) of the tensor's max, in layer 1's Wk and Wq (OMP_NUM_THREADS=2, gcc 12,
 * this configuration); 1e-5 leaves room for another machine's rounding.
 */
#define RTOL_SHIFTED 1e-5

static const int64_t split[B] = {13, 16}; /* docA + EOD: tokens [0, split) */

/* Tokens 1..255 that are never EOD. */
static int32_t token(int64_t i, int64_t salt)
{
	return (int32_t)((i * 37 + salt * 101 + 11) % 255 + 1);
}

/* One window: inputs, targets, where documents start (NULL: none) and which
 * targets count. */
struct window {
	int32_t in[B * T], tg[B * T];
	uint8_t starts[B * T], mask[B * T];
	bool resets;
};

/* The window [docA EOD docB]: every target counted, resets at 0 and split. */
static void window_joined(struct window *w)
{
	for (int64_t b = 0; b < B; b++) {
		for (int64_t t = 0; t < T; t++) {
			w->in[b * T + t] = token(t, b);
			w->tg[b * T + t] = token(t + 1, b);
			w->mask[b * T + t] = 1;
		}
		w->in[b * T + split[b] - 1] = EOD;
		w->tg[b * T + split[b] - 2] = EOD;
	}
	w->resets = true;
}

static int32_t pad_token(int64_t t)
{
	return token(t, 7);
}

/* docA alone: the joined window's first split tokens (EOD included, and its target,
 * docB's first token), padding after; one document, no resets. */
static void window_a(struct window *w, const struct window *j)
{
	*w = *j;
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			w->mask[b * T + t] = t < split[b];
			if (t >= split[b])
				w->in[b * T + t] = pad_token(t);
		}
	w->resets = false;
}

/* docB alone at position 0, padding after; one document, no resets. */
static void window_b0(struct window *w, const struct window *j)
{
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			int64_t src = t + split[b];
			bool doc = src < T;

			w->in[b * T + t] = doc ? j->in[b * T + src] : pad_token(t);
			w->tg[b * T + t] = doc ? j->tg[b * T + src] : pad_token(t + 1);
			w->mask[b * T + t] = doc;
		}
	w->resets = false;
}

/* docB at its offset in the window: padding ending with EOD before it, a reset. */
static void window_b_at(struct window *w, const struct window *j)
{
	*w = *j;
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < split[b]; t++) {
			w->in[b * T + t] = t + 1 < split[b] ? pad_token(t) : EOD;
			w->tg[b * T + t] = pad_token(t + 1);
			w->mask[b * T + t] = 0;
		}
}

/* What a forward (and backward) gave. */
struct scored {
	float losses[B * T];
	float *logits; /* (B * T, V) */
	float *grad;   /* (total) */
};

static void run(struct model *m, struct window *w, bool backward, struct scored *out)
{
	struct param_set *p = model_params(m);
	struct model_docs docs = {.loss_mask = w->mask, .loss_count = 1.0};

	if (w->resets) {
		for (int64_t b = 0; b < B; b++)
			doc_starts_from_tokens(w->in + b * T, T, EOD, w->starts + b * T);
		docs.starts = w->starts;
	}
	model_set_docs(m, &docs);
	model_forward(m, w->in, w->tg);
	memcpy(out->losses, model_losses(m, 0), sizeof(out->losses));
	memcpy(out->logits, model_logits(m, 0), sizeof(float) * B * T * V);
	if (backward) {
		param_set_zero_grad(p);
		model_backward(m, 1.0f);
		memcpy(out->grad, p->grad, sizeof(float) * p->total);
	}
	model_set_docs(m, NULL);
}

static void scored_init(struct scored *s, size_t total)
{
	s->logits = malloc(sizeof(float) * B * T * V);
	s->grad = malloc(sizeof(float) * total);
}

static void scored_free(struct scored *s)
{
	free(s->logits);
	free(s->grad);
}

/* Logits within rtol of the largest |logit| compared (values near zero carry no
 * relative error of their own worth judging); "max rel" prints against that max. */
static void expect_logits(const float *got, const float *want, int64_t n, double rtol,
			  const char *what)
{
	double *scale = malloc(sizeof(double) * (size_t)n), mx = 0;
	char label[192];

	for (int64_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(want[i]));
	for (int64_t i = 0; i < n; i++)
		scale[i] = mx;
	snprintf(label, sizeof(label), "%s (rel. to the max |logit| %.3g)", what, mx);
	EXPECT_CLOSE_SCALED(got, want, scale, n, rtol, label);
	free(scale);
}

/* The joined window's losses and logits at docB's positions against those of `b`,
 * which holds docB at position 0 (at_zero) or at its offset in the window. */
static void compare_b(const struct scored *joined, const struct scored *b, bool at_zero,
		      const char *form, const char *what)
{
	float *got_l = malloc(sizeof(float) * B * T), *want_l = malloc(sizeof(float) * B * T);
	float *got_z = malloc(sizeof(float) * B * T * V), *want_z = malloc(sizeof(float) * B * T * V);
	int64_t n = 0;
	char label[160];

	for (int64_t r = 0; r < B; r++)
		for (int64_t t = split[r]; t < T; t++, n++) {
			int64_t src = r * T + (at_zero ? t - split[r] : t);

			got_l[n] = b->losses[src];
			want_l[n] = joined->losses[r * T + t];
			memcpy(got_z + n * V, b->logits + src * V, sizeof(float) * V);
			memcpy(want_z + n * V, joined->logits + (r * T + t) * V, sizeof(float) * V);
		}
	snprintf(label, sizeof(label), "%s: docB %s, losses", form, what);
	EXPECT_CLOSE(got_l, want_l, n, RTOL, 0.0, label);
	snprintf(label, sizeof(label), "%s: docB %s, logits", form, what);
	expect_logits(got_z, want_z, n * V, RTOL, label);
	free(got_l);
	free(want_l);
	free(got_z);
	free(want_z);
}

/* docA's positions: the joined window against docA alone (the same positions). */
static void compare_a(const struct scored *joined, const struct scored *a, const char *form)
{
	float got_l[B * T], want_l[B * T];
	float *got_z = malloc(sizeof(float) * B * T * V), *want_z = malloc(sizeof(float) * B * T * V);
	int64_t n = 0;
	char label[160];

	for (int64_t r = 0; r < B; r++)
		for (int64_t t = 0; t < split[r]; t++, n++) {
			got_l[n] = a->losses[r * T + t];
			want_l[n] = joined->losses[r * T + t];
			memcpy(got_z + n * V, a->logits + (r * T + t) * V, sizeof(float) * V);
			memcpy(want_z + n * V, joined->logits + (r * T + t) * V, sizeof(float) * V);
		}
	snprintf(label, sizeof(label), "%s: docA + EOD alone, losses", form);
	EXPECT_CLOSE(got_l, want_l, n, RTOL, 0.0, label);
	snprintf(label, sizeof(label), "%s: docA + EOD alone, logits", form);
	expect_logits(got_z, want_z, n * V, RTOL, label);
	free(got_z);
	free(want_z);
}

/*
 * The joined window's gradient against gA + gB, each tensor within rtol of its
 * largest joined-gradient magnitude (a sum of two float32 gradients: an entry near
 * zero has no relative error of its own worth judging).
 */
static void compare_grads(const struct param_set *p, const float *joined, const float *ga,
			  const float *gb, double rtol, const char *form, const char *what)
{
	float *sum = malloc(sizeof(float) * p->total);
	double *scale = malloc(sizeof(double) * p->total);
	char label[160];

	for (size_t i = 0; i < p->total; i++)
		sum[i] = ga[i] + gb[i];
	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];
		const float *g = joined + (param_grad(p, i) - p->grad);
		double mx = 0;

		for (size_t e = 0; e < d->numel; e++)
			mx = fmax(mx, fabs(g[e]));
		for (size_t e = 0; e < d->numel; e++)
			scale[(param_grad(p, i) - p->grad) + (ptrdiff_t)e] = mx;
	}
	snprintf(label, sizeof(label),
		 "%s: gradient of the window = docA + EOD's + docB's %s (rel. to each tensor's max)",
		 form, what);
	EXPECT_CLOSE_SCALED(sum, joined, scale, p->total, rtol, label);
	free(sum);
	free(scale);
}

/* The largest |difference| of the joined window's docB logits with and without
 * resets: the resets must matter. */
static double reset_effect(const struct scored *with, const struct scored *without)
{
	double d = 0;

	for (int64_t r = 0; r < B; r++)
		for (int64_t t = split[r]; t < T; t++)
			for (int64_t v = 0; v < V; v++) {
				int64_t i = (r * T + t) * V + v;

				d = fmax(d, fabs(with->logits[i] - without->logits[i]));
			}
	return d;
}

static void check_form(struct model *m, enum retention_form form, const char *name)
{
	struct param_set *p = model_params(m);
	bool bwd = form != RETENTION_RECURRENT;
	struct window *joined = malloc(sizeof(*joined)), *w = malloc(sizeof(*w));
	struct scored sj, sa, sb0, sbo, snr;

	scored_init(&sj, p->total);
	scored_init(&sa, p->total);
	scored_init(&sb0, p->total);
	scored_init(&sbo, p->total);
	scored_init(&snr, p->total);
	model_set_form(m, form);

	window_joined(joined);
	run(m, joined, bwd, &sj);
	window_a(w, joined);
	run(m, w, bwd, &sa);
	window_b0(w, joined);
	run(m, w, bwd, &sb0);
	window_b_at(w, joined);
	run(m, w, bwd, &sbo);
	*w = *joined;
	w->resets = false;
	run(m, w, false, &snr);

	compare_a(&sj, &sa, name);
	compare_b(&sj, &sbo, false, name, "at its offset after a reset");
	compare_b(&sj, &sb0, true, name, "alone at position 0");
	if (bwd) {
		compare_grads(p, sj.grad, sa.grad, sbo.grad, RTOL, name, "at its offset");
		compare_grads(p, sj.grad, sa.grad, sb0.grad, RTOL_SHIFTED, name, "at position 0");
	}
	{
		double d = reset_effect(&sj, &snr);

		EXPECT_TRUE(d > 1e-3, "%s: docB scored the same with and without resets (%g)",
			    name, d);
	}
	scored_free(&sj);
	scored_free(&sa);
	scored_free(&sb0);
	scored_free(&sbo);
	scored_free(&snr);
	free(joined);
	free(w);
}

int main(void)
{
	struct run_spec s;
	struct model *m;

	spec_defaults(&s, SPEC_TRAIN);
	s.vocab_size = V;
	s.hidden_size = 64;
	s.num_layers = 2;
	s.num_heads = 4;
	s.ffn_hidden_size = 128;
	s.chunk_size = 8;
	s.seq_length = T;
	s.micro_batch_size = B;
	s.seed = 31;
	m = model_create(&s, NULL, 1);
	check_form(m, RETENTION_CHUNKWISE, "chunkwise");
	check_form(m, RETENTION_PARALLEL, "parallel");
	check_form(m, RETENTION_RECURRENT, "recurrent");
	model_destroy(m);
	return test_finish();
}
