/*
 * log: human-readable messages, printed by one rank or tagged with the rank.
 *
 * log0() prints on rank 0 only (the rank is set once by the MPI layer with
 * log_set_rank(); a program without MPI is rank 0). log_error() prints one line
 * "retnet: error: <what>: <rule>" for a user error (bad flag, bad file); the caller
 * then exits with status 2. Does not decide whether to exit and knows nothing of MPI.
 */
#ifndef RN_LOG_H
#define RN_LOG_H

#include <stddef.h>

void log_set_rank(int rank, int world_size);
int log_rank(void);
/* " [rank r]" when the world has more than one rank, "" otherwise. */
const char *log_rank_tag(void);

void log0(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * Formats a user-error message into err (truncated to errlen, by design: a long path
 * must not turn into a missing message) and returns -1, so "return log_fail(...)"
 * ends a function that reports errors through an (err, errlen) pair.
 */
int log_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
