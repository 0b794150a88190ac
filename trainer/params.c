#include "trainer/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"

void param_set_init(struct param_set *set)
{
	memset(set, 0, sizeof(*set));
}

int param_set_add(struct param_set *set, const char *name, int ndim, int64_t rows,
		  int64_t cols, int split_dim, int64_t split_start, int64_t split_len,
		  enum param_init init, double init_scale, bool weight_decay)
{
	struct param_desc *d;

	ENSURE(!set->data);
	if (set->count == set->cap) {
		set->cap = set->cap ? 2 * set->cap : 64;
		set->desc = realloc(set->desc, (size_t)set->cap * sizeof(*set->desc));
		CHECK_PTR(set->desc);
	}
	d = &set->desc[set->count];
	memset(d, 0, sizeof(*d));
	if (layout_slice_init(&d->slice, name, ndim, rows, cols, split_dim, split_start,
			      split_len))
		FATAL("parameter '%s': not a valid slice", name);
	d->sharded = split_dim >= 0;
	d->init = init;
	d->init_scale = init_scale;
	d->weight_decay = weight_decay;
	d->numel = size_mul_checked((size_t)d->slice.shape[0], (size_t)d->slice.shape[1], name);
	/* Keep every tensor 64-byte aligned inside the flat block. */
	d->offset = set->total;
	set->total += (d->numel + 15) & ~(size_t)15;
	return set->count++;
}

void param_set_alloc(struct param_set *set)
{
	ENSURE(!set->data);
	set->data = xaligned_alloc(sizeof(float) * set->total);
	set->grad = xaligned_alloc(sizeof(float) * set->total);
}

void param_set_free(struct param_set *set)
{
	free(set->desc);
	free(set->data);
	free(set->grad);
	memset(set, 0, sizeof(*set));
}

static void init_tensor(float *dst, const struct param_desc *d, uint64_t seed)
{
	const struct layout_slice *s = &d->slice;
	const uint64_t stream = rng_stream_of(s->name);
	const int64_t gcols = s->global_shape[1];
	const int64_t row0 = s->start[0], col0 = s->start[1];
	/* fan_in, fan_out of a matrix stored (in, out), from the GLOBAL shape. */
	const double xavier_bound =
		d->init_scale * sqrt(6.0 / (double)(s->global_shape[0] + s->global_shape[1]));

#pragma omp parallel for
	for (int64_t r = 0; r < s->shape[0]; r++)
		for (int64_t c = 0; c < s->shape[1]; c++) {
			uint64_t global_index = (uint64_t)((row0 + r) * gcols + col0 + c);
			double v = 0.0;

			switch (d->init) {
			case PARAM_INIT_ZERO:
				v = 0.0;
				break;
			case PARAM_INIT_ONE:
				v = 1.0;
				break;
			case PARAM_INIT_NORMAL:
				v = d->init_scale * rng_normal(seed, stream, global_index);
				break;
			case PARAM_INIT_XAVIER:
				v = xavier_bound *
				    (2.0 * rng_uniform(seed, stream, global_index) - 1.0);
				break;
			}
			dst[r * s->shape[1] + c] = (float)v;
		}
}

void param_set_init_values(struct param_set *set, uint64_t seed)
{
	for (int i = 0; i < set->count; i++)
		init_tensor(set->data + set->desc[i].offset, &set->desc[i], seed);
}

void param_set_zero_grad(struct param_set *set)
{
	memset(set->grad, 0, sizeof(float) * set->total);
}

/* splitmix64's finaliser: every input bit moves about half of the output bits. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint64_t param_set_hash(const struct param_set *set)
{
	const uint32_t *bits = (const uint32_t *)set->data;
	const int64_t n = (int64_t)set->total;
	uint64_t h = 0;

	/* A sum of mixed (position, bits) terms: order-free, so it parallelises, yet a
	 * change or a swap of any two values changes it. */
#pragma omp parallel for reduction(+ : h)
	for (int64_t i = 0; i < n; i++)
		h += mix64(((uint64_t)i << 32 | bits[i]) ^ 0x9e3779b97f4a7c15ULL);
	return h;
}

int param_set_find(const struct param_set *set, const char *name)
{
	for (int i = 0; i < set->count; i++)
		if (strcmp(set->desc[i].slice.name, name) == 0)
			return i;
	return -1;
}

float *param_data(const struct param_set *set, int index)
{
	ENSURE(index >= 0 && index < set->count);
	return set->data + set->desc[index].offset;
}

float *param_grad(const struct param_set *set, int index)
{
	ENSURE(index >= 0 && index < set->count);
	return set->grad + set->desc[index].offset;
}
