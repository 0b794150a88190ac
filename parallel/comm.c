#include "parallel/comm.h"

#include <limits.h>

#include "common/check.h"

/* MPI counts are int: larger buffers go in slices. */
#define COMM_MAX_COUNT ((size_t)1 << 30)

static void allreduce(MPI_Comm comm, void *buf, size_t count, MPI_Datatype type, size_t elem,
		      MPI_Op op)
{
	for (size_t done = 0; done < count; done += COMM_MAX_COUNT) {
		size_t n = count - done < COMM_MAX_COUNT ? count - done : COMM_MAX_COUNT;

		/* collective: all ranks of comm */
		CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, (int)n, type, op,
					comm));
	}
}

void comm_allreduce_sum_f32(MPI_Comm comm, float *buf, size_t count)
{
	allreduce(comm, buf, count, MPI_FLOAT, sizeof(float), MPI_SUM);
}

void comm_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t count)
{
	allreduce(comm, buf, count, MPI_DOUBLE, sizeof(double), MPI_SUM);
}

void comm_allreduce_max_f64(MPI_Comm comm, double *buf, size_t count)
{
	allreduce(comm, buf, count, MPI_DOUBLE, sizeof(double), MPI_MAX);
}

void comm_allgather_f32(MPI_Comm comm, const float *send, size_t count, float *recv)
{
	ENSURE(count <= INT_MAX);
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allgather(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, comm));
}

void comm_isend_f32(MPI_Comm comm, const float *buf, size_t count, int dest, int tag,
		    MPI_Request *req)
{
	ENSURE(count <= INT_MAX);
	CHECK_MPI(MPI_Isend(buf, (int)count, MPI_FLOAT, dest, tag, comm, req));
}

void comm_irecv_f32(MPI_Comm comm, float *buf, size_t count, int source, int tag,
		    MPI_Request *req)
{
	ENSURE(count <= INT_MAX);
	CHECK_MPI(MPI_Irecv(buf, (int)count, MPI_FLOAT, source, tag, comm, req));
}

void comm_wait(MPI_Request *req)
{
	CHECK_MPI(MPI_Wait(req, MPI_STATUS_IGNORE));
}

bool comm_agree(MPI_Comm comm, bool ok)
{
	int flag = ok ? 1 : 0;

	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LAND, comm));
	return flag != 0;
}

int comm_first_rank_with(MPI_Comm comm, bool flag)
{
	int rank, first;

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	first = flag ? rank : INT_MAX;
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
	return first == INT_MAX ? -1 : first;
}

void comm_bcast(MPI_Comm comm, void *buf, size_t bytes, int root)
{
	ENSURE(bytes <= INT_MAX);
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, comm));
}

void comm_barrier(MPI_Comm comm)
{
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Barrier(comm));
}
