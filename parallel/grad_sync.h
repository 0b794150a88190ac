/*
 * grad_sync: the data-parallel reduction of a flat float32 gradient array, bucket by
 * bucket, overlapped with the backward pass that produces it.
 *
 * Buckets are registered once, at set-up: ranges [offset, offset + count) of the
 * array, in the order backward finishes them, each split into one shard per rank of
 * the communicator. In every step backward starts each bucket as soon as it is final,
 * lets the reductions progress between pieces of its own work, and finishes them all
 * once at the end. Two modes:
 *  - GRAD_SYNC_ALLREDUCE: every started bucket ends as the sum over the communicator
 *    (MPI_Iallreduce in place). Plain data parallelism.
 *  - GRAD_SYNC_REDUCE_SCATTER: only this rank's shard of each started bucket ends as
 *    the sum (MPI_Ireduce_scatter into a scratch buffer of this module, copied into
 *    place at finish: MPI forbids aliased send and receive buffers); the rest of the
 *    bucket keeps this rank's own values. For a ZeRO-1 optimizer that updates its
 *    shards only and later all-gathers the parameters.
 * With a communicator of size 1 every call is the identity and, after
 * grad_sync_create() has asked the communicator its size, makes no MPI call: the
 * single-rank run goes through the same code.
 *
 * MPI counts are int: a bucket of more than INT_MAX floats is refused at
 * registration (a fatal error naming its size), not split; register such a range as
 * several buckets.
 *
 * The handle is opaque: it holds MPI requests, a scratch buffer and the shard tables,
 * none of which a caller may write, and accessors are all a caller needs.
 *
 * After a reduce-scatter step and the caller's update of its shards, grad_sync_gather
 * all-gathers another array laid out like the gradient (the parameters), shard by
 * shard, so that every rank holds the whole of every bucket again.
 *
 * Does not own the gradient array, know what it holds (nothing of RetNet), scale or
 * average the gradients: the caller does.
 */
#ifndef RN_GRAD_SYNC_H
#define RN_GRAD_SYNC_H

#include <mpi.h>
#include <stddef.h>

enum grad_sync_mode {
	GRAD_SYNC_ALLREDUCE,      /* each rank ends with the whole sum */
	GRAD_SYNC_REDUCE_SCATTER, /* each rank ends with the sum on its own shards */
};

struct grad_sync;

/* ---- set-up -------------------------------------------------------------- */

/*
 * A synchroniser of grad[0 .. count) over comm. The array stays the caller's and must
 * outlive the handle. comm is duplicated (MPI_ERRORS_RETURN on the copy), so these
 * reductions never match another module's collectives on comm.
 * collective: all ranks of comm (MPI_Comm_dup; none when comm has one rank)
 */
struct grad_sync *grad_sync_create(MPI_Comm comm, enum grad_sync_mode mode,
				   float *grad /* (count) */, size_t count);

/*
 * Registers grad[offset .. offset + count) as the next bucket and returns its index:
 * 0, 1, ... in registration order, which is the order backward finishes them.
 * counts: NULL for an even split (rank r of p gets count / p floats, one more when
 * r < count % p; shards may be empty), or counts[p] (p = size of comm) summing to
 * count, copied: shard r starts at offset + counts[0] + ... + counts[r - 1], so a
 * caller aligns shard boundaries to tensor rows. Every rank registers the same
 * buckets with the same splits. Fatal when the range leaves the array, overlaps a
 * bucket already registered, counts does not sum to count, or count > INT_MAX.
 * Empty buckets are allowed (they reduce nothing). Set-up only (allocates); no MPI
 * call.
 */
int grad_sync_add_bucket(struct grad_sync *gs, size_t offset, size_t count,
			 const size_t *counts /* [p] or NULL */);

/* Call grad_sync_finish() first (fatal otherwise).  collective: all ranks of comm */
void grad_sync_destroy(struct grad_sync *gs);

/* ---- every step ---------------------------------------------------------- */

/*
 * Bucket b is final on this rank: starts its reduction and returns without waiting.
 * Until grad_sync_finish() the caller must not write the bucket (nor read it in
 * all-reduce mode). Within a step buckets are started in increasing index order,
 * each at most once (fatal otherwise); buckets may be skipped, but every rank must
 * start the same buckets: a bucket started on one rank and skipped on another hangs
 * the job.  collective: all ranks of comm, buckets in the same order on each
 */
void grad_sync_start(struct grad_sync *gs, int b);

/* Lets started reductions progress (MPI_Testall) without waiting: Open MPI moves
 * non-blocking collectives on only inside MPI calls, so call it between pieces of
 * backward. Local. */
void grad_sync_progress(struct grad_sync *gs);

/*
 * Waits for every bucket started since the last finish and ends the step. After it:
 * all-reduce, every started bucket holds the sum over the communicator;
 * reduce-scatter, this rank's shard of every started bucket holds the sum and the
 * rest of the bucket is left as it was (this rank's own, unreduced values).
 * Buckets not started are untouched. Returns the seconds it took: the reduction
 * time backward did not hide (0 with one rank). Completes the collectives of
 * grad_sync_start; makes no new one.
 */
double grad_sync_finish(struct grad_sync *gs);

/*
 * Every rank's shard of every bucket of data (an array laid out like the gradient:
 * data[offset .. offset + count) for each bucket) to every rank, in place: after it,
 * each bucket of data holds rank r's shard where rank r's shard is. Blocking; returns
 * the seconds it took (0 with one rank). Not during a step.
 * collective: all ranks of comm
 */
double grad_sync_gather(struct grad_sync *gs, float *data);

/* ---- queries (local) ----------------------------------------------------- */

/* Buckets registered; the indices are 0 .. grad_sync_buckets() - 1. */
int grad_sync_buckets(const struct grad_sync *gs);
/* Bucket b as registered: grad[*offset .. *offset + *count). */
void grad_sync_bucket(const struct grad_sync *gs, int b, size_t *offset, size_t *count);

/*
 * This rank's shard of bucket b: grad[*offset .. *offset + *count), *count possibly
 * 0. Defined in both modes. A rank's shards are those of b = 0 .. buckets - 1;
 * grad_sync_shard_floats() is their total (the optimizer state a ZeRO-1 rank keeps).
 */
void grad_sync_shard(const struct grad_sync *gs, int b, size_t *offset, size_t *count);
/* The shard of bucket b that rank `rank` of comm owns (for the all-gather). */
void grad_sync_shard_of(const struct grad_sync *gs, int b, int rank, size_t *offset,
			size_t *count);
size_t grad_sync_shard_floats(const struct grad_sync *gs);

/*
 * Bytes this rank has sent for gradient reduction (and parameter gathers) since
 * grad_sync_create, counted when a bucket is started: the algorithmic volume of a
 * ring algorithm, not a measurement of what MPI sent. Per bucket of B bytes over p
 * ranks: all-reduce 2 (p - 1) / p x B, reduce-scatter and all-gather (p - 1) / p x B
 * each (whatever the split).
 */
double grad_sync_bytes_sent(const struct grad_sync *gs);

#endif
