#include "trainer/optimizer.h"

#include <math.h>
#include <stdlib.h>

#include "common/alloc.h"

void adamw_init(struct adamw *opt, const struct adamw_config *cfg, const struct param_set *p)
{
	opt->cfg = *cfg;
	opt->step = 0;
	opt->m = xaligned_alloc(sizeof(float) * p->total);
	opt->v = xaligned_alloc(sizeof(float) * p->total);
}

void adamw_free(struct adamw *opt)
{
	free(opt->m);
	free(opt->v);
}

void adamw_step(struct adamw *opt, struct param_set *p, double lr)
{
	const struct adamw_config *c = &opt->cfg;
	const int64_t t = ++opt->step;
	const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
	/* Bias corrections folded into the step size, as in PyTorch's AdamW. */
	const double bc1 = 1.0 - pow(c->beta1, (double)t);
	const double bc2_sqrt = sqrt(1.0 - pow(c->beta2, (double)t));
	const float step_size = (float)(lr / bc1);
	const float bc2s = (float)bc2_sqrt;

	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];
		const float decay = d->weight_decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
		float *w = p->data + d->offset, *g = p->grad + d->offset;
		float *m = opt->m + d->offset, *v = opt->v + d->offset;
		const int64_t n = (int64_t)d->numel;

#pragma omp parallel for simd
		for (int64_t j = 0; j < n; j++) {
			float mj = b1 * m[j] + (1.0f - b1) * g[j];
			float vj = b2 * v[j] + (1.0f - b2) * g[j] * g[j];

			m[j] = mj;
			v[j] = vj;
			w[j] = w[j] * decay - step_size * mj / (sqrtf(vj) / bc2s + eps);
		}
	}
}

double grad_sumsq_local(const struct param_set *p)
{
	double s = 0.0;
	const int64_t n = (int64_t)p->total;

#pragma omp parallel for reduction(+ : s)
	for (int64_t j = 0; j < n; j++)
		s += (double)p->grad[j] * p->grad[j];
	return s;
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
