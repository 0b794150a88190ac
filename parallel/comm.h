/*
 * comm: the checked collectives the trainer needs, on any communicator. With a
 * communicator of size 1 every call is the identity, so the single-rank run goes
 * through the same code. Does not decide what to reduce; knows nothing of RetNet.
 */
#ifndef RN_COMM_H
#define RN_COMM_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * What one rank sent over one axis of the grid and how long it waited in the calls
 * that did it. Bytes are the algorithmic volume a ring algorithm sends, not a
 * measurement of what MPI sent: an all-reduce of B bytes over p ranks 2 (p-1)/p B,
 * a reduce-scatter or an all-gather of B bytes in all (p-1)/p B, a send its bytes.
 */
struct comm_tally {
	double bytes, seconds;
};

/* In place: buf = sum over the ranks of comm.  collective: all ranks of comm */
void comm_allreduce_sum_f32(MPI_Comm comm, float *buf, size_t count);
void comm_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t count);
void comm_allreduce_max_f64(MPI_Comm comm, double *buf, size_t count);
/* recv = the ranks' send buffers of count floats each, in rank order (size x count).
 * collective: all ranks of comm */
void comm_allgather_f32(MPI_Comm comm, const float *send, size_t count, float *recv);

/* Point-to-point between pipeline stages (no ANY_SOURCE/ANY_TAG: the tag names
 * the micro-batch, the model chunk and the direction, so transfers cannot be
 * confused). */
void comm_isend_f32(MPI_Comm comm, const float *buf, size_t count, int dest, int tag,
		    MPI_Request *req);
void comm_irecv_f32(MPI_Comm comm, float *buf, size_t count, int source, int tag,
		    MPI_Request *req);
/* Waits for one request (MPI_REQUEST_NULL returns at once). */
void comm_wait(MPI_Request *req);

/* true on every rank iff ok is true on every rank.  collective: all ranks of comm */
bool comm_agree(MPI_Comm comm, bool ok);
/* The lowest rank of comm whose flag is set, or -1 if none. collective */
int comm_first_rank_with(MPI_Comm comm, bool flag);

void comm_bcast(MPI_Comm comm, void *buf, size_t bytes, int root);
void comm_barrier(MPI_Comm comm);

#endif
