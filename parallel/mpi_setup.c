#include "parallel/mpi_setup.h"

#include <mpi.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"

static void abort_job(int code)
{
	MPI_Abort(MPI_COMM_WORLD, code);
}

static int thread_level = MPI_THREAD_SINGLE;

void mpi_setup_init(int *argc, char ***argv)
{
	int provided, rank, size;

	/* MULTIPLE: a checkpoint writer thread makes MPI calls beside the main thread's */
	CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
	thread_level = provided;
	fatal_set_hook(abort_job);
	CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	log_set_rank(rank, size);
	/* A write past the file-size limit (ulimit -f) fails with EFBIG, reported with
	 * the file's name, instead of killing the rank with SIGXFSZ. */
	if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
		FATAL("signal(SIGXFSZ, SIG_IGN): %s", strerror(errno));
	if (provided < MPI_THREAD_FUNNELED)
		FATAL("MPI provides thread level %d, retnet needs MPI_THREAD_FUNNELED", provided);
}

bool mpi_setup_threads_multiple(void)
{
	return thread_level >= MPI_THREAD_MULTIPLE;
}

void mpi_setup_finalize(void)
{
	CHECK_MPI(MPI_Finalize());
}

void mpi_setup_user_error_exit(void)
{
	MPI_Finalize();
	exit(2);
}

void mpi_setup_agree_or_exit(bool ok, const char *err)
{
	int rank, first = ok ? INT_MAX : 0;

	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	if (!ok)
		first = rank;
	/* collective: all ranks of MPI_COMM_WORLD */
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
	if (first == INT_MAX)
		return;
	if (first == rank)
		log_error("%s", err);
	mpi_setup_user_error_exit();
}
