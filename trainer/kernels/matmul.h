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
 *
 * Precision is a setting of the context, not of the call, so callers are the same in
 * both: float32 by default; after kernels_ctx_set_bf16(ctx, true) every plan made
 * from then on is a bfloat16 one. Its matmul_run converts A and B (round to nearest
 * even, trainer/kernels/bf16.h) into dense bf16 copies in a per-thread buffer (grown
 * on first use, then reused; nothing is cached across calls unless the caller holds
 * an operand, below, so the caller may change its operands freely), multiplies them
 * with float32 accumulation, and writes (or with `accumulate` adds to) float32 C
 * exactly as the float32 plan does.
 * Operands, results, parameters and gradients stay float32 in the caller's memory.
 */
#ifndef RN_MATMUL_H
#define RN_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
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
	bool c_bf16;           /* C is written as bf16 (matmul_run_to_bf16): bf16 plans,
				* not accumulate */
};

/* One engine, a stream per OpenMP thread, the plan cache and the scratchpads. */
struct kernels_ctx *kernels_ctx_init(void);
void kernels_ctx_free(struct kernels_ctx *ctx);

/*
 * Turns bfloat16 matmuls on or off for the plans got from now on. 0, or -ENOTSUP
 * with one line in err when oneDNN on this CPU has no native bf16 matmul (it needs
 * AVX512-BF16, ISA avx512_core_bf16: below avx512_core oneDNN has none at all, and
 * on plain avx512_core it emulates bf16 3-4x slower than float32, which defeats the
 * purpose). There is no silent fallback: the caller asked for bf16 and decides.
 */
int kernels_ctx_set_bf16(struct kernels_ctx *ctx, bool on, char *err, size_t errlen);
bool kernels_ctx_bf16(const struct kernels_ctx *ctx);

/*
 * Autotuning. oneDNN picks the first of its implementations that accepts a shape,
 * which is not always the fastest on the machine at hand. A tuned plan times every
 * non-reference implementation on scratch operands of its shape (in turn, median of
 * several rounds) and keeps the fastest; products of fewer than 2^24 multiply-adds
 * are not tuned. The candidates include the implementations that read B in a blocked
 * layout of their own: such a plan reorders B into it before every run, and is timed
 * with that reorder, so it wins only where the blocked product gains more than the
 * reorder costs (a weight, small beside the activations it multiplies). Results are
 * correct either way, but which implementation wins depends on timings, so two runs
 * may round differently: a resumed run is then not bit-identical to an uninterrupted
 * one. Not inside a parallel region.
 *
 * matmul_autotune_plans: the plans made so far and not tuned yet are tuned now,
 * together by the ranks that call it with the same agree: each candidate's median is
 * replaced by its maximum over the ranks (agree->max, an all-reduce the caller
 * provides: this module knows nothing of MPI), so every rank keeps the same
 * implementation, the one whose slowest rank is fastest (ranks that chose apart would
 * wait for each other at every collective). The ranks must have made the same plans
 * in the same order; that is checked first, and if it does not hold nothing is
 * tuned and the result is -1 on every rank. Otherwise the number of plans tuned.
 * agree NULL: this process alone.
 */
struct matmul_agree {
	void (*max)(double *v, int n, void *arg); /* v[i] = max over the ranks, in place */
	void *arg;
};
int matmul_autotune_plans(struct kernels_ctx *ctx, const struct matmul_agree *agree);

/* A dense shape with natural leading dimensions (lda = K or M, ldb = N or K, ldc = N). */
struct matmul_shape matmul_shape_dense(int64_t m, int64_t n, int64_t k, bool trans_a,
				       bool trans_b, bool accumulate);

/* The cached plan for a shape, created on first use. Not inside a parallel region. */
const struct matmul_plan *matmul_plan_get(struct kernels_ctx *ctx,
					  const struct matmul_shape *shape);
/* oneDNN's implementation name for the plan (e.g. "brg:avx512_core"), followed by
 * MATMUL_B_REORDERED when the plan reorders B before each run. */
#define MATMUL_B_REORDERED " (B reordered)"
const char *matmul_plan_impl(const struct matmul_plan *plan);
bool matmul_plan_is_bf16(const struct matmul_plan *plan);
int matmul_plan_count(const struct kernels_ctx *ctx);
/* The i-th plan made, 0 <= i < matmul_plan_count(ctx). */
const struct matmul_plan *matmul_plan_at(const struct kernels_ctx *ctx, int i);

/* What autotuning found for a plan. */
enum { MATMUL_IMPL_NAME = 48 };
struct matmul_tuning {
	int candidates;      /* implementations offered; 0: the plan was not tuned */
	char first_impl[MATMUL_IMPL_NAME]; /* oneDNN's first choice */
	double first_s;      /* its median time (seconds); 0 when it was the only one */
	double chosen_s;     /* the kept one's (its name: matmul_plan_impl) */
};
const struct matmul_tuning *matmul_plan_tuning(const struct matmul_plan *plan);

/* Over the context's tuned plans: how many, how many left oneDNN's first choice, and
 * the sums of their first choices' and kept implementations' median times. */
struct matmul_tuning_totals {
	int tuned, moved;
	double first_s, chosen_s;
};
void matmul_tuning_totals(const struct kernels_ctx *ctx, struct matmul_tuning_totals *out);

/* c (+)= op(a) op(b) with the plan's shape (float32 operands, whatever the plan's
 * precision: a bf16 plan converts them first). */
void matmul_run(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		const float *a, const float *b);

