/*
 * The whole model with bf16 matmuls (--bf16), on one rank:
 *
 *   - against the float64 PyTorch reference of test_model (tiny_model.bin): the
 *     loss, and every parameter gradient, no further from the reference than a
 *     fixed multiple of what float32 arithmetic on weights rounded to bf16 gets.
 *     That yardstick is the error bf16 cannot avoid (a weight is one of the two
 *     operands it rounds); a product that read a stale or wrong bf16 copy would
 *     be off by the size of the gradient itself, not by a multiple of it.
 *   - two micro-batches in flight (forward, forward, backward, backward, as a
 *     pipeline stage runs them) give bit-identical gradients to one at a time:
 *     the bf16 copies kept from forward for backward belong to their own
 *     micro-batch, with activations kept and recomputed.
 *
 * Skipped (exit 77) on a CPU without AVX512-BF16.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fixture.h"
#include "tests/harness.h"
#include "tests/model_spec.h"
#include "trainer/kernels/bf16.h"
#include "trainer/model.h"

#define SKIP_STATUS 77

/*
 * bf16's errors against float32's on bf16-rounded weights, at most: the gradient
 * over all parameters, each tensor's gradient, the loss. Measured on both fixtures:
 * 0.99-1.02 times, 1.22-1.40 times at most, 1.2-1.7 times.
 */
#define BF16_GRAD_FACTOR 2.0
#define BF16_TENSOR_FACTOR 3.0
#define BF16_LOSS_FACTOR 4.0

struct batch {
	int32_t *inputs, *targets;
};

static void load_params(struct model *m, const struct fixture *fx, bool round_to_bf16)
{
	struct param_set *p = model_params(m);
	char name[128];

	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];
		float *w = param_data(p, i);

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		memcpy(w, fixture_f32(fx, name, d->numel), sizeof(float) * d->numel);
		for (size_t j = 0; round_to_bf16 && j < d->numel; j++)
			w[j] = bf16_to_f32_one(bf16_from_f32_one(w[j]));
	}
}

/* ||got - want|| and ||want|| over n values. */
static void distance(const float *got, const double *want, size_t n, double *err, double *norm)
{
	double e = 0, w = 0;

	for (size_t i = 0; i < n; i++) {
		e += (got[i] - want[i]) * (got[i] - want[i]);
		w += want[i] * want[i];
	}
	*err = e;
	*norm = w;
}

/* The loss, and the gradients into grad (param_set total floats). */
static float loss_and_grad(struct model *m, const struct batch *b, float *grad)
{
	struct param_set *p = model_params(m);
	float loss;

	param_set_zero_grad(p);
	loss = model_forward(m, b->inputs, b->targets);
	model_backward(m, 1.0f);
	memcpy(grad, p->grad, sizeof(float) * p->total);
	return loss;
}

static void check_reference(const char *file)
{
	struct fixture *fx = fixture_load_named(file);
	struct run_spec cfg = test_model_spec(fixture_i32(fx, "config", 8), 1);
	const int64_t T = cfg.seq_length, B = cfg.micro_batch_size, M = B * T;
	const int32_t *tokens = fixture_i32(fx, "tokens", (size_t)(B * (T + 1)));
	struct batch b = {malloc(sizeof(int32_t) * M), malloc(sizeof(int32_t) * M)};
	struct model *m = model_create(&cfg, NULL, 1);
	struct param_set *p = model_params(m);
	float *g16 = malloc(sizeof(float) * p->total), *gr = malloc(sizeof(float) * p->total);
	const double loss_ref = fixture_f64(fx, "loss", 1)[0];
	double e16 = 0, er = 0, norm = 0, worst = 0;
	const char *worst_name = "";
	char err[256], name[128];
	float loss16, loss_rounded;

	for (int64_t r = 0; r < B; r++)
		for (int64_t t = 0; t < T; t++) {
			b.inputs[r * T + t] = tokens[r * (T + 1) + t];
			b.targets[r * T + t] = tokens[r * (T + 1) + t + 1];
		}
	load_params(m, fx, true);
	loss_rounded = loss_and_grad(m, &b, gr);
	load_params(m, fx, false);
	EXPECT_TRUE(model_set_bf16(m, true, err, sizeof(err)) == 0, "model_set_bf16: %s", err);
	loss16 = loss_and_grad(m, &b, g16);

	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];
		double t16, tr, tn, ratio;

		snprintf(name, sizeof(name), "grad/%s", d->slice.name);
		const double *want = fixture_f64(fx, name, d->numel);
		distance(g16 + d->offset, want, d->numel, &t16, &tn);
		distance(gr + d->offset, want, d->numel, &tr, &tn);
		e16 += t16;
		er += tr;
		norm += tn;
		ratio = sqrt(t16 / tr);
		if (ratio > worst) {
			worst = ratio;
			worst_name = d->slice.name;
		}
		EXPECT_TRUE(ratio <= BF16_TENSOR_FACTOR,
			    "%s d%s: bf16 error %.3g, %.1f times float32's on rounded weights "
			    "(%.3g); at most %.0f", file, d->slice.name, sqrt(t16 / tn), ratio,
			    sqrt(tr / tn), BF16_TENSOR_FACTOR);
	}
	e16 = sqrt(e16 / norm);
	er = sqrt(er / norm);
	printf("%s: gradient error against float64, bf16 matmuls %.3g, float32 on bf16 weights "
	       "%.3g (%.2f times; per tensor at most %.2f times, d%s); loss %+.2e / %+.2e "
	       "relative\n", file, e16, er, e16 / er, worst, worst_name,
	       (loss16 - loss_ref) / loss_ref, (loss_rounded - loss_ref) / loss_ref);
	EXPECT_TRUE(e16 <= BF16_GRAD_FACTOR * er,
		    "%s: bf16 gradient error %.3g is more than %.0f times float32's on bf16 "
		    "weights (%.3g)", file, e16, BF16_GRAD_FACTOR, er);
	EXPECT_TRUE(fabs(loss16 - loss_ref) <= BF16_LOSS_FACTOR * fabs(loss_rounded - loss_ref),
		    "%s: bf16 loss %.7f, reference %.7f, float32 on bf16 weights %.7f", file,
		    loss16, loss_ref, loss_rounded);
	model_destroy(m);
	free(g16), free(gr), free(b.inputs), free(b.targets);
	fixture_free(fx);
}

