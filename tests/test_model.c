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

static struct model_config config_of(const struct fixture *fx)
{
	const int32_t *c = fixture_i32(fx, "config", 8);
	struct model_config cfg = {
		.vocab = c[0], .hidden = c[1], .layers = c[2], .heads = c[3],
		.ffn_hidden = c[4], .chunk = c[5], .seq_len = c[6], .micro_batch = c[7],
		.seed = 1,
	};
	return cfg;
}

static void check_fixture(const char *file, enum retention_form form, const char *form_name)
{
	struct fixture *fx = fixture_load_named(file);
	struct model_config cfg = config_of(fx);
	const int64_t T = cfg.seq_len, B = cfg.micro_batch, M = B * T;
	const int32_t *tokens = fixture_i32(fx, "tokens", (size_t)(B * (T + 1)));
	int32_t *inputs = malloc(sizeof(int32_t) * M), *targets = malloc(sizeof(int32_t) * M);
	struct model m;
	char label[256], name[128];
	float loss;
	double loss_ref;
	const double *want;

	model_init(&m, &cfg, NULL);
	m.form = form;
	for (int i = 0; i < m.params.count; i++) {
		const struct param_desc *d = &m.params.desc[i];

		snprintf(name, sizeof(name), "param/%s", d->slice.name);
		memcpy(param_data(&m.params, i), fixture_f32(fx, name, d->numel),
		       sizeof(float) * d->numel);
	}
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			inputs[b * T + t] = tokens[b * (T + 1) + t];
			targets[b * T + t] = tokens[b * (T + 1) + t + 1];
		}

	loss = model_forward(&m, inputs, targets);
	loss_ref = fixture_f64(fx, "loss", 1)[0];
	snprintf(label, sizeof(label), "%s %s logits", file, form_name);
	want = fixture_f64(fx, "logits", (size_t)(M * cfg.vocab));
	EXPECT_CLOSE(m.micro[0].logits, want, M * cfg.vocab, FIXTURE_RTOL,
		     atol_of(want, (size_t)(M * cfg.vocab)), label);
	snprintf(label, sizeof(label), "%s %s loss", file, form_name);
	EXPECT_CLOSE(&loss, &loss_ref, 1, 1e-5, 0, label);

	param_set_zero_grad(&m.params);
	model_backward(&m, 1.0f);
	for (int i = 0; i < m.params.count; i++) {
		const struct param_desc *d = &m.params.desc[i];

		snprintf(name, sizeof(name), "grad/%s", d->slice.name);
		snprintf(label, sizeof(label), "%s %s d%s", file, form_name, d->slice.name);
		want = fixture_f64(fx, name, d->numel);
		EXPECT_CLOSE(param_grad(&m.params, i), want, d->numel, FIXTURE_RTOL,
			     atol_of(want, d->numel), label);
	}
	model_free(&m);
	free(inputs);
	free(targets);
	fixture_free(fx);
}

static struct model_config tiny(uint64_t seed)
{
	struct model_config cfg = {
		.vocab = 256, .hidden = 64, .layers = 2, .heads = 4, .ffn_hidden = 128,
		.chunk = 8, .seq_len = 32, .micro_batch = 2, .seed = seed,
	};
	return cfg;
}

static void check_init(void)
{
	struct model_config cfg = tiny(1234);
	struct model a, b, c;
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
	model_init(&a, &cfg, NULL);
	model_init(&b, &cfg, NULL);
	EXPECT_TRUE(memcmp(a.params.data, b.params.data, sizeof(float) * a.params.total) == 0,
		    "the same seed must give bit-identical parameters");
	loss_a = model_forward(&a, tokens, next);
	loss_b = model_forward(&b, tokens, next);
	EXPECT_TRUE(memcmp(&loss_a, &loss_b, sizeof(float)) == 0,
		    "the same seed must give the same loss to the bit (%.9g vs %.9g)", loss_a,
		    loss_b);
	/* ln(256) = 5.545: an untrained model is near uniform. */
	EXPECT_TRUE(loss_a > 5.3f && loss_a < 5.8f, "initial loss %.4f is not near ln(256)",
		    loss_a);
	cfg.seed = 1235;
	model_init(&c, &cfg, NULL);
	EXPECT_TRUE(memcmp(a.params.data, c.params.data, sizeof(float) * a.params.total) != 0,
		    "another seed must give other parameters");

	/* The embedding is N(0, 0.02): 16384 samples put the std within 2%. */
	e = a.w.embedding;
	for (int64_t i = 0; i < cfg.vocab * cfg.hidden; i++) {
		sum += e[i];
		sumsq += (double)e[i] * e[i];
	}
	sum /= (double)(cfg.vocab * cfg.hidden);
	sumsq = sqrt(sumsq / (double)(cfg.vocab * cfg.hidden) - sum * sum);
	EXPECT_TRUE(fabs(sumsq - 0.02) < 0.0004 && fabs(sum) < 0.0005,
		    "embedding mean %.5f std %.5f, want 0 and 0.02", sum, sumsq);
	/* Wq is Xavier-uniform with gain 2^-2.5: |w| <= bound and the max is near it. */
	wq = param_set_find(&a.params, "layers/1/retention/wq");
	d = &a.params.desc[wq];
	bound = pow(2.0, -2.5) * sqrt(6.0 / (double)(cfg.hidden + cfg.hidden));
	for (size_t i = 0; i < d->numel; i++)
		maxabs = fmax(maxabs, fabs(param_data(&a.params, wq)[i]));
	EXPECT_TRUE(maxabs <= bound && maxabs > 0.99 * bound,
		    "wq max |w| %.5f, Xavier bound %.5f", maxabs, bound);
	model_free(&a);
	model_free(&b);
	model_free(&c);
}

