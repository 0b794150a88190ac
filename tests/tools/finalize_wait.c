/*
 * finalize_wait SECONDS NODE: is the barrier inside MPI_Finalize a barrier of the
 * whole world? The ranks on NODE sleep SECONDS before MPI_Finalize; every other
 * rank enters it at once and prints how long it waited there. Under a launcher
 * whose fences span the nodes that is about SECONDS; where a fence completes on
 * each node alone (SLURM 22.05's PMIx tree with fewer nodes than TreeWidth), about
 * nothing. Open MPI ends MPI_Init with a fence of the same kind, so this shows
 * whether a rank can leave MPI_Init while another node is still inside it.
 * No rank sends anything: a message to a node still inside MPI_Init is what
 * crashes it. Prints "rank R node N waited S s" per rank; exit 0 unless MPI fails.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/check.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char node[MPI_MAX_PROCESSOR_NAME] = "";
	int rank, len;
	double sleep_s, t0;

	if (argc != 3 || (sleep_s = atof(argv[1])) <= 0) {
		fprintf(stderr, "usage: finalize_wait SECONDS NODE (SECONDS > 0)\n");
		return 2;
	}
	CHECK_MPI(MPI_Init(&argc, &argv));
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Get_processor_name(node, &len));
	if (strcmp(node, argv[2]) == 0) {
		struct timespec nap = {.tv_sec = (time_t)sleep_s,
				       .tv_nsec = (long)((sleep_s - (double)(time_t)sleep_s) * 1e9)};

		while (nanosleep(&nap, &nap) != 0) {
			/* a signal cut the sleep short: sleep the rest */
		}
	}
	t0 = now_s();
	CHECK_MPI(MPI_Finalize());
	printf("rank %d node %s waited %.2f s\n", rank, node, now_s() - t0);
	return 0;
}
