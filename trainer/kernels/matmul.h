/*
 * matmul: every matrix product of the model, on oneDNN matmul primitives.
 *
 * A plan is one oneDNN primitive for one fixed shape (sizes, leading dimensions,
 * transposes, batch strides, accumulate or overwrite), created once and cached in the
 * kernels context; a call only points the primitive at the caller's buffers (zero
 * copy) and executes it. Transposed operands are described by strides, never copied.
 * Row-major throughout:
 *
 *     C[b] (+)= op(A[b]) op(B[b])     op(A): M x K, op(B): K x N, C: M x N
 *
 * matmul_run() is safe to call from inside an OpenMP parallel region (each thread has
 * its own stream, memory objects and scratchpad); matmul_plan_get() is not, so get the
 * plans before the region. Knows nothing of MPI or of the model.
 */
#ifndef RN_MATMUL_H
#define RN_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

struct kernels_ctx;
struct matmul_plan;

struct matmul_shape {
	int64_t batch;        /* >= 1 (1: a plain 2-D product) */
	int64_t m, n, k;
	int64_t lda, ldb, ldc; /* row strides of A, B, C as stored (elements) */
	int64_t stride_a, stride_b, stride_c; /* batch strides (elements); unused if batch == 1 */
	bool trans_a;          /* A is stored K x M (op(A) = A^T) */
	bool trans_b;          /* B is stored N x K (op(B) = B^T) */
	bool accumulate;       /* C += product (gradient accumulation) instead of C = */
};

/* One engine, a stream per OpenMP thread, the plan cache and the scratchpads. */
struct kernels_ctx *kernels_ctx_init(void);
void kernels_ctx_free(struct kernels_ctx *ctx);

/* A dense shape with natural leading dimensions (lda = K or M, ldb = N or K, ldc = N). */
struct matmul_shape matmul_shape_dense(int64_t m, int64_t n, int64_t k, bool trans_a,
				       bool trans_b, bool accumulate);

/* The cached plan for a shape, created on first use. Not inside a parallel region. */
const struct matmul_plan *matmul_plan_get(struct kernels_ctx *ctx,
					  const struct matmul_shape *shape);
/* oneDNN's implementation name for the plan (e.g. "brg:avx512_core"). */
const char *matmul_plan_impl(const struct matmul_plan *plan);
int matmul_plan_count(const struct kernels_ctx *ctx);

/* c (+)= op(a) op(b) with the plan's shape. */
void matmul_run(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		const float *a, const float *b);

/* Shorthand: get the plan for a dense shape and run it. Not inside a parallel region. */
void matmul(struct kernels_ctx *ctx, float *c, const float *a, const float *b, int64_t m,
	    int64_t n, int64_t k, bool trans_a, bool trans_b, bool accumulate);

#endif
