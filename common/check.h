/*
 * check: the one way this project reports a failed call or a broken invariant.
 *
 * Every call into MPI, oneDNN, HDF5 or libc that can fail goes through one of the
 * CHECK_* macros below. On failure they print "file:line: call: library message" and
 * call fatal_at(), which runs the hook set with fatal_set_hook() (the MPI layer
 * installs one that calls MPI_Abort, so one failing rank ends the whole job) and
 * otherwise aborts. The macros for a library expand only where its header is
 * included, so this header links nothing but libc.
 *
 * Not for user errors (a bad flag, a missing file): those are reported as one line
 * by log_error() and end the program with exit status 2 (see log.h).
 */
#ifndef RN_CHECK_H
#define RN_CHECK_H

#include <errno.h>
#include <string.h>

typedef void (*fatal_hook_fn)(int exit_code);

void fatal_set_hook(fatal_hook_fn hook);
_Noreturn void fatal_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define FATAL(...) fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* An internal invariant (always on: never put a side effect inside). */
#define ENSURE(cond)                                                         \
	do {                                                                 \
		if (!(cond))                                                 \
			fatal_at(__FILE__, __LINE__, "invariant failed: %s", \
				 #cond);                                     \
	} while (0)

/* libc: a call returning -1 (or NULL via CHECK_PTR) with errno set. */
#define CHECK_SYS(call)                                                     \
	do {                                                                \
		if ((call) == -1)                                           \
			fatal_at(__FILE__, __LINE__, "%s: %s", #call,       \
				 strerror(errno));                          \
	} while (0)

#define CHECK_PTR(call)                                                     \
	do {                                                                \
		if ((call) == NULL)                                         \
			fatal_at(__FILE__, __LINE__, "%s: %s", #call,       \
				 strerror(errno));                          \
	} while (0)

/* oneDNN: dnnl_status_t, dnnl_success == 0. */
#define CHECK_DNNL(call)                                                    \
	do {                                                                \
		int st_ = (int)(call);                                      \
		if (st_ != 0)                                               \
			fatal_at(__FILE__, __LINE__,                        \
				 "%s: oneDNN status %d", #call, st_);       \
	} while (0)

/* MPI: needs <mpi.h>; communicators use MPI_ERRORS_RETURN so codes come back. */
#define CHECK_MPI(call)                                                     \
	do {                                                                \
		int rc_ = (call);                                           \
		if (rc_ != MPI_SUCCESS) {                                   \
			char msg_[MPI_MAX_ERROR_STRING];                    \
			int len_ = 0;                                       \
			MPI_Error_string(rc_, msg_, &len_);                 \
			fatal_at(__FILE__, __LINE__, "%s: %s", #call,       \
				 msg_);                                     \
		}                                                           \
	} while (0)

/* HDF5: herr_t or hid_t, negative on failure (HDF5 prints its own stack). */
#define CHECK_H5(call)                                                      \
	do {                                                                \
		if ((long long)(call) < 0)                                  \
			fatal_at(__FILE__, __LINE__, "%s: HDF5 call failed",\
				 #call);                                    \
	} while (0)

#endif
