/*
 * layout: which part of a named tensor a rank holds. A slice is the whole tensor
 * or one contiguous range of its rows or of its columns; from it follow the local
 * shape and the hyperslab (start, count) in the global tensor, which is all a
 * checkpoint needs to write a rank's part or to read another layout's parts.
 * Pure arithmetic: knows nothing of RetNet, MPI or HDF5.
 */
#ifndef RN_LAYOUT_H
#define RN_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define LAYOUT_NAME_MAX 64

struct layout_slice {
	char name[LAYOUT_NAME_MAX]; /* e.g. "layers/3/retention/wq" */
	int ndim;                   /* 1 or 2 */
	int64_t global_shape[2];    /* (rows, cols); cols = 1 when ndim is 1 */
	int split_dim;              /* -1: all of it; 0: a row range; 1: a column range */
	int64_t split_start, split_len; /* the range held along split_dim */
	int64_t shape[2];           /* the local shape */
};

/* Fills s; returns 0, or -1 when the arguments do not describe a slice. */
int layout_slice_init(struct layout_slice *s, const char *name, int ndim, int64_t rows,
		      int64_t cols, int split_dim, int64_t split_start, int64_t split_len);
size_t layout_slice_numel(const struct layout_slice *s);
/* The slice's place in the global (rows, cols) tensor. */
void layout_slice_hyperslab(const struct layout_slice *s, uint64_t start[2], uint64_t count[2]);
/* The range [start, start+len) of n items that part `index` of `parts` holds
 * (as even as possible, the first n % parts parts one larger). */
void layout_even_range(int64_t n, int parts, int index, int64_t *start, int64_t *len);

#endif
