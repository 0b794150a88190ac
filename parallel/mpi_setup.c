#include "parallel/mpi_setup.h"

#include <mpi.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/flags.h"
#include "common/log.h"

/*
 * Under srun the tasks of the step are the ranks of one MPI world. A world smaller
 * than the step means srun started them without the PMI their MPI expects: each
 * task an MPI job of its own (a world of 1), or several worlds. mpirun inside an
 * allocation is told apart by what Open MPI's launcher gives every rank it starts
 * (OMPI_COMM_WORLD_SIZE, read before MPI_Init): there the step is mpirun's daemons,
 * one per node, and the allocation's task count may differ from the world asked for.
 * Every task exits 2; the step's task 0 says why (in a world of 1 every task is rank 0).
 */
static void check_slurm_step(bool by_mpirun, int world)
{
	const char *step_tasks = getenv("SLURM_STEP_NUM_TASKS"), *task = getenv("SLURM_PROCID");
	long n;

	if (!step_tasks || by_mpirun)
		return;
	n = strtol(step_tasks, NULL, 10);
	if (n <= 0 || n == world)
		return;
	if (task && strtol(task, NULL, 10) == 0)
		log_error("srun started %ld tasks (SLURM_STEP_NUM_TASKS) but MPI_COMM_WORLD has %d "
			  "rank%s: the tasks did not wire up into one MPI job; srun's --mpi plugin "
			  "must be one this MPI was built for (Open MPI: --mpi=pmix; `srun "
			  "--mpi=list` lists them)", n, world, world == 1 ? "" : "s");
	mpi_setup_user_error_exit();
}

/*
 * srun --mpi=pmix across nodes: SLURM 22.05's PMIx plugin runs fences without data,
 * such as the barrier that ends MPI_Init, along a tree that it does not build when
 * TreeWidth exceeds the step's nodes, so each node passes that barrier alone, and
 * Open MPI 4.1 can crash the ranks of a node still inside MPI_Init when another
 * node's ranks send to them. SLURM_PMIX_FENCE=ring (what the jobs/ scripts set)
 * spans the nodes. A site's mpi.conf may set the same (PMIxCollFence), which a task
 * cannot see: hence a warning, not an error. The step's task 0 says it before
 * MPI_Init, so it is in the log if MPI_Init crashes. PMIX_RANK tells a task that a
 * PMIx server started it; under mpirun that server is mpirun's own.
 */
static void warn_pmix_fence(bool by_mpirun)
{
	const char *nodes = getenv("SLURM_STEP_NUM_NODES"), *task = getenv("SLURM_PROCID");
	long n = nodes ? strtol(nodes, NULL, 10) : 0;

	if (by_mpirun || n < 2 || !getenv("PMIX_RANK") || getenv("SLURM_PMIX_FENCE") ||
	    !task || strtol(task, NULL, 10) != 0)
		return;
	log_warn("srun started this step on %ld nodes through PMIx and SLURM_PMIX_FENCE is not "
		 "set: SLURM 22.05's default fence lets a node leave MPI_Init before the others, "
		 "which can crash Open MPI 4.1 there; export SLURM_PMIX_FENCE=ring before srun "
		 "(the jobs/ scripts do), unless the site's mpi.conf sets PMIxCollFence=ring", n);
}

static void abort_job(int code)
{
	MPI_Abort(MPI_COMM_WORLD, code);
}

static int thread_level = MPI_THREAD_SINGLE;

void mpi_setup_init(int *argc, char ***argv)
{
	const bool by_mpirun = getenv("OMPI_COMM_WORLD_SIZE") != NULL;
	int provided, rank, size;

	/* MULTIPLE: a checkpoint writer thread makes MPI calls beside the main thread's,
	 * and the trainer's watchdog may call MPI_Abort while the main thread is blocked
	 * in a collective. */
	warn_pmix_fence(by_mpirun);
	CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
	thread_level = provided;
	fatal_set_hook(abort_job);
	CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	log_set_rank(rank, size);
	check_slurm_step(by_mpirun, size);
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

void mpi_setup_parse_flags(const struct flag_row *rows, size_t count, void *dst, int argc,
			   char **argv)
{
	bool *given = xcalloc(count, sizeof(*given));
	const struct flag_parse p = {.rows = rows, .count = count, .given = given};
	char err[512];
	int rc = flags_parse(&p, dst, argc, argv, err, sizeof(err)), rank;

	free(given);
	mpi_setup_agree_or_exit(rc >= 0, err);
	if (rc == 0)
		return;
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	if (rank == 0)
		flags_print_help(&p);
	mpi_setup_finalize();
	exit(0);
}
