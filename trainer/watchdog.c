#include "trainer/watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "parallel/mpi_setup.h"
#include "parallel/tcp_peers.h"

/* A peer's connection closed and no progress since, for this long: the peer is gone.
 * (Ranks that agreed to exit leave together through MPI_Finalize, and the run's end
 * is watchdog_finishing: neither waits this long on a closed connection.) */
#define PEER_GONE_S 3.0

/* Written by the main thread, read by the watchdog: relaxed atomics, as a torn
 * (phase, numbers) pair only garbles the message of a job that is ending anyway. */
static _Atomic(const char *) phase = "start-up";
static atomic_int phase_a, phase_b;
static atomic_ulong progress_count;

static pthread_t thread;
/* The thread sleeps in poll() on this pipe: a byte 0 stops it, a signal number is a
 * signal the main thread's handler passed on (write(2) is async-signal-safe). */
static int wake_fd[2] = {-1, -1};
static atomic_bool finishing;
static bool running;
static double timeout_s;
static int exit_code;

void watchdog_phase(const char *what)
{
	atomic_store_explicit(&phase, what, memory_order_relaxed);
}

void watchdog_phase_at(const char *fmt, int a, int b)
{
	atomic_store_explicit(&phase_a, a, memory_order_relaxed);
	atomic_store_explicit(&phase_b, b, memory_order_relaxed);
	atomic_store_explicit(&phase, fmt, memory_order_release);
}

void watchdog_progress(void)
{
	atomic_fetch_add_explicit(&progress_count, 1, memory_order_relaxed);
}

void watchdog_finishing(const char *what)
{
	atomic_store_explicit(&finishing, true, memory_order_relaxed);
	watchdog_phase(what);
}

