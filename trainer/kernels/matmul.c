#include "trainer/kernels/matmul.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "common/stats.h"
#include "trainer/kernels/bf16.h"

enum { MEM_A, MEM_B, MEM_C, MEM_SCRATCH, MEM_COUNT };

struct matmul_plan {
	struct matmul_shape shape;
	bool bf16;            /* bf16 x bf16 -> f32 on packed copies of A and B */
	int64_t a_elems;      /* bf16 plans: packed A, batch * M * K */
	int64_t b_elems;      /* bf16 plans: packed B, batch * K * N */
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	dnnl_memory_desc_t scratch_md;
	size_t scratch_bytes;
	dnnl_memory_t *mem; /* [nthreads][MEM_COUNT] */
	const char *impl;
	struct matmul_tuning tuning;
};

struct kernels_ctx {
	dnnl_engine_t engine;
	int nthreads;
	dnnl_stream_t *streams; /* [nthreads] */
	void **scratch;         /* [nthreads], scratch_bytes each */
	size_t scratch_bytes;
	struct matmul_plan **plans;
	int nplans, cap;
	bool bf16;              /* plans got from now on are bf16 ones */
	uint16_t **cvt;         /* [nthreads] packed bf16 operands, grow-only */
	size_t *cvt_elems;      /* [nthreads] capacity of cvt[t] */
	struct held {           /* matmul_hold: one converted operand per slot */
		const float *src; /* NULL: the slot is free */
		int64_t elems;
		const uint16_t *copy; /* bf16 copy of src (own's or a kept one); NULL: none */
		struct matmul_kept own; /* matmul_hold's copy */
	} held[MATMUL_HOLD_SLOTS];
};

/* oneDNN's name for an ISA level, for messages. */
static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
	case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	default: return "unknown";
	}
}

struct kernels_ctx *kernels_ctx_init(void)
{
	struct kernels_ctx *ctx = xcalloc(1, sizeof(*ctx));

	CHECK_DNNL(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0));
	ctx->nthreads = omp_get_max_threads();
	ctx->streams = xcalloc((size_t)ctx->nthreads, sizeof(*ctx->streams));
	ctx->scratch = xcalloc((size_t)ctx->nthreads, sizeof(*ctx->scratch));
	ctx->cvt = xcalloc((size_t)ctx->nthreads, sizeof(*ctx->cvt));
	ctx->cvt_elems = xcalloc((size_t)ctx->nthreads, sizeof(*ctx->cvt_elems));
	for (int t = 0; t < ctx->nthreads; t++)
		CHECK_DNNL(dnnl_stream_create(&ctx->streams[t], ctx->engine,
					      dnnl_stream_default_flags));
	return ctx;
}

void kernels_ctx_free(struct kernels_ctx *ctx)
{
	if (!ctx)
		return;
	for (int i = 0; i < ctx->nplans; i++) {
		struct matmul_plan *p = ctx->plans[i];

		for (int j = 0; j < ctx->nthreads * MEM_COUNT; j++)
			CHECK_DNNL(dnnl_memory_destroy(p->mem[j]));
		free(p->mem);
		CHECK_DNNL(dnnl_primitive_destroy(p->prim));
		CHECK_DNNL(dnnl_primitive_desc_destroy(p->pd));
		free(p);
	}
	free(ctx->plans);
	for (int t = 0; t < ctx->nthreads; t++) {
		CHECK_DNNL(dnnl_stream_destroy(ctx->streams[t]));
		free(ctx->scratch[t]);
		free(ctx->cvt[t]);
	}
	free(ctx->streams);
	free(ctx->scratch);
	free(ctx->cvt);
	free(ctx->cvt_elems);
	for (int i = 0; i < MATMUL_HOLD_SLOTS; i++)
		matmul_kept_free(&ctx->held[i].own);
	CHECK_DNNL(dnnl_engine_destroy(ctx->engine));
	free(ctx);
}

