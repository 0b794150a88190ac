/*
 * The header gives no vocabulary size, so only a negative token can be caught here;
 * the loader checks tokens against the vocabulary when it reads a shard.
 */
#include "trainer/kernels/embedding.h"

#include <string.h>

#include "common/check.h"

/*
 * Columns per block in the backward: one cache line of floats, so no two threads
 * write the same line, and 32 blocks at width 512 to spread over the threads.
 */
#define EMB_COL_BLOCK 16

void embedding_forward(float *dst, const float *table, const int32_t *tokens, int64_t rows,
		       int64_t width)
{
	ENSURE(rows >= 0 && width > 0);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		ENSURE(tokens[r] >= 0);
		memcpy(dst + r * width, table + (int64_t)tokens[r] * width,
		       sizeof(float) * (size_t)width);
	}
}

/*
 * Each thread owns a block of columns and walks every row in order, so each entry of
 * dtable receives its additions in row order whatever the number of threads: the
 * result is bitwise the same run to run, without atomics. Column blocks rather than
 * table rows, because token frequencies are skewed (byte text is full of spaces)
 * while columns split evenly.
 */
void embedding_backward(float *dtable, const float *ddst, const int32_t *tokens,
			int64_t rows, int64_t width)
{
	const int64_t nblocks = (width + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;

	ENSURE(rows >= 0 && width > 0);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblocks; b++) {
		const int64_t c0 = b * EMB_COL_BLOCK;
		const int64_t n = width - c0 < EMB_COL_BLOCK ? width - c0 : EMB_COL_BLOCK;

		for (int64_t r = 0; r < rows; r++) {
			const float *dy = ddst + r * width + c0;
			float *dt;

			ENSURE(tokens[r] >= 0);
			dt = dtable + (int64_t)tokens[r] * width + c0;
			for (int64_t j = 0; j < n; j++)
				dt[j] += dy[j];
		}
	}
}
