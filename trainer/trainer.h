/*
 * trainer: retnet-train's run, in the phases its main() names.
 *
 *   trainer_create   token shards (a disjoint deterministic window stream per
 *                    data-parallel rank), the model made from the seed (the same
 *                    on every layout), AdamW, the pipeline step, the guards, the
 *                    metrics file and the matmul ceiling MFU is measured against
 *   trainer_resume   --load: the latest checkpoint's model, moments, data position
 *                    and iteration, whatever layout wrote it
 *   trainer_run      micro-batches -> gradient buckets reduced during backward ->
 *                    clip -> AdamW; a log line and a JSON metrics line per log
 *                    interval, held-out estimates, checkpoints; stops early with a
 *                    checkpoint on SIGUSR1/SIGTERM or --exit-duration-in-mins
 *   trainer_report   held-out loss and bits per byte, peak memory
 *
 * Every phase is collective over the whole grid. A user error (a bad shard, a
 * checkpoint of another model, a full disk) is one line and exit status 2 on every
 * rank; a failure mid-run ends the job (MPI_Abort).
 */
#ifndef RN_TRAINER_H
#define RN_TRAINER_H

#include <stdint.h>

struct launch;
struct trainer;
struct tokenizer;

/*
 * Exit statuses besides 0 (done) and 2 (a user error, agreed by every rank), each
 * of which asks the job script to requeue the job:
 *   3  stopped early (signal, --exit-duration-in-mins) with a checkpoint newer than
 *      the one it started from
 *   4  stopped before its first step (a signal or the deadline during start-up):
 *      nothing new to save, the latest checkpoint is the one it started from
 *   5  the watchdog ended the job: no progress for --distributed-timeout-minutes
 *      (MPI_Abort from every rank that saw it; see trainer/watchdog.h)
 */
#define TRAINER_EXIT_REQUEUE 3
#define TRAINER_EXIT_NO_STEP 4
#define TRAINER_EXIT_STALLED 5

/* SIGUSR1 and SIGTERM ask for a stop at the next iteration; install them first
 * thing, so that a signal during start-up is acted on instead of killing the rank.
 * Also starts the clock of --exit-duration-in-mins: start-up and resume count. */
void trainer_install_stop_signals(void);

struct trainer *trainer_create(struct launch *l);
/* The iteration to continue from (0 without --load or with an empty directory). */
int64_t trainer_resume(struct trainer *t);
/* Iterations start..--train-iters; 0, or TRAINER_EXIT_REQUEUE / _NO_STEP when stopped
 * early. */
int trainer_run(struct trainer *t, int64_t start);
void trainer_report(struct trainer *t);
void trainer_destroy(struct trainer *t);

#endif
