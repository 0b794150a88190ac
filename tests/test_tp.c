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

#include "tests/fixture.h"
#include "tests/harness.h"
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

static void check_init_slices(int rank, int size)
{
	struct model_config cfg = {256, 64, 2, 4, 128, 8, 32, 2, 99, false};
	struct model_layout layout = {rank, size, MPI_COMM_WORLD, 0, 1, 1};
	struct model tp, one;
	size_t bad = 0;
	float *slice = malloc(sizeof(float) * 256 * 256);

	model_init(&tp, &cfg, &layout);
	model_init(&one, &cfg, NULL);
	for (int i = 0; i < tp.params.count; i++) {
		const struct param_desc *d = &tp.params.desc[i];
		int j = param_set_find(&one.params, d->slice.name);

		take_slice(slice, &d->slice, param_data(&one.params, j), false);
		if (memcmp(slice, param_data(&tp.params, i), sizeof(float) * d->numel))
			bad++;
	}
	EXPECT_TRUE(bad == 0, "rank %d: %zu tensors' initial slices differ from the single-rank "
		    "model's", rank, bad);
	free(slice);
	model_free(&tp);
	model_free(&one);
}

static void check_fixture(int rank, int size)
{
	struct fixture *fx = fixture_load_named("tiny_model.bin");
	const int32_t *c = fixture_i32(fx, "config", 8);
	struct model_config cfg = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], 1, false};
	const int64_t T = cfg.seq_len, B = cfg.micro_batch, M = B * T;
	const int32_t *tokens = fixture_i32(fx, "tokens", (size_t)(B * (T + 1)));
	struct model_layout layout = {rank, size, MPI_COMM_WORLD, 0, 1, 1};
	struct model tp, one;
	int32_t *inputs = malloc(sizeof(int32_t) * M), *targets = malloc(sizeof(int32_t) * M);
	float *want = malloc(sizeof(float) * 256 * 256);
	char name[128], label[192];
	float loss_tp, loss_one;
	double loss_ref = fixture_f64(fx, "loss", 1)[0];
	const double *logits_ref = fixture_f64(fx, "logits", (size_t)(M * cfg.vocab));

	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			inputs[b * T + t] = tokens[b * (T + 1) + t];
			targets[b * T + t] = tokens[b * (T + 1) + t + 1];
		}
	model_init(&tp, &cfg, &layout);
	model_init(&one, &cfg, NULL);
	for (int i = 0; i < tp.params.count; i++) {
		const struct param_desc *d = &tp.params.desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		take_slice(param_data(&tp.params, i), &d->slice, fixture_f32(fx, name, 0), false);
	}
	for (int i = 0; i < one.params.count; i++) {
		const struct param_desc *d = &one.params.desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		memcpy(param_data(&one.params, i), fixture_f32(fx, name, d->numel),
		       sizeof(float) * d->numel);
	}
	loss_tp = model_forward(&tp, inputs, targets);
	loss_one = model_forward(&one, inputs, targets);
	snprintf(label, sizeof(label), "TP=%d rank %d logits vs PyTorch", size, rank);
	{
		double scale = 0;

		for (int64_t i = 0; i < M * cfg.vocab; i++)
			scale = fmax(scale, fabs(logits_ref[i]));
		EXPECT_CLOSE(tp.micro[0].logits, logits_ref, M * cfg.vocab, 1e-4, 1e-4 * scale, label);
	}
	snprintf(label, sizeof(label), "TP=%d rank %d loss vs PyTorch", size, rank);
	EXPECT_CLOSE(&loss_tp, &loss_ref, 1, 1e-5, 0, label);
	snprintf(label, sizeof(label), "TP=%d rank %d loss vs single rank", size, rank);
	EXPECT_CLOSE(&loss_tp, &loss_one, 1, 1e-6, 0, label);

	param_set_zero_grad(&tp.params);
	param_set_zero_grad(&one.params);
	model_backward(&tp, 1.0f);
	model_backward(&one, 1.0f);
	for (int i = 0; i < tp.params.count; i++) {
		const struct param_desc *d = &tp.params.desc[i];
		const float *got = param_grad(&tp.params, i);
		double scale;

		snprintf(name, sizeof(name), "grad/%s", d->slice.name);
		take_slice(want, &d->slice, fixture_f64(fx, name, 0), true);
		scale = max_abs(want, d->numel);
		snprintf(label, sizeof(label), "TP=%d rank %d d%s slice vs PyTorch", size, rank,
			 d->slice.name);
		EXPECT_CLOSE(got, want, d->numel, 1e-4, 1e-4 * scale, label);
		take_slice(want, &d->slice,
			   param_grad(&one.params, param_set_find(&one.params, d->slice.name)),
			   false);
		snprintf(label, sizeof(label), "TP=%d rank %d d%s slice vs single rank", size, rank,
			 d->slice.name);
		EXPECT_CLOSE(got, want, d->numel, 1e-5, 1e-5 * scale, label);
	}
	/* The clip norm counts each element once across the group. */
	{
		double n_tp = model_grad_sumsq(&tp), n_one = model_grad_sumsq(&one);

		EXPECT_TRUE(fabs(n_tp - n_one) <= 1e-5 * n_one,
			    "rank %d: gradient sum of squares %.9g at TP=%d, %.9g on one rank", rank,
			    n_tp, size, n_one);
	}
	model_free(&tp);
	model_free(&one);
	free(inputs), free(targets), free(want);
	fixture_free(fx);
}

int main(int argc, char **argv)
{
	int rank, size, failed;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	check_init_slices(rank, size);
	check_fixture(rank, size);
	failed = test_failed_count;
	MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank != 0)
		test_failed_count = 0;
	else
		test_failed_count = failed;
	MPI_Finalize();
	return rank == 0 ? test_finish() : (failed ? 1 : 0);
}
