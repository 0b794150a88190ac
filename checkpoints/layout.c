#include "checkpoints/layout.h"

#include <stdio.h>
#include <string.h>

int layout_slice_init(struct layout_slice *s, const char *name, int ndim, int64_t rows,
		      int64_t cols, int split_dim, int64_t split_start, int64_t split_len)
{
	memset(s, 0, sizeof(*s));
	if ((ndim != 1 && ndim != 2) || strlen(name) >= LAYOUT_NAME_MAX || rows <= 0 ||
	    (ndim == 2 && cols <= 0) || split_dim < -1 || split_dim >= ndim)
		return -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->ndim = ndim;
	s->global_shape[0] = rows;
	s->global_shape[1] = ndim == 2 ? cols : 1;
	s->shape[0] = s->global_shape[0];
	s->shape[1] = s->global_shape[1];
	if (split_dim >= 0) {
		if (split_start < 0 || split_len <= 0 ||
		    split_start > s->global_shape[split_dim] - split_len)
			return -1;
		s->start[split_dim] = split_start;
		s->shape[split_dim] = split_len;
	}
	return 0;
}

int layout_slice_rows(struct layout_slice *dst, const struct layout_slice *src, int64_t first,
		      int64_t count)
{
	struct layout_slice s = *src;

	if (first < 0 || count <= 0 || first > src->shape[0] - count)
		return -1;
	s.start[0] += first;
	s.shape[0] = count;
	*dst = s;
	return 0;
}

size_t layout_slice_numel(const struct layout_slice *s)
{
	return (size_t)s->shape[0] * (size_t)s->shape[1];
}

void layout_slice_hyperslab(const struct layout_slice *s, uint64_t start[2], uint64_t count[2])
{
	start[0] = (uint64_t)s->start[0];
	start[1] = (uint64_t)s->start[1];
	count[0] = (uint64_t)s->shape[0];
	count[1] = (uint64_t)s->shape[1];
}

void layout_even_range(int64_t n, int parts, int index, int64_t *start, int64_t *len)
{
	int64_t base = n / parts, extra = n % parts;

	*start = index * base + (index < extra ? index : extra);
	*len = base + (index < extra ? 1 : 0);
}
