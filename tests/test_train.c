/*
 * The training loop's pure parts: AdamW against a float64 reference of the
 * PyTorch update (decoupled decay on the tensors marked for it only), the
 * learning-rate schedule at known points, gradient clipping helpers, and the flag
 * and config-file parser.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rng.h"
#include "tests/harness.h"
#include "trainer/spec.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"

static void check_adamw(void)
{
	enum { STEPS = 5 };
	struct param_set p;
	struct adamw opt;
	const struct adamw_config cfg = {0.9, 0.98, 1e-8, 0.05};
	const double lrs[STEPS] = {1e-3, 2e-3, 3e-3, 2e-3, 1e-3};
	double *w, *m, *v;
	size_t n;

	param_set_init(&p);
	param_set_add(&p, "matrix", 2, 7, 5, -1, 0, 0, PARAM_INIT_XAVIER, 1.0, true);
	param_set_add(&p, "gain", 1, 9, 1, -1, 0, 0, PARAM_INIT_ONE, 0.0, false);
	param_set_alloc(&p);
	param_set_init_values(&p, 3);
	adamw_init(&opt, &cfg, &p, NULL, 0);
	n = p.total;
	w = calloc(n, sizeof(double));
	m = calloc(n, sizeof(double));
	v = calloc(n, sizeof(double));
	for (size_t i = 0; i < n; i++)
		w[i] = p.data[i];
	for (int t = 1; t <= STEPS; t++) {
		for (size_t i = 0; i < n; i++)
			p.grad[i] = (float)(rng_uniform(9, (uint64_t)t, i) - 0.5) * 0.1f;
		adamw_step(&opt, &p, lrs[t - 1]);
		/* float64 reference: torch.optim.AdamW's update. */
		for (int k = 0; k < p.count; k++) {
			const struct param_desc *d = &p.desc[k];

			for (size_t j = d->offset; j < d->offset + d->numel; j++) {
				double g = p.grad[j], lr = lrs[t - 1];

				if (d->weight_decay)
					w[j] *= 1.0 - lr * cfg.weight_decay;
				m[j] = cfg.beta1 * m[j] + (1 - cfg.beta1) * g;
				v[j] = cfg.beta2 * v[j] + (1 - cfg.beta2) * g * g;
				w[j] -= lr * (m[j] / (1 - pow(cfg.beta1, t))) /
					(sqrt(v[j] / (1 - pow(cfg.beta2, t))) + cfg.eps);
			}
		}
	}
	EXPECT_CLOSE(p.data, w, n, 1e-6, 1e-7, "AdamW 5 steps vs float64 reference");
	EXPECT_TRUE(opt.step == STEPS, "step counter %lld", (long long)opt.step);
	/* Clipping helpers, over the tensors' values (the padding between them stays 0). */
	memset(p.grad, 0, sizeof(float) * n);
	for (int k = 0; k < p.count; k++)
		for (size_t j = 0; j < p.desc[k].numel; j++)
			param_grad(&p, k)[j] = 0.5f;
	EXPECT_TRUE(fabs(grad_sumsq_local(&p) - 0.25 * (35 + 9)) < 1e-9, "sumsq %.9g",
		    grad_sumsq_local(&p));
	grad_scale(&p, 2.0f);
	EXPECT_TRUE(p.grad[0] == 1.0f && grad_all_finite(&p), "scaled grad %g", p.grad[0]);
	p.grad[3] = NAN;
	EXPECT_TRUE(!grad_all_finite(&p), "a NaN gradient must be seen");
	adamw_free(&opt);
	param_set_free(&p);
	free(w), free(m), free(v);
}

/* With a zero gradient from a fresh state only the decay moves a parameter, and
 * only on tensors marked for it. */
