/*
 * alloc: checked allocation. Every allocation that fails ends the job through
 * fatal_at(); sizes computed from numbers read from files or flags go through
 * size_mul_checked() first, so an overflow is an error, never a short buffer.
 * Does not pool or free memory behind the caller's back.
 */
#ifndef RN_ALLOC_H
#define RN_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);
/* Zeroed; free with free(). 64-byte aligned; from 8 MiB on, 2 MiB aligned and
 * advised to use transparent huge pages (madvise; where the kernel has them off,
 * small pages as before). */
void *xaligned_alloc(size_t bytes);
/* Zeroed and aligned as xaligned_alloc gives, but mapped rather than written: a page
 * takes memory only once it is written, so a buffer that a run never writes costs
 * none. Free with xmapped_free(p, bytes). */
void *xmapped_alloc(size_t bytes);
void xmapped_free(void *p, size_t bytes);
/* a*b, or false when it overflows. */
bool size_mul_ok(size_t a, size_t b, size_t *out);
/* a*b, or a fatal error naming `what` when it overflows. */
size_t size_mul_checked(size_t a, size_t b, const char *what);

#endif
