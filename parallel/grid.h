/*
 * grid: the process grid, built once from the world communicator and the tensor- and
 * pipeline-parallel sizes, in Megatron-LM's default order: tensor-parallel ranks vary
 * fastest (neighbours, so a TP group shares a node), then data-parallel, then pipeline
 * stages slowest:  rank = tp + dp*TP + pp*TP*DP.
 * Exposes the three groups as communicators (MPI_ERRORS_RETURN on each). Knows
 * nothing of RetNet: what to split is the model's business.
 */
#ifndef RN_GRID_H
#define RN_GRID_H

#include <mpi.h>
#include <stddef.h>

struct grid {
	int world_size, world_rank;
	int tp_size, pp_size, dp_size;
	int tp_rank, pp_rank, dp_rank;
	MPI_Comm world;   /* MPI_COMM_WORLD */
	MPI_Comm tp_comm; /* ranks with the same (pp, dp) */
	MPI_Comm dp_comm; /* ranks with the same (pp, tp) */
	MPI_Comm pp_comm; /* ranks with the same (dp, tp) */
};

/* Pure check (no MPI): 0, or -1 with a one-line reason in err. */
int grid_validate(int world_size, int tp_size, int pp_size, char *err, size_t errlen);

/* Collective over MPI_COMM_WORLD. The sizes must have passed grid_validate. */
void grid_init(struct grid *g, int tp_size, int pp_size);
void grid_free(struct grid *g);

#endif
