#include "parallel/grid.h"

#include <stdio.h>

#include "common/check.h"

int grid_validate(int world_size, int tp_size, int pp_size, char *err, size_t errlen)
{
	if (tp_size < 1 || pp_size < 1) {
		snprintf(err, errlen, "--tensor-model-parallel-size and "
			 "--pipeline-model-parallel-size must be >= 1 (got %d and %d)",
			 tp_size, pp_size);
		return -1;
	}
	if (world_size % (tp_size * pp_size) != 0) {
		snprintf(err, errlen, "world size %d is not divisible by tensor-parallel size %d "
			 "x pipeline-parallel size %d", world_size, tp_size, pp_size);
		return -1;
	}
	return 0;
}

static void split(MPI_Comm *out, int color, int key)
{
	/* collective: all ranks of MPI_COMM_WORLD */
	CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, color, key, out));
	CHECK_MPI(MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN));
}

void grid_init(struct grid *g, int tp_size, int pp_size)
{
	char err[256];

	g->world = MPI_COMM_WORLD;
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g->world_size));
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &g->world_rank));
	if (grid_validate(g->world_size, tp_size, pp_size, err, sizeof(err)))
		FATAL("%s", err);
	g->tp_size = tp_size;
	g->pp_size = pp_size;
	g->dp_size = g->world_size / (tp_size * pp_size);
	g->tp_rank = g->world_rank % tp_size;
	g->dp_rank = (g->world_rank / tp_size) % g->dp_size;
	g->pp_rank = g->world_rank / (tp_size * g->dp_size);
	split(&g->tp_comm, g->pp_rank * g->dp_size + g->dp_rank, g->tp_rank);
	split(&g->dp_comm, g->pp_rank * tp_size + g->tp_rank, g->dp_rank);
	split(&g->pp_comm, g->dp_rank * tp_size + g->tp_rank, g->pp_rank);
}

void grid_free(struct grid *g)
{
	CHECK_MPI(MPI_Comm_free(&g->tp_comm));
	CHECK_MPI(MPI_Comm_free(&g->dp_comm));
	CHECK_MPI(MPI_Comm_free(&g->pp_comm));
}