/* test_model's tiny configuration, initialised from the seed. */
static struct run_spec tiny_spec(bool recompute)
{
	struct run_spec s = test_model_spec(test_tiny_config, 99);

	s.recompute_activations = recompute;
	return s;
}

/* Forward A, forward B, backward A, backward B against A then B one at a time. */
static void check_in_flight(bool recompute)
{
	struct run_spec cfg = tiny_spec(recompute);
	const int64_t M = cfg.micro_batch_size * cfg.seq_length;
	struct batch mb[2];
	struct model *one, *two;
	char err[256];

	for (int k = 0; k < 2; k++) {
		mb[k].inputs = malloc(sizeof(int32_t) * M);
		mb[k].targets = malloc(sizeof(int32_t) * M);
		for (int64_t i = 0; i < M; i++) {
			mb[k].inputs[i] = (int32_t)((i * (31 + 6 * k) + 5 * k + 3) % 256);
			mb[k].targets[i] = (int32_t)((i * (17 + 4 * k) + 11) % 256);
		}
	}
	one = model_create(&cfg, NULL, 1);
	two = model_create(&cfg, NULL, 2);
	EXPECT_TRUE(model_set_bf16(one, true, err, sizeof(err)) == 0 &&
			    model_set_bf16(two, true, err, sizeof(err)) == 0,
		    "model_set_bf16: %s", err);
	param_set_zero_grad(model_params(one));
	for (int k = 0; k < 2; k++) {
		model_forward_micro(one, 0, 0, mb[k].inputs, mb[k].targets);
		model_backward_micro(one, 0, 0, 0.5f);
	}
	param_set_zero_grad(model_params(two));
	for (int k = 0; k < 2; k++)
		model_forward_micro(two, 0, k, mb[k].inputs, mb[k].targets);
	for (int k = 0; k < 2; k++)
		model_backward_micro(two, 0, k, 0.5f);
	EXPECT_TRUE(memcmp(model_params(one)->grad, model_params(two)->grad,
			   sizeof(float) * model_params(one)->total) == 0,
		    "bf16, recompute %s: two micro-batches in flight must give the gradients "
		    "of one at a time to the bit", recompute ? "on" : "off");
	model_destroy(one);
	model_destroy(two);
	for (int k = 0; k < 2; k++)
		free(mb[k].inputs), free(mb[k].targets);
}

/*
 * The float32 outputs that bf16 writes as their copy alone leave the count of the
 * activations when bf16 comes on, and come back when it goes off: per layer LN1's
 * and LN2's (M x d), the swish gate's (M x 2d), V's (M x 2d) and gelu's (M x f),
 * then the final LayerNorm's (M x d), backward's gate gradient and retention's
 * output gradient dO (M x 2d each; gelu's gradient goes to its copy alone too, but
 * over the W2 product's output, which is still written).
 * The bf16 copies kept for backward stay counted once reserved.
 */
static void check_copied_outputs(void)
{
	struct run_spec cfg = tiny_spec(false);
	const double M = (double)(cfg.micro_batch_size * cfg.seq_length);
	const double d = (double)cfg.hidden_size, f = (double)cfg.ffn_hidden_size;
	const double per_layer = M * (2 * d + 2 * d + 2 * d + f);
	const double copied =
		sizeof(float) * ((double)cfg.num_layers * per_layer + M * d + 2 * (M * 2 * d));
	struct model *m = model_create(&cfg, NULL, 1);
	double f32, on, off;
	char err[256];

	f32 = (double)model_activation_bytes(m);
	EXPECT_TRUE(model_set_bf16(m, true, err, sizeof(err)) == 0, "model_set_bf16: %s", err);
	on = (double)model_activation_bytes(m);
	EXPECT_TRUE(model_set_bf16(m, false, err, sizeof(err)) == 0, "model_set_bf16: %s", err);
	off = (double)model_activation_bytes(m);
	EXPECT_TRUE(off - on == copied && on < f32,
		    "activations: %.0f bytes on float32, %.0f on bf16, %.0f back on float32; "
		    "the copied outputs are %.0f",
		    f32, on, off, copied);
	model_destroy(m);
}

int main(void)
{
	struct run_spec cfg = tiny_spec(false);
	struct model *probe = model_create(&cfg, NULL, 1);
	char err[256];

	if (model_set_bf16(probe, true, err, sizeof(err))) {
		printf("skip: %s\n", err);
		model_destroy(probe);
		return SKIP_STATUS;
	}
	model_destroy(probe);
	check_reference("tiny_model.bin");
	check_reference("tiny_model_t40.bin");
	check_in_flight(false);
	check_in_flight(true);
	check_copied_outputs();
	return test_finish();
}
