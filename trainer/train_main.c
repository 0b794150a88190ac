/*
 * retnet-train: trains a RetNet under mpirun, on any tensor x pipeline x data
 * parallel layout (trainer/trainer.h has the phases, trainer/launch.h the start).
 *
 * Test hook: RETNET_CEILING_SIZE=N (>= 16) measures the MFU's matmul ceiling on
 * an N^3 sgemm instead of 1024^3 (trainer/ceiling.h), for runs under valgrind
 * (tests/cli/valgrind.sh).
 */
#include <stdlib.h>

#include "common/alloc.h"
#include "trainer/launch.h"
#include "trainer/trainer.h"
#include "trainer/watchdog.h"

int main(int argc, char **argv)
{
	struct launch *l = xcalloc(1, sizeof(*l));
	struct trainer *t;
	int64_t start;
	int status;

	/* ---- setup: stop signals first, then flags, validation, the grid ------ */
	trainer_install_stop_signals();
	launch_begin(l, SPEC_TRAIN, &argc, &argv);

	/* ---- data, model from the seed, AdamW ------------------------------- */
	t = trainer_create(l);

	/* ---- resume (--load) ------------------------------------------------ */
	start = trainer_resume(t);

	/* ---- train ---------------------------------------------------------- */
	status = trainer_run(t, start);

	/* ---- report: held-out loss and bits per byte ------------------------ */
	if (status == 0)
		trainer_report(t);
	watchdog_finishing("shut-down (communicators freed, MPI_Finalize)");
	trainer_destroy(t);
	launch_end(l);
	watchdog_stop();
	free(l);
	return status;
}
