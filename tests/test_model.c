/*
 * The whole single-rank model against the independent PyTorch reference
 * (tests/fixtures/make_fixtures.py, float64): logits, loss and every parameter
 * gradient of the tiny configuration, through the chunkwise and the parallel
 * retention forms; then the initialisation's reproducibility and statistics.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fixture.h"
#include "tests/harness.h"
#include "tests/model_spec.h"
#include "trainer/model.h"

/*
 * float32 through two blocks against a float64 reference: each value within 1e-4
 * relative, where values near zero are judged against 1e-4 of the tensor's largest
 * magnitude (float32 cancellation makes a tiny entry's own relative error
 * meaningless).
 */
#define FIXTURE_RTOL 1e-4

static double atol_of(const double *want, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(want[i]));
	return FIXTURE_RTOL * m;
}

static struct run_spec config_of(const struct fixture *fx)
{
	return test_model_spec(fixture_i32(fx, "config", 8), 1);
}

static void check_fixture(const char *file, enum retention_form form, const char *form_name)
{
	struct fixture *fx = fixture_load_named(file);
	struct run_spec cfg = config_of(fx);
	const int64_t T = cfg.seq_length, B = cfg.micro_batch_size, M = B * T;
	const int64_t V = cfg.vocab_size;
	const int32_t *tokens = fixture_i32(fx, "tokens", (size_t)(B * (T + 1)));
	int32_t *inputs = malloc(sizeof(int32_t) * M), *targets = malloc(sizeof(int32_t) * M);
	struct model *m = model_create(&cfg, NULL, 1);
	struct param_set *p = model_params(m);
	char label[256], name[128];
	float loss;
	double loss_ref;
	const double *want;

	model_set_form(m, form);
	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		memcpy(param_data(p, i), fixture_f32(fx, name, d->numel), sizeof(float) * d->numel);
	}
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			inputs[b * T + t] = tokens[b * (T + 1) + t];
			targets[b * T + t] = tokens[b * (T + 1) + t + 1];
		}

	loss = model_forward(m, inputs, targets);
	loss_ref = fixture_f64(fx, "loss", 1)[0];
	snprintf(label, sizeof(label), "%s %s logits", file, form_name);
	want = fixture_f64(fx, "logits", (size_t)(M * V));
	EXPECT_CLOSE(model_logits(m, 0), want, M * V, FIXTURE_RTOL, atol_of(want, (size_t)(M * V)),
		     label);
	snprintf(label, sizeof(label), "%s %s loss", file, form_name);
	EXPECT_CLOSE(&loss, &loss_ref, 1, 1e-5, 0, label);

	param_set_zero_grad(p);
	model_backward(m, 1.0f);
	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];

		snprintf(name, sizeof(name), "grad/%s", d->slice.name);
		snprintf(label, sizeof(label), "%s %s d%s", file, form_name, d->slice.name);
		want = fixture_f64(fx, name, d->numel);
		EXPECT_CLOSE(param_grad(p, i), want, d->numel, FIXTURE_RTOL,
			     atol_of(want, d->numel), label);
	}
	model_destroy(m);
	free(inputs);
	free(targets);
	fixture_free(fx);
}

static struct run_spec tiny(int64_t seed)
{
	return test_model_spec(test_tiny_config, seed);
}

static void check_init(void)
{
	struct run_spec cfg = tiny(1234);
	struct model *a, *b, *c;
	struct param_set *pa, *pb;
	int32_t tokens[64], next[64];
	float loss_a, loss_b;
	double sum = 0, sumsq = 0, bound, maxabs = 0;
	int wq;
	const struct param_desc *d;
	const float *e;

	for (int i = 0; i < 64; i++) {
		tokens[i] = (i * 37 + 11) % 256;
		next[i] = (i * 53 + 7) % 256;
	}
	a = model_create(&cfg, NULL, 1);
	b = model_create(&cfg, NULL, 1);
	pa = model_params(a);
	pb = model_params(b);
	EXPECT_TRUE(memcmp(pa->data, pb->data, sizeof(float) * pa->total) == 0,
		    "the same seed must give bit-identical parameters");
	loss_a = model_forward(a, tokens, next);
	loss_b = model_forward(b, tokens, next);
	EXPECT_TRUE(memcmp(&loss_a, &loss_b, sizeof(float)) == 0,
		    "the same seed must give the same loss to the bit (%.9g vs %.9g)", loss_a,
		    loss_b);
	/* ln(256) = 5.545: an untrained model is near uniform. */
	EXPECT_TRUE(loss_a > 5.3f && loss_a < 5.8f, "initial loss %.4f is not near ln(256)",
		    loss_a);
	cfg.seed = 1235;
	c = model_create(&cfg, NULL, 1);
	EXPECT_TRUE(memcmp(pa->data, model_params(c)->data, sizeof(float) * pa->total) != 0,
		    "another seed must give other parameters");

	/* The embedding is N(0, 0.02): 16384 samples put the std within 2%. */
	e = param_data(pa, param_set_find(pa, "embedding"));
	for (int64_t i = 0; i < cfg.vocab_size * cfg.hidden_size; i++) {
		sum += e[i];
		sumsq += (double)e[i] * e[i];
	}
	sum /= (double)(cfg.vocab_size * cfg.hidden_size);
	sumsq = sqrt(sumsq / (double)(cfg.vocab_size * cfg.hidden_size) - sum * sum);
	EXPECT_TRUE(fabs(sumsq - 0.02) < 0.0004 && fabs(sum) < 0.0005,
		    "embedding mean %.5f std %.5f, want 0 and 0.02", sum, sumsq);
	/* Wq is Xavier-uniform with gain 2^-2.5: |w| <= bound and the max is near it. */
	wq = param_set_find(pa, "layers/1/retention/wq");
	d = &pa->desc[wq];
	bound = pow(2.0, -2.5) * sqrt(6.0 / (double)(cfg.hidden_size + cfg.hidden_size));
	for (size_t i = 0; i < d->numel; i++)
		maxabs = fmax(maxabs, fabs(param_data(pa, wq)[i]));
	EXPECT_TRUE(maxabs <= bound && maxabs > 0.99 * bound,
		    "wq max |w| %.5f, Xavier bound %.5f", maxabs, bound);
	model_destroy(a);
	model_destroy(b);
	model_destroy(c);
}

