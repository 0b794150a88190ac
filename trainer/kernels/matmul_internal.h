/*
 * matmul_internal: the definitions behind the opaque plan and context of matmul.h,
 * shared by its two files and nothing else: matmul.c (contexts, plans, running and
 * holding operands) and matmul_tune.c (timing oneDNN's implementations of a plan and
 * re-making it with the fastest).
 */
#ifndef RN_MATMUL_INTERNAL_H
#define RN_MATMUL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "trainer/kernels/matmul.h"

/* MEM_B is what the primitive reads: B itself, or its reordered copy, in which case
 * MEM_B_GIVEN is B as the caller stores it (the reorder's source). */
enum { MEM_A, MEM_B, MEM_C, MEM_SCRATCH, MEM_B_GIVEN, MEM_COUNT };

struct matmul_plan {
	struct matmul_shape shape;
	bool bf16;            /* bf16 x bf16 -> f32 on packed copies of A and B */
	int64_t a_elems;      /* bf16 plans: packed A, batch * M * K */
	int64_t b_elems;      /* bf16 plans: packed B, batch * K * N */
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	/* B reordered into the layout pd asks for before each run; NULL: pd reads B as
	 * the caller stores it (packed, for bf16) */
	dnnl_primitive_desc_t reorder_pd;
	dnnl_primitive_t reorder;
	dnnl_memory_desc_t scratch_md;
	size_t scratch_bytes;
	dnnl_memory_t *mem; /* [nthreads][MEM_COUNT] */
	char impl[MATMUL_IMPL_NAME];
	struct matmul_tuning tuning;
};

struct kernels_ctx {
	dnnl_engine_t engine;
	int nthreads;
	dnnl_stream_t *streams; /* [nthreads] */
	void **scratch;         /* [nthreads], scratch_bytes each */
	size_t scratch_bytes;
	void **b_reordered;     /* [nthreads], b_reordered_bytes each */
	size_t b_reordered_bytes;
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

/* oneDNN's implementation name of pd ("brg:avx512_core"). */
const char *matmul_impl_name(const_dnnl_primitive_desc_t pd);
/* Makes p's primitives from p->pd and p->reorder_pd, its name, and each thread's
 * memory objects of the scratchpad and of the B the primitive reads. */
void matmul_attach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p);
/* Runs one product on stream and waits for it: first, when reorder is not NULL, B
 * from b_given into b_read (b_given is not read otherwise: b_read is B); then prim
 * on a, b_read, c and its scratchpad. */
void matmul_execute_on(dnnl_stream_t stream, dnnl_primitive_t prim, dnnl_primitive_t reorder,
		       dnnl_memory_t a, dnnl_memory_t b_given, dnnl_memory_t b_read,
		       dnnl_memory_t c, dnnl_memory_t scratch);
/* Destroys what matmul_attach_primitive made, with p->pd and p->reorder_pd. */
void matmul_detach_primitive(struct kernels_ctx *ctx, struct matmul_plan *p);
/* The fields that make two shapes one plan, in a fixed order: the plan cache compares
 * them, and the tuning hashes them to check that every rank tunes the same plans. */
enum { MATMUL_SHAPE_KEY = 14 };
void matmul_shape_key(const struct matmul_shape *s, int64_t key[MATMUL_SHAPE_KEY]);

#endif