int kernels_ctx_set_bf16(struct kernels_ctx *ctx, bool on, char *err, size_t errlen)
{
	const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
	const unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;

	/* The ISA values are nested bit sets: avx512_core_amx contains avx512_core_bf16.
	 * The effective ISA also honours ONEDNN_MAX_CPU_ISA, which is how the error
	 * path is tested on a machine that has bf16. */
	if (on && ((unsigned)isa & need) != need) {
		log_fail(err, errlen, "--bf16: this CPU (oneDNN ISA %s) has no AVX512-BF16; bf16 "
			 "matmuls need avx512_core_bf16 (run without --bf16)", isa_name(isa));
		return -ENOTSUP;
	}
	ctx->bf16 = on;
	return 0;
}

bool kernels_ctx_bf16(const struct kernels_ctx *ctx)
{
	return ctx->bf16;
}

struct matmul_shape matmul_shape_dense(int64_t m, int64_t n, int64_t k, bool trans_a,
				       bool trans_b, bool accumulate)
{
	struct matmul_shape s = {
		.batch = 1, .m = m, .n = n, .k = k,
		.lda = trans_a ? m : k, .ldb = trans_b ? k : n, .ldc = n,
		.trans_a = trans_a, .trans_b = trans_b, .accumulate = accumulate,
	};
	return s;
}

static bool shape_equal(const struct matmul_shape *a, const struct matmul_shape *b)
{
	bool batched = a->batch > 1;

	return a->batch == b->batch && a->m == b->m && a->n == b->n && a->k == b->k &&
	       a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc &&
	       a->trans_a == b->trans_a && a->trans_b == b->trans_b &&
	       a->accumulate == b->accumulate &&
	       (!batched || (a->stride_a == b->stride_a && a->stride_b == b->stride_b &&
			     a->stride_c == b->stride_c));
}

/* A rows x cols operand stored with row stride ld, or transposed (stored cols x rows). */
static void operand_md(dnnl_memory_desc_t *md, int64_t batch, int64_t batch_stride,
		       int64_t rows, int64_t cols, int64_t ld, bool transposed,
		       dnnl_data_type_t dt)
{
	dnnl_dims_t dims, strides;
	int nd = 0;

	if (batch > 1) {
		dims[nd] = batch;
		strides[nd++] = batch_stride;
	}
	dims[nd] = rows;
	strides[nd++] = transposed ? 1 : ld;
	dims[nd] = cols;
	strides[nd++] = transposed ? ld : 1;
	CHECK_DNNL(dnnl_memory_desc_init_by_strides(md, nd, dims, dt, strides));
}

static void validate_shape(const struct matmul_shape *s)
{
	ENSURE(s->batch >= 1 && s->m > 0 && s->n > 0 && s->k > 0);
	ENSURE(s->lda >= (s->trans_a ? s->m : s->k));
	ENSURE(s->ldb >= (s->trans_b ? s->k : s->n));
	ENSURE(s->ldc >= s->n);
}

/*
 * Autotuning. oneDNN offers its implementations of a primitive in its order of
 * preference and creates the first that accepts the shape; for some shapes another
 * one (gemm:jit against brg:avx512_core, say) is faster on the machine at hand. A
 * tuned plan runs each candidate in turn on scratch operands of its shape for
 * AUTOTUNE_ROUNDS rounds after a warm-up and keeps the one of least median time; a
 * tie goes to oneDNN's first. Candidates are taken in turn, round after round, so a
 * slow spell of the machine falls on all of them. Reference implementations are never
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
	dnnl_primitive_t prim;
	dnnl_memory_t scratch;
	void *scratch_buf;
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

static const char *impl_name(const_dnnl_primitive_desc_t pd)
{
	const char *impl;

	CHECK_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
	return impl;
}

/* A reference implementation, or one already among cand[0, n) (an iterator over
 * the descriptor of an existing primitive offers each implementation twice). */
static bool skip_candidate(const_dnnl_primitive_desc_t pd, const struct candidate *cand, int n)
{
	const char *impl = impl_name(pd);

	if (strstr(impl, "ref"))
		return true;
	for (int c = 0; c < n; c++)
		if (!strcmp(impl, impl_name(cand[c].pd)))
			return true;
	return false;
}