static void check_decay_only_on_matrices(void)
{
	struct param_set p;
	struct adamw opt;
	const struct adamw_config cfg = {0.9, 0.98, 1e-8, 0.05};
	float matrix0, gain0;

	param_set_init(&p);
	param_set_add(&p, "matrix", 2, 3, 3, -1, 0, 0, PARAM_INIT_XAVIER, 1.0, true);
	param_set_add(&p, "gain", 1, 3, 1, -1, 0, 0, PARAM_INIT_ONE, 0.0, false);
	param_set_alloc(&p);
	param_set_init_values(&p, 5);
	adamw_init(&opt, &cfg, &p, NULL, 0);
	matrix0 = param_data(&p, 0)[0];
	gain0 = param_data(&p, 1)[0];
	adamw_step(&opt, &p, 0.5);
	EXPECT_TRUE(param_data(&p, 1)[0] == gain0, "gain moved: %.9g -> %.9g", gain0,
		    param_data(&p, 1)[0]);
	EXPECT_TRUE(fabsf(param_data(&p, 0)[0] - matrix0 * (1.0f - 0.5f * 0.05f)) <
			    1e-7f * fabsf(matrix0),
		    "matrix decay: %.9g -> %.9g", matrix0, param_data(&p, 0)[0]);
	adamw_free(&opt);
	param_set_free(&p);
}

/*
 * A distributed optimizer's shards: adamw_shard_counts cuts a range into parts on
 * row boundaries, near even; AdamW over every part's shard, each with its own
 * moments, updates every parameter exactly as AdamW over the whole block does.
 */
static void check_shards(void)
{
	const struct adamw_config cfg = {0.9, 0.98, 1e-8, 0.05};
	struct param_set whole, part;
	struct adamw opt;

	param_set_init(&whole);
	param_set_add(&whole, "a", 2, 7, 5, -1, 0, 0, PARAM_INIT_XAVIER, 1.0, true);
	param_set_add(&whole, "gain", 1, 9, 1, -1, 0, 0, PARAM_INIT_ONE, 0.0, false);
	param_set_add(&whole, "b", 2, 13, 3, 1, 0, 2, PARAM_INIT_XAVIER, 1.0, true);
	param_set_add(&whole, "c", 2, 2, 40, -1, 0, 0, PARAM_INIT_XAVIER, 1.0, true);
	param_set_alloc(&whole);
	param_set_init_values(&whole, 11);
	for (size_t i = 0; i < whole.total; i++)
		whole.grad[i] = (float)(rng_uniform(4, 1, i) - 0.5);
	part = whole;
	part.data = malloc(sizeof(float) * whole.total);
	memcpy(part.data, whole.data, sizeof(float) * whole.total);
	adamw_init(&opt, &cfg, &whole, NULL, 0);
	adamw_step(&opt, &whole, 1e-2);
	adamw_step(&opt, &whole, 2e-2);
	adamw_free(&opt);
	for (int parts = 1; parts <= 6; parts++) {
		const struct param_range all = {0, whole.total};
		size_t counts[6], at = 0, sum = 0;
		int off_row = 0, uneven = 0;

		param_set_init_values(&part, 11);
		adamw_shard_counts(&part, all, parts, counts);
		for (int k = 0; k < parts; k++) {
			struct param_range own = {at, counts[k]};
			struct adamw shard;

			sum += counts[k];
			/* near even: off by less than the longest row (40) */
			if (fabs((double)counts[k] - (double)whole.total / parts) > 2 * 40)
				uneven++;
			adamw_init(&shard, &cfg, &part, &own, 1);
			for (int i = 0; i < shard.npieces; i++)
				off_row += shard.pieces[i].count !=
					   (size_t)shard.pieces[i].rows *
						   (size_t)part.desc[shard.pieces[i].tensor].slice.shape[1];
			adamw_step(&shard, &part, 1e-2);
			adamw_step(&shard, &part, 2e-2);
			adamw_free(&shard);
			at += counts[k];
		}
		EXPECT_TRUE(sum == whole.total && off_row == 0 && uneven == 0,
			    "%d parts: counts sum to %zu of %zu, %d pieces not whole rows, %d parts "
			    "far from even", parts, sum, whole.total, off_row, uneven);
		EXPECT_TRUE(memcmp(part.data, whole.data, sizeof(float) * whole.total) == 0,
			    "%d parts: sharded AdamW differs from AdamW over the whole block", parts);
	}
	free(part.data);
	param_set_free(&whole);
}

