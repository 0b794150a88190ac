/*
 * bench_pingpong: the point-to-point latency and bandwidth between ranks 0 and 1,
 * the two rates bench/project_scaling.py needs to describe a network. Run it with
 * the two ranks where the link to measure is (two nodes: one rank on each).
 *
 *   mpirun -n 2 retnet-bench-pingpong [--rounds R] [--bytes N]
 *
 * Latency: half the round trip of an 8-byte message, the median over R rounds of
 * 1000 round trips each. Bandwidth: N bytes (default 16 MiB) sent 0 -> 1 and back,
 * bytes / half the round trip, the median over R rounds of 10 round trips. One
 * warm-up round of each first (connections are made on first use).
 * Prints a table and one JSON line.
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

/* Seconds for one half round trip of `bytes`, the mean over `trips` round trips. */
static double half_round_trip(char *buf, int bytes, int trips, int rank)
{
	double t0;

	CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
	t0 = MPI_Wtime();
	for (int i = 0; i < trips; i++) {
		if (rank == 0) {
			CHECK_MPI(MPI_Send(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD));
			CHECK_MPI(MPI_Recv(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD,
					   MPI_STATUS_IGNORE));
		} else if (rank == 1) {
			CHECK_MPI(MPI_Recv(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD,
					   MPI_STATUS_IGNORE));
			CHECK_MPI(MPI_Send(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD));
		}
	}
	return (MPI_Wtime() - t0) / (2.0 * trips);
}

struct settings {
	int64_t rounds, bytes;
};

static const struct flag_row rows[] = {
	{"rounds", FLAG_INT, offsetof(struct settings, rounds), 0, 1, 1000, NULL, "7",
	 "rounds of each measurement; the figures are their medians"},
	{"bytes", FLAG_INT, offsetof(struct settings, bytes), 0, 1, 1 << 30, NULL, "16777216",
	 "message size of the bandwidth measurement"},
};

int main(int argc, char **argv)
{
	struct settings set;
	int rounds, bytes, rank, size, len;
	double *lat, *bw;
	char host[2][MPI_MAX_PROCESSOR_NAME] = {{0}}, err[512];
	char *buf;

	mpi_setup_init(&argc, &argv);
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	mpi_setup_parse_flags(rows, sizeof(rows) / sizeof(rows[0]), &set, argc, argv);
	rounds = (int)set.rounds;
	bytes = (int)set.bytes;
	snprintf(err, sizeof(err), "needs exactly 2 ranks (mpirun -n 2), has %d", size);
	mpi_setup_agree_or_exit(size == 2, err);
	CHECK_MPI(MPI_Get_processor_name(host[rank], &len));
	CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, host, MPI_MAX_PROCESSOR_NAME,
				MPI_CHAR, MPI_COMM_WORLD));
	buf = xcalloc((size_t)bytes, 1);
	lat = xmalloc(sizeof(*lat) * (size_t)rounds);
	bw = xmalloc(sizeof(*bw) * (size_t)rounds);
	half_round_trip(buf, 8, 100, rank);
	half_round_trip(buf, bytes, 2, rank);
	for (int r = 0; r < rounds; r++) {
		lat[r] = half_round_trip(buf, 8, 1000, rank);
		bw[r] = bytes / half_round_trip(buf, bytes, 10, rank);
	}
	if (rank == 0) {
		double l = stats_median(lat, rounds), b = stats_median(bw, rounds);

		printf("ranks on %s and %s, median of %d rounds\n", host[0], host[1], rounds);
		printf("latency (8 B, half round trip)   %8.2f us\n", 1e6 * l);
		printf("bandwidth (%d B messages)  %8.3f GB/s\n", bytes, b / 1e9);
		printf("{\"host0\": \"%s\", \"host1\": \"%s\", \"rounds\": %d, \"latency_us\": %.3f, "
		       "\"bandwidth_gbs\": %.4f, \"bytes\": %d}\n",
		       host[0], host[1], rounds, 1e6 * l, b / 1e9, bytes);
	}
	free(buf);
	free(lat);
	free(bw);
	mpi_setup_finalize();
	return 0;
}
