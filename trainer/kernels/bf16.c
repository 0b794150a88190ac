#include "trainer/kernels/bf16.h"

#include <omp.h>
#include <stdbool.h>
#include <string.h>

#include "trainer/kernels/simd.h"

/* The two array loops are memory-bound with AVX-512 and about 2.5x slower without
 * it: they get an AVX-512 clone (trainer/kernels/simd.h). */

/* Blocks below this many values are converted by one thread (a fork costs more). */
enum { PACK_PARALLEL_MIN = 1 << 15, PACK_BLOCK = 1 << 14, PACK_PREFETCH_ROWS = 4 };

/*
 * Round to nearest even on the bits: adding 0x7fff plus the lowest kept bit carries
 * into the kept half exactly when the dropped half is above one half, or equal to it
 * with an odd kept half. It cannot wrap for a finite value (at most 0xff7fffff +
 * 0x8000), and rounding the largest finite values up lands on 0x7f80, Inf. NaN is
 * the one input that must not round (its payload could carry into the exponent or
 * vanish): keep its top half and set the quiet bit.
 */
static inline uint16_t round_bits(uint32_t u)
{
	uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
	uint32_t quiet_nan = (u >> 16) | 0x40u;

	return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

uint16_t bf16_from_f32_one(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return round_bits(u);
}

float bf16_to_f32_one(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float x;

	memcpy(&x, &u, sizeof(x));
	return x;
}

/* The loops are static: clang gives the dispatcher of an exported clone another
 * symbol than the function's, which other files' calls would not find. */
RN_SIMD_CLONES
static void from_f32_loop(uint16_t *restrict dst, const float *restrict src, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		uint32_t u;

		memcpy(&u, &src[i], sizeof(u));
		dst[i] = round_bits(u);
	}
}

RN_SIMD_CLONES
static void to_f32_loop(float *restrict dst, const uint16_t *restrict src, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)src[i] << 16;

		memcpy(&dst[i], &u, sizeof(u));
	}
}

void bf16_from_f32(uint16_t *dst, const float *src, int64_t n)
{
	from_f32_loop(dst, src, n);
}

void bf16_to_f32(float *dst, const uint16_t *src, int64_t n)
{
	to_f32_loop(dst, src, n);
}

/* Row i of the batch's rows of blocks, as bf16_pack numbers them. */
static const float *pack_source_row(const float *src, int64_t batch_stride, int64_t rows,
				    int64_t ld, int64_t i)
{
	return src + i / rows * batch_stride + i % rows * ld;
}

/* Asks for the cache lines of n bytes at p. */
static void prefetch_bytes(const void *p, size_t n)
{
	for (size_t byte = 0; byte < n; byte += 64)
		__builtin_prefetch((const char *)p + byte);
}

/*
 * Rows [r0, r1) of bf16_pack's batch of blocks. The rows of a strided block lie ld
 * apart, and a block that is not in cache (a retention chunk of a head: 128 rows of
 * 512 bytes, 2 KiB apart) is read at the latency of each row: the hardware prefetcher
 * loses such a stream at every 4 KiB page. Asking for row i + PACK_PREFETCH_ROWS
 * while row i converts keeps several rows in flight (bench/bench_pack.c).
 */
static void pack_rows(uint16_t *dst, const float *src, int64_t batch_stride, int64_t rows,
		      int64_t cols, int64_t ld, int64_t r0, int64_t r1)
{
	for (int64_t i = r0; i < r1; i++) {
		if (i + PACK_PREFETCH_ROWS < r1)
			prefetch_bytes(pack_source_row(src, batch_stride, rows, ld,
						       i + PACK_PREFETCH_ROWS),
				       (size_t)cols * sizeof(float));
		bf16_from_f32(dst + i * cols, pack_source_row(src, batch_stride, rows, ld, i),
			      cols);
	}
}

void bf16_pack(uint16_t *dst, const float *src, int64_t batch, int64_t batch_stride,
	       int64_t rows, int64_t cols, int64_t ld)
{
	const int64_t n = batch * rows * cols, nrows = batch * rows;
	const bool contiguous = ld == cols && (batch == 1 || batch_stride == rows * cols);

	/* A parallel construct whose if clause is false still forms a team of one: with
	 * libgomp about 3 us inside a parallel region, more than converting a retention
	 * chunk (128 x 128) held in cache. Small blocks and the retention kernels'
	 * threads take no construct at all. */
	if (n < PACK_PARALLEL_MIN || omp_in_parallel()) {
		if (contiguous)
			bf16_from_f32(dst, src, n);
		else
			pack_rows(dst, src, batch_stride, rows, cols, ld, 0, nrows);
		return;
	}
	if (contiguous) {
		/* One flat conversion, in blocks over the threads. */
		const int64_t nblk = (n + PACK_BLOCK - 1) / PACK_BLOCK;

#pragma omp parallel for schedule(static)
		for (int64_t b = 0; b < nblk; b++) {
			int64_t i0 = b * PACK_BLOCK;

			bf16_from_f32(dst + i0, src + i0, n - i0 < PACK_BLOCK ? n - i0 : PACK_BLOCK);
		}
		return;
	}
#pragma omp parallel
	{
		const int64_t nthr = omp_get_num_threads(), t = omp_get_thread_num();

		pack_rows(dst, src, batch_stride, rows, cols, ld, nrows * t / nthr,
			  nrows * (t + 1) / nthr);
	}
}

void bf16_copy_rows(uint16_t *dst, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld)
{
	const size_t row_bytes = (size_t)cols * sizeof(uint16_t);

	/* Cold rows at a stride, as pack_rows reads them: the same prefetch ahead. */
	for (int64_t i = 0; i < rows; i++) {
		if (i + PACK_PREFETCH_ROWS < rows)
			prefetch_bytes(src + (i + PACK_PREFETCH_ROWS) * ld, row_bytes);
		memcpy(dst + i * cols, src + i * ld, row_bytes);
	}
}
