/*
 * layout: which part of a named tensor a rank holds. A slice is a rectangle of the
 * global (rows, cols) tensor: the whole of it, a range of its rows or of its columns
 * (layout_slice_init), or a range of rows of such a block (layout_slice_rows: a
 * data-parallel shard of a tensor-parallel column slice). From it follow the local
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
	int64_t start[2];           /* the block's first (row, col) in the global tensor */
	int64_t shape[2];           /* the local shape: rows start[0] .. + shape[0] - 1 */
};

/* Fills s: all of the tensor (split_dim -1), or the range [split_start, + split_len)
 * of its rows (0) or columns (1). Returns 0, or -1 when the arguments do not
 * describe a slice. */
int layout_slice_init(struct layout_slice *s, const char *name, int ndim, int64_t rows,
		      int64_t cols, int split_dim, int64_t split_start, int64_t split_len);
/* dst = rows [first, first + count) of src's LOCAL block (elements for a 1-D tensor),
 * as a slice of the same global tensor. dst may be src. Returns 0, or -1 (dst
 * untouched) when the range is empty or not inside the block. */
int layout_slice_rows(struct layout_slice *dst, const struct layout_slice *src, int64_t first,
		      int64_t count);
size_t layout_slice_numel(const struct layout_slice *s);
/* The slice's place in the global (rows, cols) tensor. */
void layout_slice_hyperslab(const struct layout_slice *s, uint64_t start[2], uint64_t count[2]);
/* The range [start, start+len) of n items that part `index` of `parts` holds
 * (as even as possible, the first n % parts parts one larger). */
void layout_even_range(int64_t n, int parts, int index, int64_t *start, int64_t *len);

#endif
