/* float64 plain-C reference for softmax cross-entropy. Tests only. */
#ifndef RN_XENT_REF_H
#define RN_XENT_REF_H

#include <stdint.h>

/* losses[r] = logsumexp(logits[r]) - logits[r, targets[r]] */
void ref_xent_forward(double *losses, const double *logits, const int32_t *targets,
		      int64_t rows, int64_t vocab);
/* OVERWRITES dlogits = (softmax(logits) - onehot(targets)) * dloss. */
void ref_xent_backward(double *dlogits, const double *logits, const int32_t *targets,
		       double dloss, int64_t rows, int64_t vocab);

#endif