/* oneDNN's non-reference implementations of desc, in its order; how many (at most
 * AUTOTUNE_MAX_CANDIDATES), or -1 with *st set when it has none at all. */
static int list_candidates(struct kernels_ctx *ctx, struct candidate *cand,
			   const_dnnl_op_desc_t desc, const_dnnl_primitive_attr_t attr,
			   dnnl_status_t *st)
{
	dnnl_primitive_desc_iterator_t it;
	int n = 0;

	*st = dnnl_primitive_desc_iterator_create(&it, desc, attr, ctx->engine, NULL);
	if (*st != dnnl_success)
		return -1;
	do {
		dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);

		CHECK_PTR(pd);
		if (skip_candidate(pd, cand, n) || n == AUTOTUNE_MAX_CANDIDATES)
			CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
		else
			cand[n++] = (struct candidate){.pd = pd};
	} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	CHECK_DNNL(dnnl_primitive_desc_iterator_destroy(it));
	return n;
}

/* Runs the n candidates in turn, a warm-up round then AUTOTUNE_ROUNDS timed ones,
 * on scratch operands (thread 0's stream: outside any parallel region). */
static void time_candidates(struct kernels_ctx *ctx, struct candidate *cand, int n,
			    const dnnl_memory_desc_t *const mds[3])
{
	dnnl_memory_t mem[3];
	void *buf[3];

	for (int i = 0; i < 3; i++) {
		buf[i] = timing_operand(mds[i]);
		CHECK_DNNL(dnnl_memory_create(&mem[i], mds[i], ctx->engine, buf[i]));
	}
	for (int c = 0; c < n; c++) {
		const dnnl_memory_desc_t *sp =
			dnnl_primitive_desc_query_md(cand[c].pd, dnnl_query_scratchpad_md, 0);
		size_t bytes = dnnl_memory_desc_get_size(sp);

		cand[c].scratch_buf = bytes ? xaligned_alloc(bytes) : NULL;
		CHECK_DNNL(dnnl_memory_create(&cand[c].scratch, sp, ctx->engine,
					      cand[c].scratch_buf));
		CHECK_DNNL(dnnl_primitive_create(&cand[c].prim, cand[c].pd));
	}
	for (int r = -1; r < AUTOTUNE_ROUNDS; r++) { /* round -1: JIT and first touch */
		for (int c = 0; c < n; c++) {
			dnnl_exec_arg_t args[4] = {
				{DNNL_ARG_SRC, mem[0]},
				{DNNL_ARG_WEIGHTS, mem[1]},
				{DNNL_ARG_DST, mem[2]},
				{DNNL_ARG_SCRATCHPAD, cand[c].scratch},
			};
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			CHECK_DNNL(dnnl_primitive_execute(cand[c].prim, ctx->streams[0], 4, args));
			CHECK_DNNL(dnnl_stream_wait(ctx->streams[0]));
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

/* The primitive descriptor of the fastest candidate into *pd, what was found into
 * *tuning; or oneDNN's status when it has no implementation. With agree, the ranks
 * time their candidates together and keep the one whose slowest rank is fastest
 * (all of them the same one); ranks offered different candidates (another number or
 * other names, as on nodes of another CPU) keep oneDNN's first choice, untimed. */
static dnnl_status_t fastest_impl(struct kernels_ctx *ctx, dnnl_primitive_desc_t *pd,
				  struct matmul_tuning *tuning, const_dnnl_op_desc_t desc,
				  const_dnnl_primitive_attr_t attr,
				  const dnnl_memory_desc_t *const mds[3],
				  const struct matmul_agree *agree)
{
	struct candidate cand[AUTOTUNE_MAX_CANDIDATES];
	double median[AUTOTUNE_MAX_CANDIDATES], offer[2];
	dnnl_status_t st;
	int n = list_candidates(ctx, cand, desc, attr, &st), best = 0;
	uint64_t names = FNV_OFFSET;
	bool same_offer;

	if (n < 0)
		return st;
	for (int c = 0; c < n; c++)
		names = fnv1a(names, impl_name(cand[c].pd), strlen(impl_name(cand[c].pd)) + 1);
	offer[0] = n;
	offer[1] = hash_value(names);
	same_offer = same_on_all_ranks(agree, offer, 2);
	if (n == 0) /* only reference ones: oneDNN's own choice, untimed */
		return dnnl_primitive_desc_create(pd, desc, attr, ctx->engine, NULL);
	snprintf(tuning->first_impl, sizeof(tuning->first_impl), "%s", impl_name(cand[0].pd));
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
			CHECK_DNNL(dnnl_primitive_desc_destroy(cand[c].pd));
	*pd = cand[best].pd;
	return dnnl_success;
}

/* The primitive of p->pd, its name and scratchpad, and each thread's scratchpad
 * memory object. */
static void attach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p)
{
	const dnnl_memory_desc_t *sp;

	CHECK_DNNL(dnnl_primitive_create(&p->prim, p->pd));
	p->impl = impl_name(p->pd);
	sp = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
	p->scratch_md = *sp;
	p->scratch_bytes = dnnl_memory_desc_get_size(sp);
	for (int t = 0; t < ctx->nthreads; t++)
		CHECK_DNNL(dnnl_memory_create(&p->mem[t * MEM_COUNT + MEM_SCRATCH], &p->scratch_md,
					      ctx->engine, DNNL_MEMORY_NONE));
	/* One scratchpad per thread, sized for the largest plan so far. */
	if (p->scratch_bytes > ctx->scratch_bytes) {
		for (int t = 0; t < ctx->nthreads; t++) {
			free(ctx->scratch[t]);
			ctx->scratch[t] = xaligned_alloc(p->scratch_bytes);
		}
		ctx->scratch_bytes = p->scratch_bytes;
	}
}

static void detach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p)
{
	for (int t = 0; t < ctx->nthreads; t++)
		CHECK_DNNL(dnnl_memory_destroy(p->mem[t * MEM_COUNT + MEM_SCRATCH]));
	CHECK_DNNL(dnnl_primitive_destroy(p->prim));
	CHECK_DNNL(dnnl_primitive_desc_destroy(p->pd));
}

static struct matmul_plan *plan_create(struct kernels_ctx *ctx, const struct matmul_shape *s)
{
	struct matmul_plan *p = xcalloc(1, sizeof(*p));
	dnnl_memory_desc_t a_md, b_md, c_md;
	dnnl_matmul_desc_t desc;
	dnnl_primitive_attr_t attr;
	dnnl_status_t st;

	validate_shape(s);
	p->shape = *s;
	p->bf16 = ctx->bf16;
	if (p->bf16) {
		/* The packed copies: dense, in the stored orientation, batch after batch. */
		p->a_elems = s->batch * s->m * s->k;
		p->b_elems = s->batch * s->k * s->n;
		operand_md(&a_md, s->batch, s->m * s->k, s->m, s->k, s->trans_a ? s->m : s->k,
			   s->trans_a, dnnl_bf16);
		operand_md(&b_md, s->batch, s->k * s->n, s->k, s->n, s->trans_b ? s->k : s->n,
			   s->trans_b, dnnl_bf16);
	} else {
		operand_md(&a_md, s->batch, s->stride_a, s->m, s->k, s->lda, s->trans_a,
			   dnnl_f32);
		operand_md(&b_md, s->batch, s->stride_b, s->k, s->n, s->ldb, s->trans_b,
			   dnnl_f32);
	}
	operand_md(&c_md, s->batch, s->stride_c, s->m, s->n, s->ldc, false, dnnl_f32);
	CHECK_DNNL(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md));

	CHECK_DNNL(dnnl_primitive_attr_create(&attr));
	CHECK_DNNL(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
	if (s->accumulate) {
		dnnl_post_ops_t po;

		CHECK_DNNL(dnnl_post_ops_create(&po));
		CHECK_DNNL(dnnl_post_ops_append_sum(po, 1.0f));
		CHECK_DNNL(dnnl_primitive_attr_set_post_ops(attr, po));
		CHECK_DNNL(dnnl_post_ops_destroy(po));
	}
	st = dnnl_primitive_desc_create(&p->pd, &desc, attr, ctx->engine, NULL);
	/* kernels_ctx_set_bf16 refuses a CPU without bf16 matmuls, so this is a bug or
	 * a changed ONEDNN_MAX_CPU_ISA; say which rather than print a status code. */
	if (st != dnnl_success && p->bf16)
		FATAL("bf16 matmul %ldx%ldx%ld: oneDNN has no implementation on this CPU "
		      "(status %d, ISA %s); bf16 needs avx512_core_bf16", (long)s->m, (long)s->n,
		      (long)s->k, (int)st, isa_name(dnnl_get_effective_cpu_isa()));
	CHECK_DNNL(st);
	CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
	p->mem = xcalloc((size_t)ctx->nthreads * MEM_COUNT, sizeof(*p->mem));
	for (int t = 0; t < ctx->nthreads; t++) {
		dnnl_memory_t *m = &p->mem[t * MEM_COUNT];

		CHECK_DNNL(dnnl_memory_create(&m[MEM_A], &a_md, ctx->engine, DNNL_MEMORY_NONE));
		CHECK_DNNL(dnnl_memory_create(&m[MEM_B], &b_md, ctx->engine, DNNL_MEMORY_NONE));
		CHECK_DNNL(dnnl_memory_create(&m[MEM_C], &c_md, ctx->engine, DNNL_MEMORY_NONE));
	}
	attach_primitive(ctx, p);
	return p;
}

/* The fields that make two plans the same, hashed into h. */
static uint64_t plan_hash(uint64_t h, const struct matmul_plan *p)
{
	const struct matmul_shape *s = &p->shape;
	const int64_t v[] = {s->batch, s->m, s->n, s->k, s->lda, s->ldb, s->ldc,
			     s->stride_a, s->stride_b, s->stride_c, s->trans_a, s->trans_b,
			     s->accumulate, p->bf16};

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
		dnnl_primitive_desc_t pd;

		if (!awaits_tuning(p))
			continue;
		CHECK_DNNL(dnnl_primitive_desc_query(p->pd, dnnl_query_matmul_d, 0, &desc));
		CHECK_DNNL(dnnl_primitive_desc_get_attr(p->pd, &attr));
		mds[0] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_src_md, 0);
		mds[1] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_weights_md, 0);
		mds[2] = *dnnl_primitive_desc_query_md(p->pd, dnnl_query_dst_md, 0);
		CHECK_DNNL(fastest_impl(ctx, &pd, &p->tuning, desc, attr,
					(const dnnl_memory_desc_t *const[3]){&mds[0], &mds[1], &mds[2]},
					agree));
		detach_primitive(ctx, p); /* desc and attr were the old descriptor's */
		p->pd = pd;
		attach_primitive(ctx, p);
		tuned++;
	}
	return tuned;
}

