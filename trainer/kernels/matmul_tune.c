#include "trainer/kernels/matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/stats.h"
#include "trainer/kernels/matmul_internal.h"

/*
 * Autotuning. oneDNN offers its implementations of a primitive in its order of
 * preference and creates the first that accepts the shape; for some shapes another
 * one (gemm:jit against brg:avx512_core, say) is faster on the machine at hand. A
 * tuned plan runs each candidate in turn on scratch operands of its shape for
 * AUTOTUNE_ROUNDS rounds after a warm-up and keeps the one of least median time; a
 * tie goes to oneDNN's first. Candidates are taken in turn, round after round, so a
 * slow spell of the machine falls on all of them. After the implementations that read
 * B as the caller stores it come those that ask for a layout of their own (brgemm's
 * blocked weights): B is reordered into it before every run, and the reorder is
 * timed with the product. Reference implementations are never
 * candidates (they are there for coverage, and take seconds on a large shape).
 * Products under AUTOTUNE_MIN_MACS multiply-adds are not tuned: timing them costs
 * more than it could win, and the small ones are the per-chunk products that run
 * inside parallel regions, one thread each, where a timing taken outside would not
 * hold.
 */
enum { AUTOTUNE_ROUNDS = 5, AUTOTUNE_MAX_CANDIDATES = 8 };
#define AUTOTUNE_MIN_MACS ((int64_t)1 << 24)

static bool tunable(const struct matmul_shape *s)
{
	return s->batch * s->m * s->n * s->k >= AUTOTUNE_MIN_MACS;
}

struct candidate {
	dnnl_primitive_desc_t pd;
	dnnl_primitive_desc_t reorder_pd; /* B into pd's layout first; NULL: none */
	char name[MATMUL_IMPL_NAME];
	dnnl_primitive_t prim, reorder;
	dnnl_memory_t scratch, b_reordered;
	void *scratch_buf, *b_buf;
	double seconds[AUTOTUNE_ROUNDS];
};

/* A buffer for an operand of md, filled with a small normal value: the same bits
 * are 0.0078 in float32 and in bf16, and neither zeros (which a CPU may read from
 * the shared zero page) nor denormals would time like real data. */
static void *timing_operand(const dnnl_memory_desc_t *md)
{
	size_t n = (dnnl_memory_desc_get_size(md) + 1) / 2;
	uint16_t *buf = xaligned_alloc(2 * n);

	for (size_t i = 0; i < n; i++)
		buf[i] = 0x3C00;
	return buf;
}

/* Destroys a candidate's descriptors (not the primitives time_candidates makes). */
static void candidate_free(struct candidate *c)
{
	if (c->reorder_pd)
		CHECK_DNNL(dnnl_primitive_desc_destroy(c->reorder_pd));
	CHECK_DNNL(dnnl_primitive_desc_destroy(c->pd));
}

/* A reference implementation, or a name already among cand[0, n) (an iterator over
 * the descriptor of an existing primitive offers each implementation twice). */
static bool skip_candidate(const char *name, const struct candidate *cand, int n)
{
	if (strstr(name, "ref"))
		return true;
	for (int c = 0; c < n; c++)
		if (!strcmp(name, cand[c].name))
			return true;
	return false;
}

/*
 * Appends oneDNN's non-reference implementations of desc to cand[0, n), in its
 * order, up to AUTOTUNE_MAX_CANDIDATES; the new count, or -1 with *st set when the
 * iterator cannot start. given_b: NULL when desc's B is the caller's layout; else
 * desc leaves B's layout to oneDNN, and only the implementations that choose another
 * layout than given_b are taken, each with the reorder of B into it.
 */
