/* float64 plain-C reference for the embedding gather and scatter-add. Tests only. */
#ifndef RN_EMBEDDING_REF_H
#define RN_EMBEDDING_REF_H

#include <stdint.h>

/* dst[r, :] = table[tokens[r], :] */
void ref_embedding_forward(double *dst, const double *table, const int32_t *tokens,
			   int64_t rows, int64_t width);
/* ACCUMULATES dtable[tokens[r], :] += ddst[r, :], rows in order. */
void ref_embedding_backward(double *dtable, const double *ddst, const int32_t *tokens,
			    int64_t rows, int64_t width);

#endif
