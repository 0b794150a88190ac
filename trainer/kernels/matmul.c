#include "trainer/kernels/matmul.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/matmul_internal.h"

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
	ctx->b_reordered = xcalloc((size_t)ctx->nthreads, sizeof(*ctx->b_reordered));
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

		matmul_detach_primitive(ctx, p);
		for (int t = 0; t < ctx->nthreads; t++) {
			dnnl_memory_t *m = &p->mem[t * MEM_COUNT];

			CHECK_DNNL(dnnl_memory_destroy(m[MEM_A]));
			CHECK_DNNL(dnnl_memory_destroy(m[MEM_C]));
			CHECK_DNNL(dnnl_memory_destroy(m[MEM_B_GIVEN]));
		}
		free(p->mem);
		free(p);
	}
	free(ctx->plans);
	for (int t = 0; t < ctx->nthreads; t++) {
		CHECK_DNNL(dnnl_stream_destroy(ctx->streams[t]));
		free(ctx->scratch[t]);
		free(ctx->b_reordered[t]);
		free(ctx->cvt[t]);
	}
	free(ctx->streams);
	free(ctx->scratch);
	free(ctx->b_reordered);
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

void matmul_shape_key(const struct matmul_shape *s, int64_t key[MATMUL_SHAPE_KEY])
{
	const bool batched = s->batch > 1;
	const int64_t k[MATMUL_SHAPE_KEY] = {
		s->batch, s->m, s->n, s->k, s->lda, s->ldb, s->ldc, s->trans_a, s->trans_b,
		s->accumulate, s->c_bf16,
		/* the strides between a batch's matrices, which one matrix has not */
		batched ? s->stride_a : 0, batched ? s->stride_b : 0, batched ? s->stride_c : 0,
	};

	memcpy(key, k, sizeof(k));
}

static bool shape_equal(const struct matmul_shape *a, const struct matmul_shape *b)
{
	int64_t ka[MATMUL_SHAPE_KEY], kb[MATMUL_SHAPE_KEY];

	matmul_shape_key(a, ka);
	matmul_shape_key(b, kb);
	return memcmp(ka, kb, sizeof(ka)) == 0;
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
	ENSURE(!s->c_bf16 || !s->accumulate);
}

const char *matmul_impl_name(const_dnnl_primitive_desc_t pd)
{
	const char *impl;

	CHECK_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
	return impl;
}

/* Grows the per-thread buffers bufs[nthreads] of *bytes each to at least `need`. */
static void grow_per_thread(const struct kernels_ctx *ctx, void **bufs, size_t *bytes,
			    size_t need)
{
	if (need <= *bytes)
		return;
	for (int t = 0; t < ctx->nthreads; t++) {
		free(bufs[t]);
		bufs[t] = xaligned_alloc(need);
	}
	*bytes = need;
}

void matmul_attach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p)
{
	const dnnl_memory_desc_t *sp, *b_read;

	CHECK_DNNL(dnnl_primitive_create(&p->prim, p->pd));
	snprintf(p->impl, sizeof(p->impl), "%s%s", matmul_impl_name(p->pd),
		 p->reorder_pd ? MATMUL_B_REORDERED : "");
	sp = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
	b_read = dnnl_primitive_desc_query_md(p->pd, dnnl_query_weights_md, 0);
	p->scratch_md = *sp;
	p->scratch_bytes = dnnl_memory_desc_get_size(sp);
	for (int t = 0; t < ctx->nthreads; t++) {
		CHECK_DNNL(dnnl_memory_create(&p->mem[t * MEM_COUNT + MEM_SCRATCH], &p->scratch_md,
					      ctx->engine, DNNL_MEMORY_NONE));
		CHECK_DNNL(dnnl_memory_create(&p->mem[t * MEM_COUNT + MEM_B], b_read, ctx->engine,
					      DNNL_MEMORY_NONE));
	}
	if (p->reorder_pd) {
		CHECK_DNNL(dnnl_primitive_create(&p->reorder, p->reorder_pd));
		grow_per_thread(ctx, ctx->b_reordered, &ctx->b_reordered_bytes,
				dnnl_memory_desc_get_size(b_read));
	}
	/* One scratchpad per thread, sized for the largest plan so far. */
	grow_per_thread(ctx, ctx->scratch, &ctx->scratch_bytes, p->scratch_bytes);
}

void matmul_detach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p)
{
	for (int t = 0; t < ctx->nthreads; t++) {
		CHECK_DNNL(dnnl_memory_destroy(p->mem[t * MEM_COUNT + MEM_SCRATCH]));
		CHECK_DNNL(dnnl_memory_destroy(p->mem[t * MEM_COUNT + MEM_B]));
	}
	CHECK_DNNL(dnnl_primitive_destroy(p->prim));
	CHECK_DNNL(dnnl_primitive_desc_destroy(p->pd));
	if (p->reorder_pd) {
		CHECK_DNNL(dnnl_primitive_destroy(p->reorder));
		CHECK_DNNL(dnnl_primitive_desc_destroy(p->reorder_pd));
		p->reorder_pd = NULL;
		p->reorder = NULL;
	}
}

static struct matmul_plan *plan_create(struct kernels_ctx *ctx, const struct matmul_shape *s)
{
	struct matmul_plan *p = xcalloc(1, sizeof(*p));
	dnnl_memory_desc_t a_md, b_md, c_md;
	dnnl_matmul_desc_t desc;
	dnnl_primitive_attr_t attr;
	dnnl_status_t st;

