/*
 * ckpt_async: a checkpoint written in the background. ckpt_async_start copies what
 * this rank writes (its owned, non-replica slices) and the attributes into buffers of
 * its own and returns; a writer thread then runs ckpt_save on the copy, over a
 * communicator of its own, while the caller goes on (training changes the
 * parameters at once). ckpt_async_wait joins the writer and returns what ckpt_save
 * returned: 0 on every rank, or -1 on every rank with the same one-line error. One
 * save at a time: a start waits for the one in flight. The protocol is ckpt_save's,
 * so `latest` moves only when the file is complete and a crash at any moment leaves
 * the previous checkpoint loadable.
 *
 * Needs MPI_THREAD_MULTIPLE (the writer's collectives run beside the caller's) and a
 * caller that makes no HDF5 call while a save is in flight (Debian's parallel HDF5 is
 * not thread-safe). A write that fails once the file is open ends the job from the
 * writer thread (ckpt_save's MPI_Abort), as a synchronous save does.
 * Knows nothing of what the groups hold.
 */
#ifndef RN_CKPT_ASYNC_H
#define RN_CKPT_ASYNC_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

struct ckpt_async;

/* collective over comm (duplicated for the writer). */
struct ckpt_async *ckpt_async_create(MPI_Comm comm);
/* Waits for a save in flight (its result is dropped: call ckpt_async_wait first to
 * see it). collective over comm. */
void ckpt_async_destroy(struct ckpt_async *a);

/*
 * Waits for the save in flight, if any, then starts saving iteration `iteration` to
 * dir as ckpt_save would (same arguments), from copies made before it returns: the
 * caller may change or free its buffers at once. Returns -1 with err when the save
 * in flight failed (nothing new started); 0 otherwise. collective over the
 * communicator (every rank starts the same saves).
 */
int ckpt_async_start(struct ckpt_async *a, const char *dir, int64_t iteration,
		     const struct ckpt_group *groups, int ngroups, const struct ckpt_attr *attrs,
		     int nattrs, const struct ckpt_options *opt, char *err, size_t errlen);

/* Joins the save in flight, if any: 0, or -1 with ckpt_save's error. *waited: the
 * seconds this call blocked (NULL: not wanted). */
int ckpt_async_wait(struct ckpt_async *a, double *waited, char *err, size_t errlen);

/* Is a save in flight (started, not yet waited for)? */
bool ckpt_async_busy(const struct ckpt_async *a);
/* The iteration of the last save started, or -1. */
int64_t ckpt_async_iteration(const struct ckpt_async *a);

#endif
