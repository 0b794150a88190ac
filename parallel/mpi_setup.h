/*
 * mpi_setup: MPI start-up and shut-down for every retnet program.
 *
 * Initialises MPI asking for MPI_THREAD_MULTIPLE (needing at least FUNNELED: the
 * main thread makes the MPI calls, and with MULTIPLE a second thread may too: a
 * checkpoint writer, or a watchdog ending a job stuck in a collective), sets
 * MPI_ERRORS_RETURN on the world so CHECK_MPI sees the codes, tells the log which rank
 * this is, and installs a fatal hook that calls MPI_Abort so one failing rank ends the
 * whole job. Under srun, checks that the step's tasks formed one MPI world (a
 * mismatch is a user error: srun's --mpi plugin does not fit this MPI), and warns
 * before MPI_Init when a PMIx step across nodes runs on SLURM's default fence (see
 * mpi_setup.c). Ignores SIGXFSZ, so that a write past the file-size limit is an
 * EFBIG error naming the file rather than a rank killed without a word.
 * mpi_setup_user_error_exit() is the clean way out of a user error that all ranks
 * have agreed on (no MPI_Abort banner). Knows nothing of RetNet.
 */
#ifndef RN_MPI_SETUP_H
#define RN_MPI_SETUP_H

#include <stdbool.h>
#include <stddef.h>

void mpi_setup_init(int *argc, char ***argv);
/* Did MPI grant MPI_THREAD_MULTIPLE (several threads may call MPI at once)? */
bool mpi_setup_threads_multiple(void);
void mpi_setup_finalize(void);
/* Finalize and exit(2): every rank must call it (after comm_agree said "not ok"). */
_Noreturn void mpi_setup_user_error_exit(void);
/*
 * A user error checked on every rank: when any rank's ok is false, the lowest such
 * rank prints its err as one line "retnet: error: ..." and every rank exits with
 * status 2. collective: all ranks of MPI_COMM_WORLD
 */
void mpi_setup_agree_or_exit(bool ok, const char *err);
/*
 * A small MPI tool's flags (common/flags): every rank parses them; a bad one is an
 * agreed user error (above), and --help prints the rows on rank 0 and ends every rank
 * with status 0. collective: all ranks of MPI_COMM_WORLD
 */
struct flag_row;
void mpi_setup_parse_flags(const struct flag_row *rows, size_t count, void *dst, int argc,
			   char **argv);

#endif