static int list_candidates(struct kernels_ctx *ctx, struct candidate *cand, int n,
			   const_dnnl_op_desc_t desc, const_dnnl_primitive_attr_t attr,
			   const dnnl_memory_desc_t *given_b, dnnl_status_t *st)
{
	dnnl_primitive_desc_iterator_t it;

	*st = dnnl_primitive_desc_iterator_create(&it, desc, attr, ctx->engine, NULL);
	if (*st != dnnl_success)
		return -1;
	do {
		struct candidate c = {.pd = dnnl_primitive_desc_iterator_fetch(it)};
		bool usable = true;

		CHECK_PTR(c.pd);
		snprintf(c.name, sizeof(c.name), "%s%s", matmul_impl_name(c.pd),
			 given_b ? MATMUL_B_REORDERED : "");
		if (given_b) {
			const dnnl_memory_desc_t *own =
				dnnl_primitive_desc_query_md(c.pd, dnnl_query_weights_md, 0);

			usable = !dnnl_memory_desc_equal(own, given_b) &&
				 dnnl_reorder_primitive_desc_create(&c.reorder_pd, given_b,
								    ctx->engine, own, ctx->engine,
								    NULL) == dnnl_success;
		}
		if (usable && !skip_candidate(c.name, cand, n) && n < AUTOTUNE_MAX_CANDIDATES)
			cand[n++] = c;
		else
			candidate_free(&c);
	} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	CHECK_DNNL(dnnl_primitive_desc_iterator_destroy(it));
	return n;
}

/* The candidates of desc: B as the caller stores it, then B reordered. */
static int list_all_candidates(struct kernels_ctx *ctx, struct candidate *cand,
			       const_dnnl_op_desc_t desc, const_dnnl_primitive_attr_t attr,
			       dnnl_status_t *st)
{
	dnnl_matmul_desc_t own_b = *(const dnnl_matmul_desc_t *)desc;
	const dnnl_memory_desc_t given_b = own_b.weights_desc;
	dnnl_status_t st_own;
	int n = list_candidates(ctx, cand, 0, desc, attr, NULL, st), all;

	if (n < 0)
		return n;
	CHECK_DNNL(dnnl_memory_desc_init_by_tag(&own_b.weights_desc, given_b.ndims, given_b.dims,
						given_b.data_type, dnnl_format_tag_any));
	all = list_candidates(ctx, cand, n, &own_b, attr, &given_b, &st_own);
	return all < 0 ? n : all;
}

/* Runs the n candidates in turn, a warm-up round then AUTOTUNE_ROUNDS timed ones,
 * on scratch operands (thread 0's stream: outside any parallel region). */
static void time_candidates(struct kernels_ctx *ctx, struct candidate *cand, int n,
			    const dnnl_memory_desc_t mds[3])
{
	dnnl_memory_t mem[3];
	void *buf[3];

	for (int i = 0; i < 3; i++) {
		buf[i] = timing_operand(&mds[i]);
		CHECK_DNNL(dnnl_memory_create(&mem[i], &mds[i], ctx->engine, buf[i]));
	}
	for (int c = 0; c < n; c++) {
		const dnnl_memory_desc_t *sp =
			dnnl_primitive_desc_query_md(cand[c].pd, dnnl_query_scratchpad_md, 0);
		size_t bytes = dnnl_memory_desc_get_size(sp);

		cand[c].scratch_buf = bytes ? xaligned_alloc(bytes) : NULL;
		CHECK_DNNL(dnnl_memory_create(&cand[c].scratch, sp, ctx->engine,
					      cand[c].scratch_buf));
		CHECK_DNNL(dnnl_primitive_create(&cand[c].prim, cand[c].pd));
		if (cand[c].reorder_pd) {
			const dnnl_memory_desc_t *own =
				dnnl_primitive_desc_query_md(cand[c].pd, dnnl_query_weights_md, 0);

			cand[c].b_buf = xaligned_alloc(dnnl_memory_desc_get_size(own));
			CHECK_DNNL(dnnl_memory_create(&cand[c].b_reordered, own, ctx->engine,
						      cand[c].b_buf));
			CHECK_DNNL(dnnl_primitive_create(&cand[c].reorder, cand[c].reorder_pd));
		}
	}
	for (int r = -1; r < AUTOTUNE_ROUNDS; r++) { /* round -1: JIT and first touch */
		for (int c = 0; c < n; c++) {
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			matmul_execute_on(ctx->streams[0], cand[c].prim, cand[c].reorder, mem[0],
					  mem[1], cand[c].reorder ? cand[c].b_reordered : mem[1],
					  mem[2], cand[c].scratch);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if (r >= 0)
				cand[c].seconds[r] = (double)(t1.tv_sec - t0.tv_sec) +
						     1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
		}
	}
	for (int c = 0; c < n; c++) {
		CHECK_DNNL(dnnl_primitive_destroy(cand[c].prim));
		CHECK_DNNL(dnnl_memory_destroy(cand[c].scratch));
		free(cand[c].scratch_buf);
		if (cand[c].reorder_pd) {
			CHECK_DNNL(dnnl_primitive_destroy(cand[c].reorder));
			CHECK_DNNL(dnnl_memory_destroy(cand[c].b_reordered));
			free(cand[c].b_buf);
		}
	}
	for (int i = 0; i < 3; i++) {
		CHECK_DNNL(dnnl_memory_destroy(mem[i]));
		free(buf[i]);
	}
}