/*
 * Streaming: a sequence of 2T tokens scored in one window of 2T equals two pieces
 * of T with the retention state carried over (chunkwise and recurrent forms), and
 * differs from two independent windows (the carried state matters).
 */
static void check_streaming(void)
{
	struct run_spec whole_cfg = tiny(5), piece_cfg = tiny(5);
	struct model *whole, *piece;
	const int64_t T = 32, B = 2;
	int32_t in[2 * 2 * 32], tg[2 * 2 * 32], pin[2 * 32], ptg[2 * 32];
	const float *want;
	float *got;
	enum retention_form forms[2] = {RETENTION_CHUNKWISE, RETENTION_RECURRENT};

	whole_cfg.seq_length = 2 * T;
	whole = model_create(&whole_cfg, NULL, 1);
	piece = model_create(&piece_cfg, NULL, 1);
	for (int i = 0; i < 2 * 2 * 32; i++) {
		in[i] = (i * 29 + 3) % 256;
		tg[i] = (i * 31 + 5) % 256;
	}
	model_forward(whole, in, tg);
	want = model_logits(whole, 0);
	got = malloc(sizeof(float) * (size_t)(B * 2 * T * 256));
	for (int f = 0; f < 2; f++) {
		model_set_form(piece, forms[f]);
		model_stream_begin(piece);
		for (int half = 0; half < 2; half++) {
			for (int64_t b = 0; b < B; b++)
				for (int64_t t = 0; t < T; t++) {
					pin[b * T + t] = in[b * 2 * T + half * T + t];
					ptg[b * T + t] = tg[b * 2 * T + half * T + t];
				}
			model_set_first_position(piece, half * T);
			model_forward(piece, pin, ptg);
			for (int64_t b = 0; b < B; b++)
				memcpy(got + (b * 2 * T + half * T) * 256,
				       model_logits(piece, 0) + b * T * 256, sizeof(float) * T * 256);
		}
		model_stream_end(piece);
		EXPECT_CLOSE(got, want, B * 2 * T * 256, 1e-5, 1e-5,
			     f ? "recurrent stream of 2 pieces = one window of 2T"
			       : "chunkwise stream of 2 pieces = one window of 2T");
	}
	/* Generation's shape: T = 1, one token per forward, the state carried. */
	{
		struct run_spec one_cfg = tiny(5);
		struct model *one;

		one_cfg.seq_length = 1;
		one_cfg.chunk_size = 1;
		one = model_create(&one_cfg, NULL, 1);
		model_set_form(one, RETENTION_RECURRENT);
		model_stream_begin(one);
		for (int64_t t = 0; t < 2 * T; t++) {
			int32_t tok[2] = {in[t], in[2 * T + t]}, nxt[2] = {tg[t], tg[2 * T + t]};

			model_set_first_position(one, t);
			model_forward(one, tok, nxt);
			for (int64_t b = 0; b < B; b++)
				memcpy(got + (b * 2 * T + t) * 256, model_logits(one, 0) + b * 256,
				       sizeof(float) * 256);
		}
		model_stream_end(one);
		EXPECT_CLOSE(got, want, B * 2 * T * 256, 1e-5, 1e-5,
			     "token by token (T = 1, recurrent) = one window of 2T");
		model_destroy(one);
	}
	/* Without the carried state the second piece must differ. */
	model_set_form(piece, RETENTION_CHUNKWISE);
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			pin[b * T + t] = in[b * 2 * T + T + t];
			ptg[b * T + t] = tg[b * 2 * T + T + t];
		}
	model_forward(piece, pin, ptg);
	{
		double diff = 0;

		for (int64_t t = 0; t < T * 256; t++)
			diff = fmax(diff, fabs(model_logits(piece, 0)[t] - want[T * 256 + t]));
		EXPECT_TRUE(diff > 1e-3, "a fresh window scored like a continued one (diff %g)",
			    diff);
	}
	free(got);
	model_destroy(whole);
	model_destroy(piece);
}

int main(void)
{
	check_fixture("tiny_model.bin", RETENTION_CHUNKWISE, "chunkwise");
	check_fixture("tiny_model.bin", RETENTION_PARALLEL, "parallel");
	check_fixture("tiny_model_t40.bin", RETENTION_CHUNKWISE, "chunkwise");
	check_init();
	check_streaming();
	return test_finish();
}
