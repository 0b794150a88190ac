#define _DEFAULT_SOURCE /* madvise */
#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Buffers of this size and more start on a huge-page boundary and ask the kernel
 * for transparent huge pages: a training step streams through activations of
 * hundreds of MiB, and on 4 KiB pages bench-small's step is 3% slower. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)
#define HUGE_PAGE_MIN_BYTES (4 * HUGE_PAGE_BYTES)

void *xaligned_alloc(size_t bytes)
{
	size_t align = bytes >= HUGE_PAGE_MIN_BYTES ? HUGE_PAGE_BYTES : 64;
	size_t rounded = (bytes + align - 1) & ~(align - 1);
	void *p;

	if (rounded < bytes)
		FATAL("allocation size %zu overflows", bytes);
	p = aligned_alloc(align, rounded ? rounded : align);
#ifdef MADV_HUGEPAGE
	/* only advice: a kernel without transparent huge pages says no, and the
	 * buffer works the same on small pages */
	if (p && align == HUGE_PAGE_BYTES)
		(void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
	if (!p)
		FATAL("out of memory allocating %zu aligned bytes", bytes);
	memset(p, 0, rounded ? rounded : align);
	return p;
}

/* The bytes of a mapping of `bytes`: whole pages, whole huge pages from
 * HUGE_PAGE_MIN_BYTES on. */
static size_t mapped_length(size_t bytes)
{
	size_t align = bytes >= HUGE_PAGE_MIN_BYTES ? HUGE_PAGE_BYTES : (size_t)4096;
	size_t rounded = (bytes + align - 1) & ~(align - 1);

	if (rounded < bytes)
		FATAL("allocation size %zu overflows", bytes);
	return rounded ? rounded : align;
}

void *xmapped_alloc(size_t bytes)
{
	const size_t length = mapped_length(bytes);
	/* a huge-page boundary: map one huge page more and unmap what lies before and
	 * after the aligned range */
	const size_t slack = length >= HUGE_PAGE_MIN_BYTES ? HUGE_PAGE_BYTES : 0;
	uint8_t *base = mmap(NULL, length + slack, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;

	if (base == MAP_FAILED)
		FATAL("out of memory mapping %zu bytes", bytes);
	p = base;
	if (slack) {
		size_t head = (HUGE_PAGE_BYTES - (uintptr_t)base % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;

		p = base + head;
		if (head)
			CHECK_SYS(munmap(base, head));
		if (slack - head)
			CHECK_SYS(munmap(p + length, slack - head));
#ifdef MADV_HUGEPAGE
		/* only advice, as in xaligned_alloc */
		(void)madvise(p, length, MADV_HUGEPAGE);
#endif
	}
	return p;
}

void xmapped_free(void *p, size_t bytes)
{
	if (p)
		CHECK_SYS(munmap(p, mapped_length(bytes)));
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
