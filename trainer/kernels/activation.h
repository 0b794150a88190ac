/*
 * activation: the elementwise parts of the block: gelu (the tanh approximation,
 * used everywhere in this project), bias add and residual add, forward and
 * backward, float32 with OpenMP. Knows nothing of MPI. (Retention's swish gate runs
 * with the GroupNorm it reads, in norm.h.)
 *
 *   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *
 * The kernels whose output a bf16 matmul reads next can also write its bfloat16 copy
 * (an out16 argument: bf16(out) as bf16_from_f32 gives it, written block by block
 * while the block is in cache, so the matmul need not read the float32 output again
 * to convert it); NULL leaves it out. Their float32 output may then be NULL in turn:
 * the copy is written alone, for bf16 products that read nothing else.
 */
#ifndef RN_ACTIVATION_H
#define RN_ACTIVATION_H

#include <stdint.h>

void gelu_forward(float *dst, const float *src, int64_t n);
/* OVERWRITES dsrc = ddst * gelu'(src). dsrc may alias ddst. */
void gelu_backward(float *dsrc, const float *ddst, const float *src, int64_t n);

/* x[r, :] += bias for every row, then x[r, :] += res[r, :] unless res is NULL: one
 * pass, the same bits as the two adds in turn (the FFN's b2 and the residual). */
void bias_add(float *x, const float *bias, const float *res, int64_t rows, int64_t width);
/* ACCUMULATES dbias += column sums of ddst (the same bits whatever the thread count). */
void bias_backward(float *dbias, const float *ddst, int64_t rows, int64_t width);

/* The two in one pass, the same bits as bias_add then gelu_forward: x[r, :] += bias
 * (x is kept: backward reads it), then dst = gelu(x); dst16 = bf16(dst) or NULL. */
void bias_gelu_forward(float *dst, uint16_t *dst16, float *x, const float *bias, int64_t rows,
		       int64_t width);
/* The same bits as gelu_backward then bias_backward on its result, in one pass:
 * OVERWRITES dsrc = ddst * gelu'(src) (dsrc may alias ddst; dsrc16 = bf16(dsrc) or
 * NULL) and ACCUMULATES dbias += column sums of dsrc. */
void gelu_backward_bias(float *dsrc, uint16_t *dsrc16, float *dbias, const float *ddst,
			const float *src, int64_t rows, int64_t width);

/* dst = a + b (dst may alias a or b). */
void vec_add(float *dst, const float *a, const float *b, int64_t n);

#endif
