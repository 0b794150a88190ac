/*
 * watchdog: ends a job that has stopped making progress, so that the job script
 * can requeue it instead of the job sitting out its wall time.
 *
 * A rank waiting in a collective for a peer it cannot reach (a network partition, a
 * hung node, a rank stuck in a system call) waits for ever: MPI has no timeout, and
 * a TCP connection whose link is down neither fails nor delivers. The watchdog is a
 * thread on every rank. The main thread names what it is about to wait in with
 * watchdog_phase() (an atomic store of a pointer to a static string, cheap enough
 * for every step) and says when the run has moved on with watchdog_progress() (a
 * step done, a checkpoint written, a held-out batch scored). When no progress is
 * marked for the timeout, the thread prints one line
 *
 *   retnet: error: [rank r] no progress for M minutes: waiting in <phase>; ending
 *   the job (--distributed-timeout-minutes)
 *
 * and calls MPI_Abort with the exit code given to watchdog_start (after
 * MPI_Finalize, or if MPI_Abort itself does not return within 10 s, it _exits with
 * it: the MPI runtime then ends the other ranks). Every rank has its own, so the
 * ranks on both sides of a partition end.
 *
 * It also ends the job, without waiting for the timeout, when a TCP connection of
 * the process has stayed closed by its peer for 3 s (parallel/tcp_peers.h): a rank
 * on another node is gone (its node died), and under srun nothing else would end
 * the ranks left before SLURM declares the node down. The line then reads "the TCP
 * connection from ADDRESS closed (a process there is gone) while waiting in
 * <phase>". Not once the run is over (watchdog_finishing): ranks then leave at
 * their own pace.
 *
 * Does not tell a slow step from a stuck one (a step or a checkpoint save longer
 * than the timeout ends the job: choose the timeout well above both), and does not
 * look inside a phase: a phase is all the main thread says.
 */
#ifndef RN_WATCHDOG_H
#define RN_WATCHDOG_H

/* Starts the thread: minutes without progress before it ends the job with status
 * exit_code; minutes <= 0 starts nothing (every other call is then a no-op). The
 * clock starts now. Call once, from the main thread. */
void watchdog_start(double minutes, int exit_code);
/* Stops and joins the thread (before exit; MPI_Finalize may stay watched). */
void watchdog_stop(void);

/* What the main thread waits in from now on: a static string ("data-parallel
 * gradient reduction"). */
void watchdog_phase(const char *what);
/* The same with two numbers: fmt is a static printf format with at most two %d
 * ("pipeline receive of micro-batch %d from stage %d"), formatted only on timeout. */
void watchdog_phase_at(const char *fmt, int a, int b);
/* The run has moved on: restarts the clock. */
void watchdog_progress(void);
/* The run is over (shut-down, what): still watched, but a SIGTERM is no news. */
void watchdog_finishing(const char *what);

/*
 * From the main thread's signal handler (async-signal-safe): a SIGTERM before the
 * run is over makes the watchdog print "retnet: warning: [rank r] SIGTERM while in
 * <phase>". A launcher that ends a job because a node died sends SIGTERM to the
 * ranks left before it kills them: the ranks that said so were alive, the job
 * script names the others as lost.
 */
void watchdog_signal(int sig);

#endif