const struct matmul_plan *matmul_plan_get(struct kernels_ctx *ctx,
					  const struct matmul_shape *shape)
{
	struct matmul_plan *p;

	ENSURE(!omp_in_parallel());
	for (int i = 0; i < ctx->nplans; i++)
		if (ctx->plans[i]->bf16 == ctx->bf16 &&
		    shape_equal(&ctx->plans[i]->shape, shape))
			return ctx->plans[i];
	p = plan_create(ctx, shape);
	if (ctx->nplans == ctx->cap) {
		ctx->cap = ctx->cap ? 2 * ctx->cap : 16;
		ctx->plans = realloc(ctx->plans, (size_t)ctx->cap * sizeof(*ctx->plans));
		CHECK_PTR(ctx->plans);
	}
	ctx->plans[ctx->nplans++] = p;
	return p;
}

const char *matmul_plan_impl(const struct matmul_plan *plan)
{
	return plan->impl;
}

const struct matmul_tuning *matmul_plan_tuning(const struct matmul_plan *plan)
{
	return &plan->tuning;
}

const struct matmul_plan *matmul_plan_at(const struct kernels_ctx *ctx, int i)
{
	ENSURE(i >= 0 && i < ctx->nplans);
	return ctx->plans[i];
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

bool matmul_plan_is_bf16(const struct matmul_plan *plan)
{
	return plan->bf16;
}

int matmul_plan_count(const struct kernels_ctx *ctx)
{
	return ctx->nplans;
}

/* Points the calling thread's memory objects at the buffers and runs the plan. */
static void execute(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		    const void *a, const void *b)
{
	int t = omp_get_thread_num();
	dnnl_memory_t *m = &plan->mem[t * MEM_COUNT];
	dnnl_exec_arg_t args[4] = {
		{DNNL_ARG_SRC, m[MEM_A]},
		{DNNL_ARG_WEIGHTS, m[MEM_B]},
		{DNNL_ARG_DST, m[MEM_C]},
		{DNNL_ARG_SCRATCHPAD, m[MEM_SCRATCH]},
	};

	ENSURE(t < ctx->nthreads);
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_A], (void *)a));
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_B], (void *)b));
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_C], c));
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_SCRATCH], ctx->scratch[t]));
	CHECK_DNNL(dnnl_primitive_execute(plan->prim, ctx->streams[t], 4, args));
	CHECK_DNNL(dnnl_stream_wait(ctx->streams[t]));
}