/*
 * Streaming: a sequence of 2T tokens scored in one window of 2T equals two pieces
 * of T with the retention state carried over (chunkwise and recurrent forms), and
 * differs from two independent windows (the carried state matters).
 */
static void check_streaming(void)
{
	struct model_config whole_cfg = tiny(5), piece_cfg = tiny(5);
	struct model whole, piece;
	const int64_t T = 32, B = 2;
	int32_t in[2 * 2 * 32], tg[2 * 2 * 32], pin[2 * 32], ptg[2 * 32];
	float *want, *got;
	enum retention_form forms[2] = {RETENTION_CHUNKWISE, RETENTION_RECURRENT};

	whole_cfg.seq_len = 2 * T;
	model_init(&whole, &whole_cfg, NULL);
	model_init(&piece, &piece_cfg, NULL);
	for (int i = 0; i < 2 * 2 * 32; i++) {
		in[i] = (i * 29 + 3) % 256;
		tg[i] = (i * 31 + 5) % 256;
	}
	model_forward(&whole, in, tg);
	want = whole.micro[0].logits;
	got = malloc(sizeof(float) * (size_t)(B * 2 * T * 256));
	for (int f = 0; f < 2; f++) {
		piece.form = forms[f];
		model_stream_begin(&piece);
		for (int half = 0; half < 2; half++) {
			for (int64_t b = 0; b < B; b++)
				for (int64_t t = 0; t < T; t++) {
					pin[b * T + t] = in[b * 2 * T + half * T + t];
					ptg[b * T + t] = tg[b * 2 * T + half * T + t];
				}
			model_set_first_position(&piece, half * T);
			model_forward(&piece, pin, ptg);
			for (int64_t b = 0; b < B; b++)
				memcpy(got + (b * 2 * T + half * T) * 256,
				       piece.micro[0].logits + b * T * 256, sizeof(float) * T * 256);
		}
		model_stream_end(&piece);
		EXPECT_CLOSE(got, want, B * 2 * T * 256, 1e-5, 1e-5,
			     f ? "recurrent stream of 2 pieces = one window of 2T"
			       : "chunkwise stream of 2 pieces = one window of 2T");
	}
	/* Generation's shape: T = 1, one token per forward, the state carried. */
	{
		struct model_config one_cfg = tiny(5);
		struct model one;

		one_cfg.seq_len = 1;
		one_cfg.chunk = 1;
		model_init(&one, &one_cfg, NULL);
		one.form = RETENTION_RECURRENT;
		model_stream_begin(&one);
		for (int64_t t = 0; t < 2 * T; t++) {
			int32_t tok[2] = {in[t], in[2 * T + t]}, nxt[2] = {tg[t], tg[2 * T + t]};

			model_set_first_position(&one, t);
			model_forward(&one, tok, nxt);
			for (int64_t b = 0; b < B; b++)
				memcpy(got + (b * 2 * T + t) * 256, one.micro[0].logits + b * 256,
				       sizeof(float) * 256);
		}
		model_stream_end(&one);
		EXPECT_CLOSE(got, want, B * 2 * T * 256, 1e-5, 1e-5,
			     "token by token (T = 1, recurrent) = one window of 2T");
		model_free(&one);
	}
	/* Without the carried state the second piece must differ. */
	piece.form = RETENTION_CHUNKWISE;
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++) {
			pin[b * T + t] = in[b * 2 * T + T + t];
			ptg[b * T + t] = tg[b * 2 * T + T + t];
		}
	model_forward(&piece, pin, ptg);
	{
		double diff = 0;

		for (int64_t t = 0; t < T * 256; t++)
			diff = fmax(diff, fabs(piece.micro[0].logits[t] - want[T * 256 + t]));
		EXPECT_TRUE(diff > 1e-3, "a fresh window scored like a continued one (diff %g)",
			    diff);
	}
	free(got);
	model_free(&whole);
	model_free(&piece);
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
