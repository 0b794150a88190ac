/*
 * Tensor parallelism, slice by slice (run under mpiexec -n P, P = 2 or 4; the TP
 * group is the world). Each rank builds its slice of the tiny model:
 *  - initialised from a seed, its slices are bitwise the single-rank model's;
 *  - loaded with the PyTorch fixture's parameters, its logits and loss match the
 *    fixture (1e-4 relative), and every local gradient matches the fixture's
 *    gradient on the same slice (1e-4) and the single-rank model's (1e-5 of the
 *    tensor's largest magnitude: float32 against float32).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/grid.h"
#include "tests/fixture.h"
#include "tests/harness_mpi.h"
#include "tests/model_spec.h"
#include "trainer/model.h"

/* Copies this slice of a full (rows, cols) row-major tensor into dst. */
static void take_slice(float *dst, const struct layout_slice *s, const void *full, bool f64)
{
	uint64_t start[2], count[2];

	layout_slice_hyperslab(s, start, count);
	for (uint64_t r = 0; r < count[0]; r++)
		for (uint64_t c = 0; c < count[1]; c++) {
			uint64_t src = (start[0] + r) * (uint64_t)s->global_shape[1] + start[1] + c;

			dst[r * count[1] + c] = f64 ? (float)((const double *)full)[src]
						    : ((const float *)full)[src];
		}
}

static double max_abs(const float *x, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

/* The world as one tensor-parallel group. */
static struct grid tp_grid(int size)
{
	const int sizes[GRID_AXES] = {[GRID_TENSOR] = size, [GRID_CONTEXT] = 1,
				      [GRID_DATA] = 1, [GRID_PIPELINE] = 1};
	struct grid g;

	grid_init(&g, sizes);
	return g;
}

static void check_init_slices(int rank, int size)
{
	struct run_spec cfg = test_model_spec(test_tiny_config, 99);
	struct grid g = tp_grid(size);
	struct model *tp = model_create(&cfg, &g, 1), *one = model_create(&cfg, NULL, 1);
	struct param_set *ptp = model_params(tp), *pone = model_params(one);
	size_t bad = 0;
	float *slice = malloc(sizeof(float) * 256 * 256);

	for (int i = 0; i < ptp->count; i++) {
		const struct param_desc *d = &ptp->desc[i];
		int j = param_set_find(pone, d->slice.name);

		take_slice(slice, &d->slice, param_data(pone, j), false);
		if (memcmp(slice, param_data(ptp, i), sizeof(float) * d->numel))
			bad++;
	}
	EXPECT_TRUE(bad == 0, "rank %d: %zu tensors' initial slices differ from the single-rank "
		    "model's", rank, bad);
	free(slice);
	model_destroy(tp);
	model_destroy(one);
	grid_free(&g);
}

static void check_fixture(int rank, int size)
{
	struct fixture *fx = fixture_load_named("tiny_model.bin");
	struct run_spec cfg = test_model_spec(fixture_i32(fx, "config", 8), 1);
	const int64_t T = cfg.seq_length, B = cfg.micro_batch_size, M = B * T;
	const int64_t V = cfg.vocab_size;
	const int32_t *tokens = fixture_i32(fx, "tokens", (size_t)(B * (T + 1)));
	struct grid g = tp_grid(size);
	struct model *tp = model_create(&cfg, &g, 1), *one = model_create(&cfg, NULL, 1);
	struct param_set *ptp = model_params(tp), *pone = model_params(one);
	int32_t *inputs = malloc(sizeof(int32_t) * M), *targets = malloc(sizeof(int32_t) * M);
	float *want = malloc(sizeof(float) * 256 * 256);
	char name[128], label[192];
	float loss_tp, loss_one;
	double loss_ref = fixture_f64(fx, "loss", 1)[0];
	const double *logits_ref = fixture_f64(fx, "logits", (size_t)(M * V));

	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			inputs[b * T + t] = tokens[b * (T + 1) + t];
			targets[b * T + t] = tokens[b * (T + 1) + t + 1];
		}
	for (int i = 0; i < ptp->count; i++) {
		const struct param_desc *d = &ptp->desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		take_slice(param_data(ptp, i), &d->slice, fixture_f32(fx, name, 0), false);
	}
	for (int i = 0; i < pone->count; i++) {
		const struct param_desc *d = &pone->desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		memcpy(param_data(pone, i), fixture_f32(fx, name, d->numel),
		       sizeof(float) * d->numel);
	}
	loss_tp = model_forward(tp, inputs, targets);
	loss_one = model_forward(one, inputs, targets);
	snprintf(label, sizeof(label), "TP=%d rank %d logits vs PyTorch", size, rank);
	{
		double scale = 0;

		for (int64_t i = 0; i < M * V; i++)
			scale = fmax(scale, fabs(logits_ref[i]));
		EXPECT_CLOSE(model_logits(tp, 0), logits_ref, M * V, 1e-4, 1e-4 * scale, label);
	}
	snprintf(label, sizeof(label), "TP=%d rank %d loss vs PyTorch", size, rank);
	EXPECT_CLOSE(&loss_tp, &loss_ref, 1, 1e-5, 0, label);
	snprintf(label, sizeof(label), "TP=%d rank %d loss vs single rank", size, rank);
	EXPECT_CLOSE(&loss_tp, &loss_one, 1, 1e-6, 0, label);

	param_set_zero_grad(ptp);
	param_set_zero_grad(pone);
	model_backward(tp, 1.0f);
	model_backward(one, 1.0f);
	for (int i = 0; i < ptp->count; i++) {
		const struct param_desc *d = &ptp->desc[i];
		const float *got = param_grad(ptp, i);
		double scale;

		snprintf(name, sizeof(name), "grad/%s", d->slice.name);
		take_slice(want, &d->slice, fixture_f64(fx, name, 0), true);
		scale = max_abs(want, d->numel);
		snprintf(label, sizeof(label), "TP=%d rank %d d%s slice vs PyTorch", size, rank,
			 d->slice.name);
		EXPECT_CLOSE(got, want, d->numel, 1e-4, 1e-4 * scale, label);
		take_slice(want, &d->slice, param_grad(pone, param_set_find(pone, d->slice.name)),
			   false);
		snprintf(label, sizeof(label), "TP=%d rank %d d%s slice vs single rank", size, rank,
			 d->slice.name);
		EXPECT_CLOSE(got, want, d->numel, 1e-5, 1e-5 * scale, label);
	}
	/* The clip norm counts each element once across the group. */
	{
		double n_tp = model_grad_sumsq(tp), n_one = model_grad_sumsq(one);

		EXPECT_TRUE(fabs(n_tp - n_one) <= 1e-5 * n_one,
			    "rank %d: gradient sum of squares %.9g at TP=%d, %.9g on one rank", rank,
			    n_tp, size, n_one);
	}
	model_destroy(tp);
	model_destroy(one);
	grid_free(&g);
	free(inputs), free(targets), free(want);
	fixture_free(fx);
}

int main(int argc, char **argv)
{
	int rank, size;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	check_init_slices(rank, size);
	check_fixture(rank, size);
	return test_finish_mpi();
}