/* The calling thread's conversion buffer, at least `elems` long: grown (never
 * shrunk) on first need, so after the first step nothing is allocated. */
static uint16_t *cvt_buffer(struct kernels_ctx *ctx, size_t elems)
{
	int t = omp_get_thread_num();

	ENSURE(t < ctx->nthreads);
	if (ctx->cvt_elems[t] < elems) {
		free(ctx->cvt[t]);
		ctx->cvt[t] = xaligned_alloc(elems * sizeof(uint16_t));
		ctx->cvt_elems[t] = elems;
	}
	return ctx->cvt[t];
}

/* A grow-only bf16 buffer of at least elems values. */
static void grow_bf16(uint16_t **buf, size_t *cap, int64_t elems)
{
	if (*cap < (size_t)elems) {
		free(*buf);
		*buf = xaligned_alloc((size_t)elems * sizeof(uint16_t));
		*cap = (size_t)elems;
	}
}

/* Claims a free slot for src; the caller sets its copy. */
static struct held *hold_slot(struct kernels_ctx *ctx, int slot, const float *src,
			      int64_t elems)
{
	struct held *h;

	ENSURE(slot >= 0 && slot < MATMUL_HOLD_SLOTS && src && elems > 0 && !omp_in_parallel());
	h = &ctx->held[slot];
	ENSURE(!h->src); /* a slot held twice is a missing matmul_release */
	h->src = src;
	h->elems = elems;
	h->copy = NULL;
	return h;
}