static void check_schedule(void)
{
	struct lr_schedule s = {.lr = 1.0, .min_lr = 0.1, .warmup_iters = 10,
				.decay_iters = 110, .style = LR_DECAY_LINEAR};

	EXPECT_TRUE(fabs(lr_at(&s, 0) - 0.1) < 1e-12, "warm-up step 0: %g", lr_at(&s, 0));
	EXPECT_TRUE(fabs(lr_at(&s, 9) - 1.0) < 1e-12, "warm-up end: %g", lr_at(&s, 9));
	EXPECT_TRUE(fabs(lr_at(&s, 10) - 1.0) < 1e-12, "decay start: %g", lr_at(&s, 10));
	EXPECT_TRUE(fabs(lr_at(&s, 60) - 0.55) < 1e-12, "linear midpoint: %g", lr_at(&s, 60));
	EXPECT_TRUE(fabs(lr_at(&s, 110) - 0.1) < 1e-12, "linear end: %g", lr_at(&s, 110));
	EXPECT_TRUE(fabs(lr_at(&s, 500) - 0.1) < 1e-12, "after the end: %g", lr_at(&s, 500));
	s.style = LR_DECAY_COSINE;
	EXPECT_TRUE(fabs(lr_at(&s, 60) - 0.55) < 1e-12, "cosine midpoint: %g", lr_at(&s, 60));
	EXPECT_TRUE(fabs(lr_at(&s, 35) - (0.1 + 0.45 * (1 + cos(0.78539816339744830962) /* pi/4 */))) < 1e-12,
		    "cosine quarter: %g", lr_at(&s, 35));
	s.style = LR_DECAY_CONSTANT;
	EXPECT_TRUE(lr_at(&s, 100) == 1.0, "constant: %g", lr_at(&s, 100));
}

/* c: zeroed, or holding the previous parse (freed here). */
static int parse(struct run_spec *c, enum spec_program p, char *err, int argc,
		 const char **argv)
{
	spec_free(c);
	return spec_parse(c, p, argc, (char **)argv, err, 512);
}

static void check_config(void)
{
	struct run_spec c = {0};
	char err[512] = "", path[] = "/tmp/rn_test_config.XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	fprintf(f, "# comment\n--hidden-size 128\nnum-layers = 3\n\nlr 0.5  # trailing\n"
		   "data-path /a.bin\n");
	fclose(f);
	{
		const char *argv[] = {"x", "--config", path, "--num-layers", "5", "--data-path",
				      "/b.bin", "/c.bin"};

		EXPECT_TRUE(parse(&c, SPEC_TRAIN, err, 8, argv) == 0, "parse: %s", err);
		EXPECT_TRUE(c.hidden_size == 128 && c.num_layers == 5 && c.lr == 0.5,
			    "file and flags: d=%lld L=%lld lr=%g", (long long)c.hidden_size,
			    (long long)c.num_layers, c.lr);
		EXPECT_TRUE(c.data_path.n == 2 && !strcmp(c.data_path.path[1], "/c.bin"),
			    "the command line's paths win: %d paths", c.data_path.n);
		EXPECT_TRUE(c.ffn_hidden_size == 256 && c.lr_decay_iters == c.train_iters,
			    "derived defaults: f=%lld, decay ends at %lld",
			    (long long)c.ffn_hidden_size, (long long)c.lr_decay_iters);
		EXPECT_TRUE(spec_given(&c, &c.num_layers) && spec_given(&c, &c.lr) &&
				    !spec_given(&c, &c.seed),
			    "given: flags and the file's keys, not the defaults");
		EXPECT_TRUE(spec_validate(&c, 1, err, sizeof(err)) == 0, "validate: %s", err);
		EXPECT_TRUE(spec_validate(&c, 3, err, sizeof(err)) == 0,
			    "3 data-parallel ranks are fine: %s", err);
	}
	{
		const char *argv[] = {"x", "--lr", "1e-3x"};

		EXPECT_TRUE(parse(&c, SPEC_TRAIN, err, 3, argv) != 0 && strstr(err, "--lr: '1e-3x'"),
			    "bad float: %s", err);
	}
	{
		const char *argv[] = {"x", "--min-lr", "-1"};

		EXPECT_TRUE(parse(&c, SPEC_TRAIN, err, 3, argv) != 0 && strstr(err, "out of range"),
			    "negative lr: %s", err);
	}
	{
		const char *argv[] = {"x", "--lr=0.25", "--data-path=/a.bin"};

		EXPECT_TRUE(parse(&c, SPEC_TRAIN, err, 3, argv) == 0 && c.lr == 0.25 &&
				    c.data_path.n == 1,
			    "--flag=value: %s", err);
	}
	{
		/* A comment longer than the line buffer: its tail is not a line. */
		const char *argv[] = {"x", "--config", path, "--data-path", "/b.bin"};

		f = fopen(path, "w");
		fprintf(f, "# ");
		for (int i = 0; i < 5000; i++)
			fputc(i % 100 == 99 ? ' ' : 'x', f);
		fprintf(f, " seed 5\nnum-layers 3\n");
		fclose(f);
		EXPECT_TRUE(parse(&c, SPEC_TRAIN, err, 5, argv) != 0 &&
				    strstr(err, ":1: line longer than"),
			    "long line: %s", err);
	}
	spec_free(&c);
	unlink(path);
}