/*
 * A plan whose shape has c_bf16: c = op(a) op(b) accumulated in float32 and written
 * rounded to bf16 by oneDNN (to nearest even, as bf16.h rounds, except that results
 * below 2^-126 in magnitude become zero where bf16.h keeps them denormal), for an
 * output that only bf16 products read. Operands as matmul_run's (held ones too).
 */
void matmul_run_to_bf16(struct kernels_ctx *ctx, const struct matmul_plan *plan, uint16_t *c,
			const float *a, const float *b);

/*
 * matmul_run with bf16 copies the caller made itself of operands that several products
 * read (bf16_pack with the operand's rows, cols and ld: dense in its stored
 * orientation, one matrix). A bf16 plan uses a16 / b16 instead of converting a / b; a
 * NULL one is converted as by matmul_run. A float32 plan reads a and b and ignores
 * them. Thread-safe like matmul_run.
 */
void matmul_run_pre(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		    const float *a, const uint16_t *a16, const float *b, const uint16_t *b16);

/*
 * A bf16 plan on operands the caller has already converted and packed densely in
 * their stored orientation: a is (batch, M, K), or (batch, K, M) when trans_a; b is
 * (batch, K, N), or (batch, N, K) when trans_b (bf16_pack with the shape's lda/ldb
 * makes them). For measuring the bf16 ceiling without the conversion, and for a
 * caller that reuses a converted operand.
 */
void matmul_run_bf16(struct kernels_ctx *ctx, const struct matmul_plan *plan, float *c,
		     const uint16_t *a, const uint16_t *b);

/*
 * Converting once for several matmuls. On a bf16 context, matmul_hold converts the
 * dense float32 block src[0, elems) into hold slot `slot`; until
 * matmul_release(ctx, slot), every matmul_run operand that is exactly that block (the
 * same pointer, one dense matrix of elems values, as A or B, transposed or not) uses
 * the held copy instead of being converted again. The caller must not change src
 * while it is held. On a float32 context nothing is converted (the calls only keep
 * the bookkeeping, so a missing release shows in both precisions): callers are the
 * same in both. Not inside a parallel region.
 */
enum { MATMUL_HOLD_SLOTS = 2 };
void matmul_hold(struct kernels_ctx *ctx, int slot, const float *src, int64_t elems);
void matmul_release(struct kernels_ctx *ctx, int slot);

/*
 * A bf16 copy that outlives its hold, in the caller's buffer: a forward activation
 * that backward reads again (dW = x^T dy) is then converted once per step, not twice.
 * matmul_hold_fresh converts src into kept and holds it in `slot` (src has just been
 * written). matmul_hold_again holds kept's copy if it is the copy of exactly src made
 * by a fresh hold on this bf16 context, and otherwise converts afresh. Between the two
 * the caller must not change src (nothing here can see a change). On a float32
 * context both only keep the bookkeeping and mark kept unconverted. Release with
 * matmul_release as usual; matmul_kept_free frees kept's buffer. Zero-initialised
 * is empty.
 */
struct matmul_kept {
	const float *src;
	int64_t elems;
	bool converted;
	int64_t target_elems; /* matmul_kept_target's, until matmul_hold_written */
	bool sole;            /* the copy was written alone (matmul_sole_target) */
	uint16_t *buf;        /* grow-only */
	size_t cap;
};
void matmul_hold_fresh(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
		       const float *src, int64_t elems);
void matmul_hold_again(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
		       const float *src, int64_t elems);

/*
 * A copy written by the kernel that produces src (norm.h and activation.h take an
 * optional bf16 output), while src's values are still in cache: converting afterwards
 * would read all of src again. matmul_kept_target returns kept's buffer, grown to
 * elems values, for the producer to fill with exactly bf16_from_f32 of the float32
 * values it stores; on a float32 context it returns NULL (the producer writes float32
 * only). matmul_hold_written, once src is written, holds that copy in `slot` and makes
 * it kept's copy of src, as matmul_hold_fresh would have (the same bits); a hold
 * without a target of the same size before it stops the program. The kernels cannot
 * check that the producer wrote every value: that is the caller's contract.
 */
uint16_t *matmul_kept_target(struct kernels_ctx *ctx, struct matmul_kept *kept, int64_t elems);
/*
 * As matmul_kept_target, for a producer that on a bf16 context writes the copy alone
 * and leaves src's float32 values unwritten: every product reads the copy, and
 * writing float32 values that nothing reads would cost a pass over memory. NULL on a
 * float32 context, where the producer writes float32 only. matmul_hold_again stops
 * the program where it would have to convert src afresh.
 */
uint16_t *matmul_sole_target(struct kernels_ctx *ctx, struct matmul_kept *kept, int64_t elems);
void matmul_hold_written(struct kernels_ctx *ctx, int slot, struct matmul_kept *kept,
			 const float *src, int64_t elems);
/* Grows kept's buffer to elems values now rather than at its first fresh hold. */
void matmul_kept_reserve(struct matmul_kept *kept, int64_t elems);
void matmul_kept_free(struct matmul_kept *kept);

/* Shorthand: get the plan for a dense shape and run it. Not inside a parallel region. */
void matmul(struct kernels_ctx *ctx, float *c, const float *a, const float *b, int64_t m,
	    int64_t n, int64_t k, bool trans_a, bool trans_b, bool accumulate);
/* The same for a dense product written as bf16 (matmul_run_to_bf16): bf16 contexts. */
void matmul_to_bf16(struct kernels_ctx *ctx, uint16_t *c, const float *a, const float *b,
		    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b);

#endif