/* A hold whose copy lives in the slot and is dropped with it. */
void matmul_hold(struct kernels_ctx *ctx, int slot, const float *src, int64_t elems)
{
	ENSURE(slot >= 0 && slot < MATMUL_HOLD_SLOTS);
	matmul_hold_fresh(ctx, slot, &ctx->held[slot].own, src, elems);
}

void matmul_hold_again(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
		       const float *src, int64_t elems)
{
	if (!(ctx->bf16 && kept->converted && kept->src == src && kept->elems == elems)) {
		matmul_hold_fresh(ctx, slot, kept, src, elems);
		return;
	}
	hold_slot(ctx, slot, src, elems)->copy = kept->buf;
}

uint16_t *matmul_kept_target(struct kernels_ctx *ctx, struct matmul_kept *kept, int64_t elems)
{
	ENSURE(elems > 0 && !omp_in_parallel());
	/* Whatever copy the buffer held is about to be overwritten. */
	kept->src = NULL;
	kept->converted = false;
	kept->target_elems = elems;
	if (!ctx->bf16)
		return NULL;
	grow_bf16(&kept->buf, &kept->cap, elems);
	return kept->buf;
}

void matmul_hold_written(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
			 const float *src, int64_t elems)
{
	struct held *h = hold_slot(ctx, slot, src, elems);

	/* a copy nobody was asked to write, or one of another size */
	ENSURE(kept->target_elems == elems);
	kept->target_elems = 0;
	kept->src = src;
	kept->elems = elems;
	kept->converted = ctx->bf16;
	if (ctx->bf16)
		h->copy = kept->buf;
}