/* Each program takes its own flags from the one table, with its own defaults. */
static void check_programs(void)
{
	struct run_spec c = {0};
	char err[512] = "";

	{
		const char *argv[] = {"x", "--load", "/ck", "--data", "/a.txt"};

		EXPECT_TRUE(parse(&c, SPEC_EVAL, err, 5, argv) == 0 && c.micro_batch_size == 1 &&
				    !strcmp(c.mode, "windows") && c.iteration == -1,
			    "retnet-eval's defaults: %s", err);
	}
	{
		const char *argv[] = {"x", "--load", "/ck", "--hidden-size", "64"};

		EXPECT_TRUE(parse(&c, SPEC_EVAL, err, 5, argv) != 0 &&
				    strstr(err, "--hidden-size: unknown flag"),
			    "retnet-eval takes no model flags: %s", err);
	}
	{
		const char *argv[] = {"x", "--load", "/ck", "--seed", "7"};

		EXPECT_TRUE(parse(&c, SPEC_GENERATE, err, 5, argv) == 0 && c.sample_seed == 7 &&
				    c.max_new_tokens == 200,
			    "retnet-generate's --seed is the sampling seed: %s", err);
	}
	{
		const char *argv[] = {"x"};

		EXPECT_TRUE(parse(&c, SPEC_BENCH, err, 1, argv) == 0 && c.hidden_size == 512 &&
				    c.seq_length == 2048 && c.micro_batch_size == 4,
			    "retnet-bench-step's default configuration is bench-small: %s", err);
	}
	{
		const char *argv[] = {"x", "--config", "tiny", "--micro-batch-size", "3"};

		EXPECT_TRUE(parse(&c, SPEC_BENCH, err, 5, argv) == 0 && c.hidden_size == 64 &&
				    c.micro_batch_size == 3,
			    "--config tiny, and the command line wins: %s", err);
	}
	{
		const char *argv[] = {"x", "--mode", "streams"};

		EXPECT_TRUE(parse(&c, SPEC_EVAL, err, 3, argv) != 0 &&
				    strstr(err, "--mode: 'streams' is not windows or stream"),
			    "a choice: %s", err);
	}
	spec_free(&c);
}

/* retnet-prep's flags: inputs are the words that are not flags, --held-out takes one
 * path each time, and --split says the parts' weights and their order in the text. */
static void check_prep_flags(void)
{
	struct run_spec c = {0};
	struct spec_split sp;
	char err[512] = "";
	const char *argv[] = {"x", "--output-prefix", "o", "a.txt", "--held-out", "h.txt",
			      "b/", "--tokenizer", "bpe", "--vocab-size", "300"};

	EXPECT_TRUE(parse(&c, SPEC_PREP, err, 11, argv) == 0 && c.input.n == 2 &&
			    !strcmp(c.input.path[1], "b/") && c.held_out.n == 1 &&
			    c.vocab_size == 300 && !strcmp(c.split, "90,5,5"),
		    "retnet-prep: %d inputs, %d held out, vocab %lld, split %s (%s)", c.input.n,
		    c.held_out.n, (long long)c.vocab_size, c.split, err);
	EXPECT_TRUE(spec_validate(&c, 1, err, sizeof(err)) == 0, "validate: %s", err);
	EXPECT_TRUE(spec_validate(&c, 2, err, sizeof(err)) != 0 && strstr(err, "one process"),
		    "retnet-prep runs as one process: %s", err);
	EXPECT_TRUE(spec_parse_split("949,50,1", &sp, err, sizeof(err)) == 0 &&
			    sp.order[0] == SPEC_PART_TRAIN && sp.order[2] == SPEC_PART_TEST &&
			    sp.weight[SPEC_PART_VALID] == 50,
		    "949,50,1: %s", err);
	EXPECT_TRUE(spec_parse_split("train:0.9,test:0.05,valid:0.05", &sp, err, sizeof(err)) == 0 &&
			    sp.order[1] == SPEC_PART_TEST && sp.order[2] == SPEC_PART_VALID &&
			    sp.weight[SPEC_PART_TRAIN] == 0.9,
		    "named parts in the order of the text: %s", err);
	EXPECT_TRUE(spec_parse_split("9,1,1,1", &sp, err, sizeof(err)) != 0 &&
			    strstr(err, "three comma-separated"),
		    "four weights: %s", err);
	spec_free(&c);
}