void watchdog_signal(int sig)
{
	const unsigned char b = (unsigned char)sig;
	const int saved = errno;

	if (wake_fd[1] >= 0 && write(wake_fd[1], &b, 1) < 0) {
		/* the pipe is full of earlier signals: this one adds nothing */
	}
	errno = saved;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* SIGALRM: MPI_Abort did not end the process in time. */
static void on_alarm(int sig)
{
	(void)sig;
	_exit(exit_code);
}

/* The phase, formatted. */
static void phase_text(char *buf, size_t len)
{
	const char *fmt = atomic_load_explicit(&phase, memory_order_acquire);

	/* fmt is one of the main thread's static formats with at most two %d; extra
	 * arguments are ignored by printf */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(buf, len, fmt, atomic_load_explicit(&phase_a, memory_order_relaxed),
		 atomic_load_explicit(&phase_b, memory_order_relaxed));
#pragma GCC diagnostic pop
}

/* One write, so that the ranks' lines do not interleave. */
static void say(const char *line)
{
	if (write(STDERR_FILENO, line, strlen(line)) < 0) {
		/* nothing left to tell it to */
	}
}

/* peer: the address of a lost peer's closed connection, or NULL for a stall. */
static _Noreturn void end_job(const char *peer)
{
	char what[256], line[768];
	int finalized = 0;

	phase_text(what, sizeof(what));
	if (peer)
		snprintf(line, sizeof(line), "retnet: error: [rank %d] the TCP connection from %s "
			 "closed (a process there is gone) while waiting in %s; ending the job "
			 "(--distributed-timeout-minutes)\n", log_rank(), peer, what);
	else
		snprintf(line, sizeof(line), "retnet: error: [rank %d] no progress for %g minutes: "
			 "waiting in %s; ending the job (--distributed-timeout-minutes)\n",
			 log_rank(), timeout_s / 60.0, what);
	say(line);
	MPI_Finalized(&finalized);
	if (finalized || !mpi_setup_threads_multiple())
		_exit(exit_code); /* the runtime ends the others: a rank gone without a word */
	signal(SIGALRM, on_alarm);
	alarm(10);
	MPI_Abort(MPI_COMM_WORLD, exit_code);
	_exit(exit_code);
}

/*
 * A SIGTERM before the run is over: say where this rank was. When the launcher ends
 * a job because a node died, it sends SIGTERM to the ranks left (SIGKILL a second
 * later): the ranks that say so are the ones alive, and the job script names the
 * others as lost. (SIGTERM is also a preemption: then it says where the stop began.)
 */
static void report_signal(int sig)
{
	static bool reported; /* a launcher may send it twice: one line is the news */
	char what[256], line[512];

	if (sig != SIGTERM || reported || atomic_load_explicit(&finishing, memory_order_relaxed))
		return;
	reported = true;
	phase_text(what, sizeof(what));
	snprintf(line, sizeof(line), "retnet: warning: [rank %d] SIGTERM while in %s\n",
		 log_rank(), what);
	say(line);
}

static void *watch(void *arg)
{
	/* Look often enough to end the job within 5% of the timeout (at most 1 s late). */
	const double period = timeout_s / 20 < 1.0 ? timeout_s / 20 : 1.0;
	unsigned long seen = atomic_load_explicit(&progress_count, memory_order_relaxed);
	double since = now_s(), closed_since = 0;
	unsigned long closed_count = 0;
	char peer[64], first_peer[64] = "";
	struct tcp_peers *tcp = tcp_peers_create();

	(void)arg;
	for (;;) {
		struct pollfd p = {.fd = wake_fd[0], .events = POLLIN};
		unsigned long count;

		if (poll(&p, 1, (int)(period * 1000)) > 0) {
			unsigned char b = 0;

			if (read(wake_fd[0], &b, 1) == 1 && b == 0)
				break;
			report_signal(b);
		}
		count = atomic_load_explicit(&progress_count, memory_order_relaxed);
		if (count != seen) {
			seen = count;
			since = now_s();
		} else if (now_s() - since >= timeout_s) {
			end_job(NULL);
		}
		/* A peer gone for good: waiting for the timeout would only delay the end.
		 * A connection closed, and no progress since for PEER_GONE_S. */
		if (atomic_load_explicit(&finishing, memory_order_relaxed))
			continue;
		if (tcp_peers_lost(tcp, peer, sizeof(peer)) > 0 && closed_since == 0) {
			closed_since = now_s();
			closed_count = count;
			snprintf(first_peer, sizeof(first_peer), "%s", peer);
		}
		if (closed_since > 0 && count != closed_count)
			closed_since = 0; /* the run went on: not a lost peer */
		else if (closed_since > 0 && now_s() - closed_since >= PEER_GONE_S)
			end_job(first_peer);
	}
	tcp_peers_free(tcp);
	return NULL;
}

void watchdog_start(double minutes, int code)
{
	sigset_t block, old;

	if (minutes <= 0 || running)
		return;
	timeout_s = 60.0 * minutes;
	exit_code = code;
	CHECK_SYS(pipe(wake_fd));
	/* the handler must never block on a full pipe */
	CHECK_SYS(fcntl(wake_fd[1], F_SETFL, O_NONBLOCK));
	CHECK_SYS(fcntl(wake_fd[0], F_SETFD, FD_CLOEXEC));
	CHECK_SYS(fcntl(wake_fd[1], F_SETFD, FD_CLOEXEC));
	/* The stop signals (SIGUSR1, SIGTERM) are the main thread's: the new thread
	 * starts with them blocked, so that they interrupt the thread that acts on them. */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	ENSURE(pthread_sigmask(SIG_BLOCK, &block, &old) == 0);
	ENSURE(pthread_create(&thread, NULL, watch, NULL) == 0);
	ENSURE(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
	running = true;
}

void watchdog_stop(void)
{
	const unsigned char stop = 0;
	int fd = wake_fd[1];

	if (!running)
		return;
	/* blocking: the stop byte must arrive even behind a pipe full of signals */
	CHECK_SYS(fcntl(fd, F_SETFL, 0));
	if (write(fd, &stop, 1) != 1)
		FATAL("watchdog: write to its pipe: %s", strerror(errno));
	pthread_join(thread, NULL);
	wake_fd[1] = -1; /* a signal from now on writes nothing */
	close(fd);
	close(wake_fd[0]);
	wake_fd[0] = -1;
	running = false;
}