/* A fresh hold is a written one whose writer is the conversion. */
void matmul_hold_fresh(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
		       const float *src, int64_t elems)
{
	uint16_t *copy;

	ENSURE(src); /* before reading it */
	copy = matmul_kept_target(ctx, kept, elems);
	if (copy)
		bf16_pack(copy, src, 1, 0, 1, elems, elems);
	matmul_hold_written(ctx, slot, kept, src, elems);
}

void matmul_kept_reserve(struct matmul_kept *kept, int64_t elems)
{
	grow_bf16(&kept->buf, &kept->cap, elems);
}

void matmul_kept_free(struct matmul_kept *kept)
{
	free(kept->buf);
	memset(kept, 0, sizeof(*kept));
}

void matmul_release(struct kernels_ctx *ctx, int slot)
{
	ENSURE(slot >= 0 && slot < MATMUL_HOLD_SLOTS && !omp_in_parallel());
	ctx->held[slot].src = NULL;
}

/* The held copy of an operand stored as batch x rows x cols with row stride ld, if
 * one is exactly that block: one dense matrix at the held pointer and of its size. */
static const uint16_t *held_copy(const struct kernels_ctx *ctx, const float *src,
				 int64_t batch, int64_t rows, int64_t cols, int64_t ld)
{
	for (int i = 0; i < MATMUL_HOLD_SLOTS; i++) {
		const struct held *h = &ctx->held[i];

		if (h->src == src && h->copy && batch == 1 && ld == cols && rows * cols == h->elems)
			return h->copy;
	}
	return NULL;
}

/* The bf16 copy of an operand: the held one, or a conversion into dst. */
static const uint16_t *bf16_operand(const struct kernels_ctx *ctx, uint16_t *dst,
				    const float *src, int64_t batch, int64_t batch_stride,
				    int64_t rows, int64_t cols, int64_t ld)
{
	const uint16_t *held = held_copy(ctx, src, batch, rows, cols, ld);

	if (held)
		return held;
	bf16_pack(dst, src, batch, batch_stride, rows, cols, ld);
	return dst;
}

void matmul_run(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		const float *a, const float *b)
{
	matmul_run_pre(ctx, plan, c, a, NULL, b, NULL);
}

void matmul_run_pre(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		    const float *a, const uint16_t *a16, const float *b, const uint16_t *b16)
{
	const struct matmul_shape *s = &plan->shape;
	/* B starts on a 64-byte boundary after A. */
	const int64_t b_off = (plan->a_elems + 31) & ~(int64_t)31;
	uint16_t *buf;

	if (!plan->bf16) {
		execute(ctx, plan, c, a, b);
		return;
	}
	buf = cvt_buffer(ctx, (size_t)(b_off + plan->b_elems));
	if (!a16)
		a16 = bf16_operand(ctx, buf, a, s->batch, s->stride_a, s->trans_a ? s->k : s->m,
				   s->trans_a ? s->m : s->k, s->lda);
	if (!b16)
		b16 = bf16_operand(ctx, buf + b_off, b, s->batch, s->stride_b,
				   s->trans_b ? s->n : s->k, s->trans_b ? s->k : s->n, s->ldb);
	execute(ctx, plan, c, a16, b16);
}

void matmul_run_bf16(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		     const uint16_t *a, const uint16_t *b)
{
	ENSURE(plan->bf16);
	execute(ctx, plan, c, a, b);
}

void matmul(struct kernels_ctx *ctx, float *c, const float *a, const float *b, int64_t m,
	    int64_t n, int64_t k, bool trans_a, bool trans_b, bool accumulate)
{
	struct matmul_shape s = matmul_shape_dense(m, n, k, trans_a, trans_b, accumulate);

	matmul_run(ctx, matmul_plan_get(ctx, &s), c, a, b);
}
