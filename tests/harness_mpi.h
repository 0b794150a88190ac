/*
 * harness_mpi: the end of a test run under mpiexec (tests/harness.h inside MPI).
 * Every rank has printed its own failures; test_finish_mpi() sums the failures over
 * the world, finalizes MPI, and rank 0 prints "N passed, N failed". The exit status
 * of every rank is non-zero when any rank failed.
 */
#ifndef RN_HARNESS_MPI_H
#define RN_HARNESS_MPI_H

#include <mpi.h>

#include "tests/harness.h"

static inline int test_finish_mpi(void)
{
	int rank, counts[2] = {test_passed_count, test_failed_count};

	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	MPI_Finalize();
	if (rank != 0)
		return counts[1] ? 1 : 0;
	test_passed_count = counts[0];
	test_failed_count = counts[1];
	return test_finish();
}

#endif
