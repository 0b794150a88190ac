#include "trainer/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/colsum.h"
#include "trainer/kernels/simd.h"

/* The tensor of the registry whose elements (padding included) hold flat offset x:
 * the last tensor starting at or before x. */
static int tensor_at(const struct param_set *p, size_t x)
{
	int lo = 0, hi = p->count - 1;

	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;

		if (p->desc[mid].offset <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Row length of tensor t's local block. */
static size_t row_len(const struct param_set *p, int t)
{
	return (size_t)p->desc[t].slice.shape[1];
}

static void add_piece(struct adamw *opt, const struct param_set *p, int t, size_t lo,
		      size_t hi)
{
	const struct param_desc *d = &p->desc[t];
	const size_t len = row_len(p, t);
	struct adamw_piece *pc;

	/* whole rows, so that the piece is a rectangle of its tensor */
	ENSURE((lo - d->offset) % len == 0 && (hi - d->offset) % len == 0);
	pc = &opt->pieces[opt->npieces++];
	*pc = (struct adamw_piece){
		.tensor = t, .first_row = (int64_t)((lo - d->offset) / len),
		.rows = (int64_t)((hi - lo) / len), .offset = lo, .count = hi - lo,
		.state = opt->state_floats,
	};
	opt->state_floats += hi - lo;
}

void adamw_init(struct adamw *opt, const struct adamw_config *cfg, const struct param_set *p,
		const struct param_range *own, int nown)
{
	const struct param_range all = {0, p->total};

	memset(opt, 0, sizeof(*opt));
	opt->cfg = *cfg;
	opt->sharded = own != NULL;
	if (!own) {
		own = &all;
		nown = 1;
	}
	/* a range meets each tensor at most once */
	opt->pieces = xcalloc((size_t)(p->count + 1) * (size_t)(nown + 1), sizeof(*opt->pieces));
	for (int r = 0; r < nown; r++) {
		const size_t lo = own[r].offset, hi = own[r].offset + own[r].count;

		for (int t = lo < hi ? tensor_at(p, lo) : p->count; t < p->count; t++) {
			const struct param_desc *d = &p->desc[t];
			const size_t a = lo > d->offset ? lo : d->offset;
			const size_t b = hi < d->offset + d->numel ? hi : d->offset + d->numel;

			if (d->offset >= hi)
				break;
			if (a < b)
				add_piece(opt, p, t, a, b);
		}
	}
	/* zeroed */
	opt->m = xaligned_alloc(sizeof(float) * opt->state_floats);
	opt->v = xaligned_alloc(sizeof(float) * opt->state_floats);
}

void adamw_free(struct adamw *opt)
{
	free(opt->pieces);
	free(opt->m);
	free(opt->v);
}

/* One tensor piece's update constants. */
struct adamw_update {
	float b1, b2, eps, step_size, bc2s, decay;
};

/* Elements per block shared out to the threads (the block is cloned for AVX-512,
 * trainer/kernels/simd.h, which an OpenMP-outlined loop is not). */
enum { ADAMW_BLOCK = 1 << 14 };

RN_SIMD_CLONES
static void adamw_block(const struct adamw_update *u, float *w, const float *g, float *m,
			float *v, int64_t n)
{
#pragma omp simd
	for (int64_t j = 0; j < n; j++) {
		float mj = u->b1 * m[j] + (1.0f - u->b1) * g[j];
		float vj = u->b2 * v[j] + (1.0f - u->b2) * g[j] * g[j];

		m[j] = mj;
		v[j] = vj;
		w[j] = w[j] * u->decay - u->step_size * mj / (sqrtf(vj) / u->bc2s + u->eps);
	}
}

void adamw_step(struct adamw *opt, struct param_set *p, double lr)
{
	const struct adamw_config *c = &opt->cfg;
	const int64_t t = ++opt->step;
	/* Bias corrections folded into the step size, as in PyTorch's AdamW. */
	const double bc1 = 1.0 - pow(c->beta1, (double)t);
	const double bc2_sqrt = sqrt(1.0 - pow(c->beta2, (double)t));

	for (int i = 0; i < opt->npieces; i++) {
		const struct adamw_piece *pc = &opt->pieces[i];
		const struct param_desc *d = &p->desc[pc->tensor];
		const struct adamw_update u = {
			.b1 = (float)c->beta1, .b2 = (float)c->beta2, .eps = (float)c->eps,
			.step_size = (float)(lr / bc1), .bc2s = (float)bc2_sqrt,
			.decay = d->weight_decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f,
		};
		float *w = p->data + pc->offset, *g = p->grad + pc->offset;
		float *m = opt->m + pc->state, *v = opt->v + pc->state;
		const int64_t n = (int64_t)pc->count;
		const int64_t nblk = (n + ADAMW_BLOCK - 1) / ADAMW_BLOCK;

#pragma omp parallel for schedule(static)
		for (int64_t b = 0; b < nblk; b++) {
			const int64_t o = b * ADAMW_BLOCK;

			adamw_block(&u, w + o, g + o, m + o, v + o,
				    n - o < ADAMW_BLOCK ? n - o : ADAMW_BLOCK);
		}
	}
}

void adamw_grad_sumsq(const struct adamw *opt, const struct param_set *p, double sums[2])
{
	sums[0] = sums[1] = 0.0;
	for (int i = 0; i < opt->npieces; i++) {
		const struct adamw_piece *pc = &opt->pieces[i];

		sums[p->desc[pc->tensor].sharded ? 0 : 1] +=
			colsum_sumsq(p->grad + pc->offset, (int64_t)pc->count);
	}
}

/* The row boundary of the flat blocks nearest to x (see adamw_shard_counts). */
static size_t snap(const struct param_set *p, size_t x)
{
	const int t = tensor_at(p, x);
	const struct param_desc *d = &p->desc[t];
	const size_t len = row_len(p, t), rel = x - d->offset;

	if (x < d->offset)
		return d->offset;
	if (rel >= d->numel)
		return d->offset + d->numel;
	return d->offset + (rel + len / 2) / len * len;
}

void adamw_shard_counts(const struct param_set *p, struct param_range r, int parts,
			size_t *counts)
{
	size_t prev = r.offset;

	ENSURE(parts >= 1);
	for (int k = 1; k <= parts; k++) {
		size_t b = k == parts ? r.offset + r.count
				      : snap(p, r.offset + (size_t)((double)r.count * k / parts));

		if (b < prev)
			b = prev;
		if (b > r.offset + r.count)
			b = r.offset + r.count;
		counts[k - 1] = b - prev;
		prev = b;
	}
}

double grad_sumsq_local(const struct param_set *p)
{
	return colsum_sumsq(p->grad, (int64_t)p->total);
}

void grad_scale(struct param_set *p, float s)
{
	const int64_t n = (int64_t)p->total;

#pragma omp parallel for simd
	for (int64_t j = 0; j < n; j++)
		p->grad[j] *= s;
}

int grad_all_finite(const struct param_set *p)
{
	int bad = 0;
	const int64_t n = (int64_t)p->total;

#pragma omp parallel for reduction(| : bad)
	for (int64_t j = 0; j < n; j++)
		bad |= !isfinite(p->grad[j]);
	return !bad;
}
