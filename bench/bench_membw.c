/*
 * bench_membw: the memory bandwidth each rank gets alone and when every rank streams
 * at once. Ranks that train side by side on a node share its memory bandwidth; a
 * data-parallel step waits for its slowest rank, so an uneven share shows as
 * imbalance between ranks that do the same work. Run it with the ranks placed as
 * training places them:
 *
 *   mpirun -n K [--bind-to core] retnet-bench-membw [--mib N] [--rounds R]
 *
 * Every rank streams c = a + 1.5 b over three arrays of N MiB of its own (default
 * 64, beyond a core's caches), one thread, for rounds of 0.25 s: first each rank
 * alone in turn (the others wait), then all ranks together, each round starting at
 * a barrier. Bytes counted: 12 per element (two reads, one write). Prints each
 * rank's median GB/s over R rounds (default 12) alone and together, the node's sum,
 * the slowest rank's share against the fastest's, and one JSON line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/flags.h"
#include "common/stats.h"
#include "parallel/mpi_setup.h"

#define ROUND_SECONDS 0.25

/* One pass; not inlined, so the compiler cannot merge passes into one. */
static __attribute__((noinline)) void triad(float *restrict c, const float *restrict a,
					    const float *restrict b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		c[i] = a[i] + 1.5f * b[i];
}

/* Bytes per second of passes over the arrays for ROUND_SECONDS. */
static double stream_round(float *c, const float *a, const float *b, size_t n)
{
	double t0 = MPI_Wtime(), dt;
	long passes = 0;

	do {
		triad(c, a, b, n);
		passes++;
		dt = MPI_Wtime() - t0;
	} while (dt < ROUND_SECONDS);
	return 12.0 * (double)n * (double)passes / dt;
}

struct settings {
	int64_t mib, rounds;
};

static const struct flag_row rows[] = {
	{"mib", FLAG_INT, offsetof(struct settings, mib), 0, 1, 65536, NULL, "64",
	 "MiB of each of a rank's three arrays"},
	{"rounds", FLAG_INT, offsetof(struct settings, rounds), 0, 1, 1000, NULL, "12",
	 "rounds alone and together; the figures are their medians"},
};

int main(int argc, char **argv)
{
	struct settings set;
	char *hosts;
	int rounds, mib, rank, size, len;
	double *alone, *together, med[2], *all;
	float *a, *b, *c;
	size_t n;

	mpi_setup_init(&argc, &argv);
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	mpi_setup_parse_flags(rows, sizeof(rows) / sizeof(rows[0]), &set, argc, argv);
	rounds = (int)set.rounds;
	mib = (int)set.mib;
	hosts = xcalloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
	CHECK_MPI(MPI_Get_processor_name(hosts + (size_t)rank * MPI_MAX_PROCESSOR_NAME, &len));
	CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, hosts, MPI_MAX_PROCESSOR_NAME,
				MPI_CHAR, MPI_COMM_WORLD));
	n = (size_t)mib << 18; /* floats in N MiB */
	a = xaligned_alloc(n * sizeof(float));
	b = xaligned_alloc(n * sizeof(float));
	c = xaligned_alloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		a[i] = (float)(i % 7), b[i] = (float)(i % 5);
	alone = xmalloc(sizeof(double) * (size_t)rounds);
	together = xmalloc(sizeof(double) * (size_t)rounds);

	triad(c, a, b, n); /* first touch of c */
	for (int r = 0; r < rounds; r++)
		for (int turn = 0; turn < size; turn++) {
			CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
			if (turn == rank)
				alone[r] = stream_round(c, a, b, n);
		}
	for (int r = 0; r < rounds; r++) {
		CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
		together[r] = stream_round(c, a, b, n);
	}
	med[0] = stats_median(alone, rounds) / 1e9;
	med[1] = stats_median(together, rounds) / 1e9;

	all = xmalloc(sizeof(double) * 2 * (size_t)size);
	CHECK_MPI(MPI_Gather(med, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD));
	if (rank == 0) {
		double sum = 0.0, lo = all[1], hi = all[1];

		printf("%d ranks, %d MiB arrays, medians of %d rounds of %.2f s (GB/s)\n", size,
		       mib, rounds, ROUND_SECONDS);
		printf("rank   alone   together   host\n");
		for (int r = 0; r < size; r++) {
			double t = all[2 * r + 1];

			printf("%4d %7.1f %10.1f   %s\n", r, all[2 * r], t,
			       hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME);
			sum += t;
			lo = t < lo ? t : lo;
			hi = t > hi ? t : hi;
		}
		printf("together: %.1f GB/s summed over the ranks, slowest rank %.3f of the fastest\n",
		       sum, lo / hi);
		printf("{\"ranks\": %d, \"mib\": %d, \"rounds\": %d, \"together_gbs\": %.2f, "
		       "\"slowest_over_fastest\": %.4f, \"alone_gbs\": [",
		       size, mib, rounds, sum, lo / hi);
		for (int r = 0; r < size; r++)
			printf("%s%.2f", r ? ", " : "", all[2 * r]);
		printf("], \"together_each_gbs\": [");
		for (int r = 0; r < size; r++)
			printf("%s%.2f", r ? ", " : "", all[2 * r + 1]);
		printf("]}\n");
	}
	free(all);
	free(hosts);
	free(alone);
	free(together);
	free(a);
	free(b);
	free(c);
	mpi_setup_finalize();
	return 0;
}
