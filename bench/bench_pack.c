/*
 * bench_pack: the bf16 copies retention makes of a chunk's operands when they are not
 * in cache. Under --bf16 each (batch, head) pair's thread packs, chunk after chunk,
 * the 128 x 128 block of a head out of Q, K, V and dO: rows of 512 bytes whose
 * stride is the width of all heads (2 KiB at bench-small's 4 heads), read cold,
 * since the chunk's products between two packs move megabytes through the caches.
 *
 *   OMP_NUM_THREADS=T retnet-bench-pack [--rounds R] [--heads H]
 *
 * Four (batch * 2048) x (H * 128) float32 tensors (batch 4); every thread takes its
 * share of the pairs and, before each chunk, reads 2 MiB of its own (the stand-in
 * for the chunk's products) and then packs the chunk's four blocks. Timed: the packs
 * only, in thread time, per block, for
 *   bf16_pack   the kernel the trainer runs;
 *   plain rows  a loop of bf16_from_f32 over the block's rows (the same conversion,
 *               no prefetch), the access pattern without it;
 *   in cache    bf16_pack of a block just packed (the conversion alone).
 * Prints the medians over R rounds (default 7, the three kinds in turn within each
 * round) and one JSON line.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/flags.h"
#include "common/stats.h"
#include "trainer/kernels/bf16.h"

enum { BATCH = 4, SEQ = 2048, CHUNK = 128, DHEAD = 128, TENSORS = 4 };
enum { EVICT_FLOATS = 1 << 19 }; /* 2 MiB per thread */
enum kind { BF16_PACK, PLAIN_ROWS, IN_CACHE, KINDS };

static const char *const kind_name[KINDS] = {"bf16_pack", "plain rows", "in cache"};

struct settings {
	int64_t rounds, heads;
};

static const struct flag_row rows[] = {
	{"rounds", FLAG_INT, offsetof(struct settings, rounds), 0, 1, 1000, NULL, "7",
	 "rounds; the figures are their medians"},
	{"heads", FLAG_INT, offsetof(struct settings, heads), 0, 1, 64, NULL, "4",
	 "heads: the row stride is heads x 128 floats"},
};

static void pack_plain(uint16_t *dst, const float *src, int64_t ld)
{
	for (int64_t r = 0; r < CHUNK; r++)
		bf16_from_f32(dst + r * DHEAD, src + r * ld, DHEAD);
}

/* One round of one kind: microseconds of thread time per block, summed over the
 * threads and divided by the blocks. */
static double pack_round(float *const *tensors, float *evict, int64_t heads, enum kind kind)
{
	const int64_t ld = heads * DHEAD, pairs = BATCH * heads, chunks = SEQ / CHUNK;
	double seconds = 0.0;

#pragma omp parallel reduction(+ : seconds)
	{
		uint16_t *dst = xaligned_alloc(sizeof(uint16_t) * CHUNK * DHEAD);
		const float *mine = evict + (int64_t)omp_get_thread_num() * EVICT_FLOATS;
		volatile float sink = 0.0f;

#pragma omp for schedule(static)
		for (int64_t pair = 0; pair < pairs; pair++) {
			const int64_t b = pair / heads, h = pair % heads;

			for (int64_t c = 0; c < chunks; c++) {
				float sum = 0.0f;
				double t0;

				for (int64_t i = 0; i < EVICT_FLOATS; i += 16)
					sum += mine[i];
				sink = sum;
				for (int t = 0; t < TENSORS; t++) {
					const float *block =
						tensors[t] + (b * SEQ + c * CHUNK) * ld + h * DHEAD;

					if (kind == IN_CACHE)
						bf16_pack(dst, block, 1, 0, CHUNK, DHEAD, ld);
					t0 = omp_get_wtime();
					if (kind == PLAIN_ROWS)
						pack_plain(dst, block, ld);
					else
						bf16_pack(dst, block, 1, 0, CHUNK, DHEAD, ld);
					seconds += omp_get_wtime() - t0;
				}
			}
		}
		(void)sink;
		free(dst);
	}
	return 1e6 * seconds / (double)(pairs * chunks * TENSORS);
}

int main(int argc, char **argv)
{
	bool given[sizeof(rows) / sizeof(rows[0])];
	struct flag_parse fp = {
		.rows = rows, .count = sizeof(rows) / sizeof(rows[0]), .given = given};
	struct settings set;
	char err[512];
	int rc = flags_parse(&fp, &set, argc, argv, err, sizeof(err));
	float *tensors[TENSORS], *evict;
	double *us[KINDS], med[KINDS];
	int64_t n;

	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "retnet-bench-pack: %s\n", err);
		else
			flags_print_help(&fp);
		return rc < 0 ? 2 : 0;
	}
	n = BATCH * SEQ * set.heads * DHEAD;
	for (int t = 0; t < TENSORS; t++) {
		tensors[t] = xaligned_alloc(sizeof(float) * (size_t)n);
		for (int64_t i = 0; i < n; i++)
			tensors[t][i] = (float)(i % 1000) * 1e-3f;
	}
	evict = xaligned_alloc(sizeof(float) * EVICT_FLOATS * (size_t)omp_get_max_threads());
	for (int64_t i = 0; i < EVICT_FLOATS * (int64_t)omp_get_max_threads(); i++)
		evict[i] = 1.0f;
	for (int k = 0; k < KINDS; k++)
		us[k] = xmalloc(sizeof(double) * (size_t)set.rounds);
	for (int k = 0; k < KINDS; k++) /* warm-up: first touch of dst and the code */
		pack_round(tensors, evict, set.heads, k);
	for (int64_t r = 0; r < set.rounds; r++)
		for (int k = 0; k < KINDS; k++)
			us[k][r] = pack_round(tensors, evict, set.heads, k);

	printf("%d threads, %lld heads (row stride %lld bytes), blocks of %d x %d, "
	       "medians of %lld rounds\n",
	       omp_get_max_threads(), (long long)set.heads, (long long)(set.heads * DHEAD * 4),
	       CHUNK, DHEAD, (long long)set.rounds);
	for (int k = 0; k < KINDS; k++) {
		med[k] = stats_median(us[k], (int)set.rounds);
		printf("%-11s %7.2f us per block (%.2f GB/s of float32 read per thread)\n",
		       kind_name[k], med[k], 4.0 * CHUNK * DHEAD / (med[k] * 1e3));
	}
	printf("{\"bench\":\"pack\",\"threads\":%d,\"heads\":%lld,\"rounds\":%lld,"
	       "\"bf16_pack_us\":%.3f,\"plain_rows_us\":%.3f,\"in_cache_us\":%.3f}\n",
	       omp_get_max_threads(), (long long)set.heads, (long long)set.rounds, med[BF16_PACK],
	       med[PLAIN_ROWS], med[IN_CACHE]);
	for (int k = 0; k < KINDS; k++)
		free(us[k]);
	for (int t = 0; t < TENSORS; t++)
		free(tensors[t]);
	free(evict);
	return 0;
}
