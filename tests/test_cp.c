/*
 * Context parallelism, gradient by gradient (run under mpiexec -n CP, CP = 2 or 4;
 * the context-parallel group is the world). Every rank builds the tiny model with
 * T = 64, C = 8 (pieces of 32 or 16 tokens: several chunks) and, on one rank of its
 * own, the same model over whole sequences. Each rank runs forward and backward of
 * its piece of the same two sequences, with the loss scaled by 1/CP; then:
 *  - the mean of the pieces' losses is the whole sequences' loss (1e-6 relative);
 *  - every parameter's gradient, summed over the pieces (what the trainer's
 *    reduction does), is the single rank's, tensor by tensor (1e-5 of the tensor's
 *    largest magnitude: float32 against float32, other summation orders).
 * Then again with H = 8 heads (decays up to 1 - 2^-12: the longest memory).
 */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/grid.h"
#include "tests/harness_mpi.h"
#include "trainer/model.h"
#include "trainer/spec.h"

static struct run_spec tiny(int64_t heads)
{
	struct run_spec s;

	spec_defaults(&s, SPEC_TRAIN);
	s.vocab_size = 256;
	s.hidden_size = 64;
	s.num_layers = 2;
	s.num_heads = heads;
	s.ffn_hidden_size = 128;
	s.chunk_size = 8;
	s.seq_length = 64;
	s.micro_batch_size = 2;
	s.seed = 7;
	return s;
}

static double max_abs(const float *x, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

static void check(int64_t heads, int rank, int cp)
{
	const int sizes[GRID_AXES] = {[GRID_TENSOR] = 1, [GRID_CONTEXT] = cp, [GRID_DATA] = 1,
				      [GRID_PIPELINE] = 1};
	struct run_spec s = tiny(heads);
	const int64_t B = s.micro_batch_size, T = s.seq_length, P = T / cp;
	struct grid g;
	struct model *piece, *whole;
	struct param_set *pp, *pw;
	int32_t *in = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
	int32_t *pin = malloc(sizeof(int32_t) * (size_t)(B * P)), *ptg = malloc(sizeof(int32_t) * (size_t)(B * P));
	double loss_piece, loss_whole;
	char label[160];

	for (int64_t i = 0; i < B * T; i++) {
		in[i] = (int32_t)((i * 37 + 11) % 256);
		tg[i] = (int32_t)((i * 53 + 7) % 256);
	}
	for (int64_t b = 0; b < B; b++) {
		memcpy(pin + b * P, in + b * T + rank * P, sizeof(int32_t) * (size_t)P);
		memcpy(ptg + b * P, tg + b * T + rank * P, sizeof(int32_t) * (size_t)P);
	}
	grid_init(&g, sizes);
	piece = model_create(&s, &g, 1);
	whole = model_create(&s, NULL, 1);
	pp = model_params(piece);
	pw = model_params(whole);
	param_set_zero_grad(pp);
	param_set_zero_grad(pw);
	loss_piece = model_forward(piece, pin, ptg);
	model_backward(piece, 1.0f / (float)cp);
	loss_whole = model_forward(whole, in, tg);
	model_backward(whole, 1.0f);
	MPI_Allreduce(MPI_IN_PLACE, &loss_piece, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
	loss_piece /= cp;
	snprintf(label, sizeof(label), "CP=%d, H=%lld, rank %d: mean of the pieces' losses", cp,
		 (long long)heads, rank);
	EXPECT_CLOSE(&loss_piece, &loss_whole, 1, 1e-6, 0, label);
	MPI_Allreduce(MPI_IN_PLACE, pp->grad, (int)pp->total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	for (int i = 0; i < pp->count; i++) {
		const struct param_desc *d = &pp->desc[i];
		const float *want = param_grad(pw, param_set_find(pw, d->slice.name));
		double scale = max_abs(want, d->numel);

		snprintf(label, sizeof(label), "CP=%d, H=%lld, rank %d: d%s summed over the pieces",
			 cp, (long long)heads, rank, d->slice.name);
		EXPECT_CLOSE(param_grad(pp, i), want, d->numel, 1e-5, 1e-5 * scale, label);
	}
	model_destroy(piece);
	model_destroy(whole);
	grid_free(&g);
	free(in), free(tg), free(pin), free(ptg);
}

int main(int argc, char **argv)
{
	int rank, size;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	check(4, rank, size);
	check(8, rank, size);
	return test_finish_mpi();
}
