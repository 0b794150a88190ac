/*
 * xent: softmax cross-entropy over a (replicated) vocabulary, float32, OpenMP over
 * rows; numerically stable (max subtracted, log-sum-exp accumulated in double).
 * Knows nothing of MPI.
 */
#ifndef RN_XENT_H
#define RN_XENT_H

#include <stdint.h>

/* losses[r] = logsumexp(logits[r]) - logits[r, targets[r]] */
void xent_forward(float *losses,         /* (rows) */
		  const float *logits,   /* (rows, vocab) */
		  const int32_t *targets,/* (rows), each in [0, vocab) */
		  int64_t rows, int64_t vocab);

/* OVERWRITES dlogits = (softmax(logits) - onehot(targets)) * dloss, where dloss is
 * the gradient of the objective with respect to each row's loss (1/rows for a mean).
 * dlogits may alias logits. dlogits16: its bfloat16 copy (bf16.h), for bf16 products,
 * or NULL; with a copy dlogits may be NULL, and the copy is written alone. */
void xent_backward(float *dlogits, uint16_t *dlogits16, const float *logits,
		   const int32_t *targets, float dloss, int64_t rows, int64_t vocab);

#endif
