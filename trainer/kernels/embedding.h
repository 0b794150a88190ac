/*
 * embedding: token rows out of the embedding table, and the scatter-add of their
 * gradients back (deterministic: each thread owns a range of columns, so no atomics
 * and the same sums run to run). Knows nothing of MPI.
 */
#ifndef RN_EMBEDDING_H
#define RN_EMBEDDING_H

#include <stdint.h>

/* dst[r, :] = table[tokens[r], :] */
void embedding_forward(float *dst,            /* (rows, width) */
		       const float *table,    /* (vocab, width) */
		       const int32_t *tokens, /* (rows) */
		       int64_t rows, int64_t width);

/* ACCUMULATES dtable[tokens[r], :] += ddst[r, :] */
void embedding_backward(float *dtable, const float *ddst, const int32_t *tokens,
			int64_t rows, int64_t width);

#endif