	validate_shape(s);
	/* a bf16 output is for bf16 products' operands: never on a float32 context */
	ENSURE(!s->c_bf16 || ctx->bf16);
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
	operand_md(&c_md, s->batch, s->stride_c, s->m, s->n, s->ldc, false,
		   s->c_bf16 ? dnnl_bf16 : dnnl_f32);
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
		CHECK_DNNL(dnnl_memory_create(&m[MEM_B_GIVEN], &b_md, ctx->engine,
					      DNNL_MEMORY_NONE));
		CHECK_DNNL(dnnl_memory_create(&m[MEM_C], &c_md, ctx->engine, DNNL_MEMORY_NONE));
	}
	matmul_attach_primitive(ctx, p);
	return p;
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

const struct matmul_plan *matmul_plan_at(const struct kernels_ctx *ctx, int i)
{
	ENSURE(i >= 0 && i < ctx->nplans);
	return ctx->plans[i];
}

bool matmul_plan_is_bf16(const struct matmul_plan *plan)
{
	return plan->bf16;
}

int matmul_plan_count(const struct kernels_ctx *ctx)
{
	return ctx->nplans;
}

void matmul_execute_on(dnnl_stream_t stream, dnnl_primitive_t prim, dnnl_primitive_t reorder,
		       dnnl_memory_t a, dnnl_memory_t b_given, dnnl_memory_t b_read,
		       dnnl_memory_t c, dnnl_memory_t scratch)
{
	dnnl_exec_arg_t args[4] = {
		{DNNL_ARG_SRC, a},
		{DNNL_ARG_WEIGHTS, b_read},
		{DNNL_ARG_DST, c},
		{DNNL_ARG_SCRATCHPAD, scratch},
	};

	if (reorder) {
		dnnl_exec_arg_t reorder_args[2] = {{DNNL_ARG_FROM, b_given},
						   {DNNL_ARG_TO, b_read}};

		CHECK_DNNL(dnnl_primitive_execute(reorder, stream, 2, reorder_args));
	}
	CHECK_DNNL(dnnl_primitive_execute(prim, stream, 4, args));
	CHECK_DNNL(dnnl_stream_wait(stream));
}

/* Points the calling thread's memory objects at the buffers and runs the plan. */
static void execute(struct kernels_ctx *ctx, const struct matmul_plan *plan, void *c,
		    const void *a, const void *b)
{
	int t = omp_get_thread_num();
	dnnl_memory_t *m = &plan->mem[t * MEM_COUNT];

	ENSURE(t < ctx->nthreads);
	if (plan->reorder) {
		CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_B_GIVEN], (void *)b));
		CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_B], ctx->b_reordered[t]));
	} else {
		CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_B], (void *)b));
	}
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_A], (void *)a));
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_C], c));
	CHECK_DNNL(dnnl_memory_set_data_handle(m[MEM_SCRATCH], ctx->scratch[t]));
	matmul_execute_on(ctx->streams[t], plan->prim, plan->reorder, m[MEM_A], m[MEM_B_GIVEN],
			  m[MEM_B], m[MEM_C], m[MEM_SCRATCH]);
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
		ENSURE(!kept->sole); /* src's float32 values were never written */
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
	kept->sole = false;
	kept->target_elems = elems;
	if (!ctx->bf16)
		return NULL;
	grow_bf16(&kept->buf, &kept->cap, elems);
	return kept->buf;
}

uint16_t *matmul_sole_target(struct kernels_ctx *ctx, struct matmul_kept *kept, int64_t elems)
{
	uint16_t *copy = matmul_kept_target(ctx, kept, elems);

	kept->sole = copy != NULL;
	return copy;
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

/* matmul_run_pre for either type of C. */
static void run_pre(struct kernels_ctx *ctx, const struct matmul_plan *plan, void *c,
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

void matmul_run_pre(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		    const float *a, const uint16_t *a16, const float *b, const uint16_t *b16)
{
	ENSURE(!plan->shape.c_bf16);
	run_pre(ctx, plan, c, a, a16, b, b16);
}

void matmul_run_to_bf16(struct kernels_ctx *ctx, const struct matmul_plan *plan, uint16_t *c,
			const float *a, const float *b)
{
	ENSURE(plan->shape.c_bf16);
	run_pre(ctx, plan, c, a, NULL, b, NULL);
}

void matmul_run_bf16(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		     const uint16_t *a, const uint16_t *b)
{
	ENSURE(plan->bf16 && !plan->shape.c_bf16);
	execute(ctx, plan, c, a, b);
}

void matmul(struct kernels_ctx *ctx, float *c, const float *a, const float *b, int64_t m,
	    int64_t n, int64_t k, bool trans_a, bool trans_b, bool accumulate)
{
	struct matmul_shape s = matmul_shape_dense(m, n, k, trans_a, trans_b, accumulate);

	matmul_run(ctx, matmul_plan_get(ctx, &s), c, a, b);
}

void matmul_to_bf16(struct kernels_ctx *ctx, uint16_t *c, const float *a, const float *b,
		    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b)
{
	struct matmul_shape s = matmul_shape_dense(m, n, k, trans_a, trans_b, false);

	s.c_bf16 = true;
	matmul_run_to_bf16(ctx, matmul_plan_get(ctx, &s), c, a, b);
}
