/*
 * grid: the process grid, built once from the world communicator and the sizes of
 * its named axes, in Megatron-LM's order: tensor-parallel ranks vary fastest
 * (neighbours, so a tensor-parallel group shares a node), then context-parallel,
 * then data-parallel, then pipeline stages slowest:
 *
 *     rank = t + T*(c + C*(d + D*p))
 *
 * Each axis is a group of ranks (the ranks that differ only in that coordinate)
 * with its own communicator (MPI_ERRORS_RETURN), and so is the data x context plane.
 * Knows nothing of RetNet: what to split along each axis is the model's business.
 */
#ifndef RN_GRID_H
#define RN_GRID_H

#include <mpi.h>
#include <stddef.h>

enum grid_axis { GRID_TENSOR, GRID_CONTEXT, GRID_DATA, GRID_PIPELINE, GRID_AXES };

struct grid_group {
	int size, rank; /* along the axis */
	MPI_Comm comm;  /* the ranks that share every other coordinate */
};

struct grid {
	int world_size, world_rank;
	MPI_Comm world;                     /* MPI_COMM_WORLD */
	struct grid_group axis[GRID_AXES];  /* indexed by enum grid_axis */
	/* the data and context axes together: the ranks that hold the same parameters
	 * (context-parallel ranks work on pieces of the same sequences), over which
	 * gradients are summed; rank = c + C*d */
	struct grid_group replicas;
};

/* "tensor", "context", "data", "pipeline" */
const char *grid_axis_name(enum grid_axis a);

/*
 * Pure check (no MPI): sizes[GRID_DATA] = 0 means "the rest of the world"; every
 * other size must be >= 1 and the product must divide the world (equal it when the
 * data size is given). 0, or -1 with a one-line reason in err.
 */
int grid_validate(int world_size, const int sizes[GRID_AXES], char *err, size_t errlen);

/* collective over MPI_COMM_WORLD. The sizes must have passed grid_validate. */
void grid_init(struct grid *g, const int sizes[GRID_AXES]);
void grid_free(struct grid *g);

/* A grid of one rank with no communicators (MPI_COMM_NULL), for code run without
 * MPI: every size 1, every rank 0. Not for grid_free. */
void grid_single(struct grid *g);

#endif
