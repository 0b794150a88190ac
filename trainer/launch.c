#include "trainer/launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "parallel/mpi_setup.h"
#include "parallel/placement.h"
#include "trainer/model.h"

void launch_begin(struct launch *l, enum spec_program p, int *argc, char ***argv)
{
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct run_spec *s = &l->spec;
	int rc, world, sizes[GRID_AXES];

	memset(l, 0, sizeof(*l));
	mpi_setup_init(argc, argv);
	rc = spec_parse(s, p, *argc, *argv, err, sizeof(err));
	mpi_setup_agree_or_exit(rc >= 0, err);
	if (rc == 1) {
		if (log_rank() == 0)
			spec_print_help(p);
		mpi_setup_finalize();
		exit(0);
	}
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
	/* retnet-eval and retnet-generate check the model's rules again once the
	 * checkpoint has said what the model is */
	mpi_setup_agree_or_exit(spec_validate(s, world, err, sizeof(err)) == 0, err);
	mpi_setup_agree_or_exit(!s->async_save || mpi_setup_threads_multiple(),
				"--async-save: this MPI does not provide MPI_THREAD_MULTIPLE, which "
				"a checkpoint writer thread beside training needs");
	spec_resolve(s, world);
	/* Where the ranks landed, for the job's log (retnet-generate's stdout is its text). */
	if (p == SPEC_TRAIN || p == SPEC_EVAL)
		placement_report(p == SPEC_TRAIN ? "retnet-train" : "retnet-eval",
				 omp_get_max_threads());
	sizes[GRID_TENSOR] = s->tensor_model_parallel_size ? (int)s->tensor_model_parallel_size : 1;
	sizes[GRID_CONTEXT] = s->context_parallel_size ? (int)s->context_parallel_size : 1;
	sizes[GRID_DATA] = 0;
	sizes[GRID_PIPELINE] =
		s->pipeline_model_parallel_size ? (int)s->pipeline_model_parallel_size : 1;
	grid_init(&l->grid, sizes);
}

void launch_read_checkpoint(struct launch *l)
{
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct ckpt_info *c = &l->checkpoint;
	int64_t iteration;
	bool ok;

	ok = train_ckpt_resolve(l->spec.load, l->spec.iteration, &iteration, l->grid.world, err,
				sizeof(err)) == 0 &&
	     train_ckpt_read_info(l->spec.load, iteration, c, l->grid.world, err,
				  sizeof(err)) == 0 &&
	     spec_adopt(&l->spec, &c->model, c->path, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	ok = spec_validate(&l->spec, l->grid.world_size, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	l->have_checkpoint = true;
}

static enum retention_form form_of(const struct run_spec *s)
{
	if (s->program == SPEC_GENERATE || !strcmp(s->form, "recurrent"))
		return RETENTION_RECURRENT;
	return !strcmp(s->form, "parallel") ? RETENTION_PARALLEL : RETENTION_CHUNKWISE;
}

struct model *launch_model(struct launch *l, int slots)
{
	const int n = model_chunk_count(&l->spec, &l->grid);
	int *each = xcalloc((size_t)n, sizeof(*each));
	struct model *m;

	for (int c = 0; c < n; c++)
		each[c] = slots;
	m = launch_model_chunked(l, each);
	free(each);
	return m;
}

struct model *launch_model_chunked(struct launch *l, const int *slots)
{
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct model *m = model_create_chunked(&l->spec, &l->grid, slots);
	bool ok;

	/* --bf16 on a CPU without AVX512-BF16 is a user error, not a fallback: one line,
	 * all ranks exit 2 (the ranks may sit on different nodes, so all check). The
	 * checkpoint is float32 whatever trained it: --bf16 only changes the matmuls. */
	ok = !l->spec.bf16 || model_set_bf16(m, true, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	model_set_form(m, form_of(&l->spec));
	if (l->have_checkpoint) {
		ok = train_ckpt_load(l->spec.load, l->checkpoint.iteration, m, NULL, &l->grid, err,
				     sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}
	return m;
}

void launch_end(struct launch *l)
{
	train_ckpt_info_free(&l->checkpoint);
	spec_free(&l->spec);
	grid_free(&l->grid);
	mpi_setup_finalize();
}