/* A checkpoint's model adopted by the evaluator, checked by the trainer, and its
 * values named after the file's attributes in messages. */
static void check_checkpoint_rules(void)
{
	struct run_spec saved, ev = {0}, tr = {0};
	char err[512] = "";
	const char *eargv[] = {"x", "--load", "/ck", "--data", "/a.txt", "--seq-length", "64",
			       "--tensor-model-parallel-size", "3"};
	const char *targv[] = {"x", "--data-path", "/a.bin", "--hidden-size", "128"};

	spec_defaults(&saved, 0);
	saved.hidden_size = 96;
	saved.num_heads = 3;
	saved.ffn_hidden_size = 192;
	saved.seq_length = 128;
	saved.chunk_size = 16;
	spec_mark_saved(&saved, "/ck/iter_0000002.h5");
	EXPECT_TRUE(spec_validate(&saved, 1, err, sizeof(err)) == 0, "a sound model: %s", err);

	EXPECT_TRUE(parse(&ev, SPEC_EVAL, err, 9, eargv) == 0, "parse: %s", err);
	EXPECT_TRUE(spec_validate(&ev, 3, err, sizeof(err)) == 0,
		    "before the checkpoint, the layout cannot be judged against the heads: %s",
		    err);
	EXPECT_TRUE(spec_adopt(&ev, &saved, "/ck/iter_0000002.h5", err, sizeof(err)) == 0 &&
			    ev.hidden_size == 96 && ev.seq_length == 64 && ev.chunk_size == 16,
		    "adopted: d=%lld, --seq-length kept %lld, chunk %lld", (long long)ev.hidden_size,
		    (long long)ev.seq_length, (long long)ev.chunk_size);
	EXPECT_TRUE(spec_validate(&ev, 3, err, sizeof(err)) == 0, "TP 3 of 3 heads: %s", err);
	ev.num_heads = 96;
	EXPECT_TRUE(spec_validate(&ev, 3, err, sizeof(err)) != 0 &&
			    strstr(err, "/ck/iter_0000002.h5: config/num_heads: head width 96 / 96 "
					"must be even"),
		    "a checkpoint's value is named after its attribute: %s", err);
	saved.num_layers = 0;
	EXPECT_TRUE(spec_validate(&saved, 1, err, sizeof(err)) != 0 &&
			    strstr(err, "config/num_layers: 0 is out of range [1, 4096] (that of "
					"--num-layers)"),
		    "a checkpoint's value out of the flag's range: %s", err);

	EXPECT_TRUE(parse(&tr, SPEC_TRAIN, err, 5, targv) == 0, "parse: %s", err);
	EXPECT_TRUE(spec_adopt(&tr, &saved, "/ck/iter_0000002.h5", err, sizeof(err)) != 0 &&
			    strstr(err, "--num-layers: 2 does not match 0 in /ck/iter_0000002.h5"),
		    "retnet-train: the model's shape must match: %s", err);
	spec_free(&ev);
	spec_free(&tr);
}

int main(void)
{
	check_adamw();
	check_decay_only_on_matrices();
	check_shards();
	check_schedule();
	check_config();
	check_programs();
	check_prep_flags();
	check_checkpoint_rules();
	return test_finish();
}