/* Every rank's values replaced by their maximum over the ranks of agree (nothing
 * without one). */
static void agree_max(const struct matmul_agree *agree, double *v, int n)
{
	if (agree)
		agree->max(v, n, agree->arg);
}

enum { AGREE_MAX_VALUES = 2 };

/* Whether v[0, n) is the same on every rank of agree (always, without one): each
 * value and its negation maxed over the ranks, max(x) = -max(-x). Each rank calls
 * it at the same point. Values must be exact in a double. */
static bool same_on_all_ranks(const struct matmul_agree *agree, const double *v, int n)
{
	double both[2 * AGREE_MAX_VALUES];

	ENSURE(n <= AGREE_MAX_VALUES);
	for (int i = 0; i < n; i++) {
		both[i] = v[i];
		both[n + i] = -v[i];
	}
	agree_max(agree, both, 2 * n);
	for (int i = 0; i < n; i++)
		if (both[i] != -both[n + i])
			return false;
	return true;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

/* FNV-1a of len bytes, continuing from h. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *b = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* A hash in 52 bits, exact in a double. */
static double hash_value(uint64_t h)
{
	return (double)(h >> 12);
}

/* The primitive descriptor of the fastest candidate into *pd and, if it reads B
 * reordered, that reorder's into *reorder_pd (else NULL), what was found into
 * *tuning; or oneDNN's status when it has no implementation. With agree, the ranks
 * time their candidates together and keep the one whose slowest rank is fastest
 * (all of them the same one); ranks offered different candidates (another number or
 * other names, as on nodes of another CPU) keep oneDNN's first choice, untimed. */
static dnnl_status_t fastest_impl(struct kernels_ctx *ctx, dnnl_primitive_desc_t *pd,
				  dnnl_primitive_desc_t *reorder_pd,
				  struct matmul_tuning *tuning, const_dnnl_op_desc_t desc,
				  const_dnnl_primitive_attr_t attr,
				  const dnnl_memory_desc_t mds[3],
				  const struct matmul_agree *agree)
{
	struct candidate cand[AUTOTUNE_MAX_CANDIDATES];
	double median[AUTOTUNE_MAX_CANDIDATES], offer[2];
	dnnl_status_t st;
	int n = list_all_candidates(ctx, cand, desc, attr, &st), best = 0;
	uint64_t names = FNV_OFFSET;
	bool same_offer;

	if (n < 0)
		return st;
	for (int c = 0; c < n; c++)
		names = fnv1a(names, cand[c].name, strlen(cand[c].name) + 1);
	offer[0] = n;
	offer[1] = hash_value(names);
	same_offer = same_on_all_ranks(agree, offer, 2);
	*reorder_pd = NULL;
	if (n == 0) /* only reference ones: oneDNN's own choice, untimed */
		return dnnl_primitive_desc_create(pd, desc, attr, ctx->engine, NULL);
	snprintf(tuning->first_impl, sizeof(tuning->first_impl), "%s", cand[0].name);
	tuning->candidates = n;
	if (n > 1 && same_offer) { /* one is kept untimed: nothing to choose */
		time_candidates(ctx, cand, n, mds);
		for (int c = 0; c < n; c++)
			median[c] = stats_median(cand[c].seconds, AUTOTUNE_ROUNDS);
		agree_max(agree, median, n);
		for (int c = 0; c < n; c++)
			if (median[c] < median[best])
				best = c;
		tuning->first_s = median[0];
		tuning->chosen_s = median[best];
	}
	for (int c = 0; c < n; c++)
		if (c != best)
			candidate_free(&cand[c]);
	*pd = cand[best].pd;
	*reorder_pd = cand[best].reorder_pd;
	return dnnl_success;
}

/* The fields that make two plans the same, hashed into h. */
static uint64_t plan_hash(uint64_t h, const struct matmul_plan *p)
{
	int64_t v[MATMUL_SHAPE_KEY + 1];

	matmul_shape_key(&p->shape, v);
	v[MATMUL_SHAPE_KEY] = p->bf16;
	return fnv1a(h, v, sizeof(v));
}

static bool awaits_tuning(const struct matmul_plan *p)
{
	return !p->tuning.candidates && tunable(&p->shape);
}

int matmul_autotune_plans(struct kernels_ctx *ctx, const struct matmul_agree *agree)
{
	uint64_t h = FNV_OFFSET;
	double plans[2];
	int count = 0, tuned = 0;

	ENSURE(!omp_in_parallel());
	for (int i = 0; i < ctx->nplans; i++)
		if (awaits_tuning(ctx->plans[i])) {
			count++;
			h = plan_hash(h, ctx->plans[i]);
		}
	plans[0] = count;
	plans[1] = hash_value(h);
	if (!same_on_all_ranks(agree, plans, 2))
		return -1;
	for (int i = 0; i < ctx->nplans; i++) {
		struct matmul_plan *p = ctx->plans[i];
		const_dnnl_op_desc_t desc;
		const_dnnl_primitive_attr_t attr;
		dnnl_memory_desc_t mds[3];
		dnnl_primitive_desc_t pd, reorder_pd;

		if (!awaits_tuning(p))
			continue;
		CHECK_DNNL(dnnl_primitive_desc_query(p->pd, dnnl_query_matmul_d, 0, &desc));
		CHECK_DNNL(dnnl_primitive_desc_get_attr(p->pd, &attr));
		mds[0] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_src_md, 0);
		mds[1] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_weights_md, 0);
		mds[2] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_dst_md, 0);
		CHECK_DNNL(fastest_impl(ctx, &pd, &reorder_pd, &p->tuning, desc, attr, mds,
					agree));
		matmul_detach_primitive(ctx, p); /* desc and attr were the old descriptor's */
		p->pd = pd;
		p->reorder_pd = reorder_pd;
		matmul_attach_primitive(ctx, p);
		tuned++;
	}
	return tuned;
}

const struct matmul_tuning *matmul_plan_tuning(const struct matmul_plan *plan)
{
	return &plan->tuning;
}

void matmul_tuning_totals(const struct kernels_ctx *ctx, struct matmul_tuning_totals *out)
{
	*out = (struct matmul_tuning_totals){0};
	for (int i = 0; i < ctx->nplans; i++) {
		const struct matmul_plan *p = ctx->plans[i];

		if (!p->tuning.candidates)
			continue;
		out->tuned++;
		out->moved += strcmp(p->impl, p->tuning.first_impl) != 0;
		out->first_s += p->tuning.first_s;
		out->chosen_s += p->tuning.chosen_s;
	}
}
