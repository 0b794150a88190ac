#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

void *xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p)
		FATAL("out of memory allocating %zu bytes", bytes);
	return p;
}

void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (!p)
		FATAL("out of memory allocating %zu x %zu bytes", count, size);
	return p;
}

void *xaligned_alloc(size_t bytes)
{
	size_t rounded = (bytes + 63) & ~(size_t)63;
	void *p;

	if (rounded < bytes)
		FATAL("allocation size %zu overflows", bytes);
	p = aligned_alloc(64, rounded ? rounded : 64);
	if (!p)
		FATAL("out of memory allocating %zu aligned bytes", bytes);
	memset(p, 0, rounded ? rounded : 64);
	return p;
}

bool size_mul_ok(size_t a, size_t b, size_t *out)
{
	if (a != 0 && b > SIZE_MAX / a)
		return false;
	*out = a * b;
	return true;
}

size_t size_mul_checked(size_t a, size_t b, const char *what)
{
	size_t r;

	if (!size_mul_ok(a, b, &r))
		FATAL("size of %s overflows (%zu x %zu)", what, a, b);
	return r;
}
