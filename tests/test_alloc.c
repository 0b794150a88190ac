/*
 * xmapped_alloc: zeroed, on a huge-page boundary from 8 MiB on, and a page takes
 * memory only once written. Memory is read from /proc/self/statm (resident pages);
 * the margins are a quarter of the buffer, far above what anything else in this
 * process moves.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "tests/harness.h"

/* Resident bytes of this process, or -1 where /proc is missing. */
static double resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size, resident;
	int got;

	if (!f)
		return -1.0;
	got = fscanf(f, "%ld %ld", &size, &resident);
	fclose(f);
	return got == 2 ? (double)resident * (double)sysconf(_SC_PAGESIZE) : -1.0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void check_mapped(size_t bytes, bool measure)
{
	const double margin = (double)bytes / 4;
	double r0 = resident_bytes(), r1, r2;
	uint8_t *p = xmapped_alloc(bytes);

	r1 = resident_bytes();
	EXPECT_TRUE(all_zero(p, bytes), "xmapped_alloc(%zu) is not zeroed", bytes);
	if (bytes >= ((size_t)8 << 20))
		EXPECT_TRUE((uintptr_t)p % ((size_t)2 << 20) == 0,
			    "xmapped_alloc(%zu) is not on a 2 MiB boundary", bytes);
	memset(p, 0x5a, bytes);
	r2 = resident_bytes();
	if (measure && r0 >= 0) {
		/* r1 comes before the reads: a kernel may back a read fault with a page of
		 * its own (transparent_hugepage/use_zero_page 0) */
		EXPECT_TRUE(r1 - r0 < margin, "xmapped_alloc(%zu) took %.0f resident bytes unwritten",
			    bytes, r1 - r0);
		EXPECT_TRUE(r2 - r1 > (double)bytes - margin,
			    "writing xmapped_alloc(%zu) took only %.0f resident bytes", bytes, r2 - r1);
	}
	xmapped_free(p, bytes);
}

int main(void)
{
	check_mapped(1, false);
	check_mapped(4097, false);
	check_mapped(((size_t)8 << 20) + 12345, true);
	check_mapped((size_t)64 << 20, true);
	return test_finish();
}
