#include "parallel/grid.h"

#include <stdio.h>

#include "common/check.h"

const char *grid_axis_name(enum grid_axis a)
{
	static const char *const names[GRID_AXES] = {"tensor", "context", "data", "pipeline"};

	ENSURE(a >= 0 && a < GRID_AXES);
	return names[a];
}

int grid_validate(int world_size, const int sizes[GRID_AXES], char *err, size_t errlen)
{
	long long model = 1;

	for (int a = 0; a < GRID_AXES; a++) {
		if (a == GRID_DATA && sizes[a] == 0)
			continue;
		if (sizes[a] < 1) {
			snprintf(err, errlen, "%s-parallel size %d: must be >= 1",
				 grid_axis_name((enum grid_axis)a), sizes[a]);
			return -1;
		}
		model *= sizes[a];
	}
	if (world_size < 1 || world_size % model ||
	    (sizes[GRID_DATA] != 0 && world_size != model)) {
		snprintf(err, errlen, "world size %d is not %s the product of the axes' sizes "
			 "(tensor %d x context %d x data %d x pipeline %d)", world_size,
			 sizes[GRID_DATA] ? "" : "a multiple of", sizes[GRID_TENSOR],
			 sizes[GRID_CONTEXT], sizes[GRID_DATA], sizes[GRID_PIPELINE]);
		return -1;
	}
	return 0;
}

void grid_init(struct grid *g, const int sizes[GRID_AXES])
{
	char err[256];
	int coord[GRID_AXES], stride[GRID_AXES], model = 1;

	g->world = MPI_COMM_WORLD;
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g->world_size));
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &g->world_rank));
	if (grid_validate(g->world_size, sizes, err, sizeof(err)))
		FATAL("%s", err);
	for (int a = 0; a < GRID_AXES; a++)
		model *= a == GRID_DATA && sizes[a] == 0 ? 1 : sizes[a];
	for (int a = 0, s = 1; a < GRID_AXES; a++) {
		g->axis[a].size = a == GRID_DATA && sizes[a] == 0 ? g->world_size / model
								   : sizes[a];
		stride[a] = s;
		coord[a] = g->world_rank / s % g->axis[a].size;
		g->axis[a].rank = coord[a];
		s *= g->axis[a].size;
	}
	for (int a = 0; a < GRID_AXES; a++) {
		/* the group of an axis: the ranks whose other coordinates are ours */
		int color = g->world_rank - coord[a] * stride[a];

		/* collective: all ranks of MPI_COMM_WORLD */
		CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, color, coord[a], &g->axis[a].comm));
		CHECK_MPI(MPI_Comm_set_errhandler(g->axis[a].comm, MPI_ERRORS_RETURN));
	}
	/* the data x context plane, ordered context fastest */
	g->replicas.size = g->axis[GRID_CONTEXT].size * g->axis[GRID_DATA].size;
	g->replicas.rank = coord[GRID_CONTEXT] + g->axis[GRID_CONTEXT].size * coord[GRID_DATA];
	/* collective: all ranks of MPI_COMM_WORLD */
	CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD,
				 g->world_rank - coord[GRID_CONTEXT] * stride[GRID_CONTEXT] -
					 coord[GRID_DATA] * stride[GRID_DATA],
				 g->replicas.rank, &g->replicas.comm));
	CHECK_MPI(MPI_Comm_set_errhandler(g->replicas.comm, MPI_ERRORS_RETURN));
}

void grid_free(struct grid *g)
{
	for (int a = 0; a < GRID_AXES; a++)
		CHECK_MPI(MPI_Comm_free(&g->axis[a].comm));
	CHECK_MPI(MPI_Comm_free(&g->replicas.comm));
}

void grid_single(struct grid *g)
{
	g->world_size = 1;
	g->world_rank = 0;
	g->world = MPI_COMM_NULL;
	for (int a = 0; a < GRID_AXES; a++)
		g->axis[a] = (struct grid_group){1, 0, MPI_COMM_NULL};
	g->replicas = (struct grid_group){1, 0, MPI_COMM_NULL};
}
