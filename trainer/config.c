#include "trainer/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_kind { OPT_INT, OPT_FLOAT, OPT_STRING, OPT_PATHS, OPT_BOOL };

struct option_spec {
	const char *name; /* without the leading dashes */
	enum opt_kind kind;
	size_t offset;    /* into struct train_config */
	size_t count_offset; /* OPT_PATHS: the count field */
	double min, max;  /* numbers: allowed closed range */
	const char *help;
};

#define OFF(field) offsetof(struct train_config, field)
#define BIG 9.2e18

static const struct option_spec options[] = {
	{"num-layers", OPT_INT, OFF(num_layers), 0, 1, 4096, "transformer blocks L"},
	{"hidden-size", OPT_INT, OFF(hidden_size), 0, 2, 1 << 20, "model width d"},
	{"num-heads", OPT_INT, OFF(num_heads), 0, 1, 4096, "retention heads H (d/H even)"},
	{"ffn-hidden-size", OPT_INT, OFF(ffn_hidden_size), 0, 1, 1 << 22,
	 "FFN width f (default 2d)"},
	{"seq-length", OPT_INT, OFF(seq_length), 0, 1, 1 << 24, "tokens per sequence T"},
	{"chunk-size", OPT_INT, OFF(chunk_size), 0, 1, 1 << 16,
	 "retention chunk C (divides T)"},
	{"vocab-size", OPT_INT, OFF(vocab_size), 0, 2, 1 << 16,
	 "vocabulary (256: byte tokenizer)"},
	{"micro-batch-size", OPT_INT, OFF(micro_batch_size), 0, 1, 1 << 20,
	 "sequences per rank per forward"},
	{"global-batch-size", OPT_INT, OFF(global_batch_size), 0, 1, 1 << 24,
	 "sequences per optimizer step"},
	{"train-iters", OPT_INT, OFF(train_iters), 0, 1, BIG, "optimizer steps"},
	{"lr", OPT_FLOAT, OFF(lr), 0, 0, 10, "peak learning rate"},
	{"min-lr", OPT_FLOAT, OFF(min_lr), 0, 0, 10, "learning rate at the end of decay"},
	{"lr-warmup-iters", OPT_INT, OFF(lr_warmup_iters), 0, 0, BIG, "linear warm-up steps"},
	{"lr-decay-iters", OPT_INT, OFF(lr_decay_iters), 0, 0, BIG,
	 "decay ends here (default --train-iters)"},
	{"lr-decay-style", OPT_STRING, OFF(lr_decay_style), 0, 0, 0,
	 "linear, cosine or constant"},
	{"weight-decay", OPT_FLOAT, OFF(weight_decay), 0, 0, 10, "AdamW decay on matrices"},
	{"clip-grad", OPT_FLOAT, OFF(clip_grad), 0, 0, 1e30,
	 "global gradient norm limit (0: off)"},
	{"adam-beta1", OPT_FLOAT, OFF(adam_beta1), 0, 0, 0.999999, "AdamW beta1"},
	{"adam-beta2", OPT_FLOAT, OFF(adam_beta2), 0, 0, 0.999999, "AdamW beta2"},
	{"adam-eps", OPT_FLOAT, OFF(adam_eps), 0, 1e-30, 1, "AdamW epsilon"},
	{"seed", OPT_INT, OFF(seed), 0, 0, BIG, "initialisation and data order"},
	{"data-path", OPT_PATHS, OFF(data_path), OFF(n_data_path), 0, 0,
	 "training token shards (retnet-prep)"},
	{"valid-data-path", OPT_PATHS, OFF(valid_data_path), OFF(n_valid_data_path), 0, 0,
	 "held-out token shards"},
	{"log-interval", OPT_INT, OFF(log_interval), 0, 1, BIG, "steps between log lines"},
	{"eval-interval", OPT_INT, OFF(eval_interval), 0, 0, BIG,
	 "steps between held-out evaluations (0: only at the end)"},
	{"eval-iters", OPT_INT, OFF(eval_iters), 0, 1, BIG,
	 "held-out batches per evaluation"},
	{"metrics", OPT_STRING, OFF(metrics), 0, 0, 0, "JSON-lines metrics file"},
	{"save-raw-params", OPT_STRING, OFF(save_raw_params), 0, 0, 0,
	 "write rank 0's float32 parameter block here at the end (tests, debugging)"},
	{"save", OPT_STRING, OFF(save), 0, 0, 0,
	 "checkpoint directory to write (every --save-interval and at the end)"},
	{"save-interval", OPT_INT, OFF(save_interval), 0, 0, BIG,
	 "steps between checkpoints (0: only at the end)"},
	{"load", OPT_STRING, OFF(load), 0, 0, 0,
	 "resume from the latest checkpoint in this directory (none there: start fresh)"},
	{"keep-last", OPT_INT, OFF(keep_last), 0, 0, 1 << 20,
	 "keep this many newest checkpoints (0: all)"},
	{"ckpt-compression-level", OPT_INT, OFF(ckpt_compression_level), 0, 0, 9,
	 "deflate level of checkpoints (0: off)"},
	{"exit-duration-in-mins", OPT_FLOAT, OFF(exit_duration_in_mins), 0, 0, 1e9,
	 "stop with a checkpoint after this many minutes (0: never); exit status 3"},
	{"tensor-model-parallel-size", OPT_INT, OFF(tensor_model_parallel_size), 0, 1, 1 << 16,
	 "tensor-parallel ranks (divides heads and f)"},
	{"pipeline-model-parallel-size", OPT_INT, OFF(pipeline_model_parallel_size), 0, 1,
	 1 << 16, "pipeline stages (at most --num-layers)"},
	{"help", OPT_BOOL, OFF(help), 0, 0, 0, "this text"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void config_defaults(struct train_config *c)
{
	memset(c, 0, sizeof(*c));
	c->num_layers = 2;
	c->hidden_size = 64;
	c->num_heads = 4;
	c->ffn_hidden_size = 0; /* 2 * hidden_size */
	c->seq_length = 32;
	c->chunk_size = 8;
	c->vocab_size = 256;
	c->micro_batch_size = 2;
	c->global_batch_size = 0; /* micro_batch_size * data-parallel size */
	c->train_iters = 20;
	c->lr = 1e-3;
	c->min_lr = 1e-4;
	c->lr_warmup_iters = 0;
	c->lr_decay_iters = 0; /* train_iters */
	snprintf(c->lr_decay_style, sizeof(c->lr_decay_style), "linear");
	c->weight_decay = 0.05;
	c->clip_grad = 2.0;
	c->adam_beta1 = 0.9;
	c->adam_beta2 = 0.98;
	c->adam_eps = 1e-8;
	c->seed = 1234;
	c->log_interval = 1;
	c->eval_interval = 0;
	c->eval_iters = 4;
	c->tensor_model_parallel_size = 1;
	c->pipeline_model_parallel_size = 1;
	c->save_interval = 0;
	c->keep_last = 0;
	c->ckpt_compression_level = 1;
}

static const struct option_spec *find_option(const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	return NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* where: "--flag" or "file:line: key" for messages. */
static int set_value(struct train_config *c, const struct option_spec *o, const char *value,
		     const char *where, char *err, size_t errlen)
{
	char *base = (char *)c, *end;

	switch (o->kind) {
	case OPT_INT: {
		long long v;

		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end)
			return fail(err, errlen, "%s: '%s' is not an integer", where, value);
		if ((double)v < o->min || (double)v > o->max)
			return fail(err, errlen, "%s: %lld is out of range [%.0f, %.0f]", where, v,
				    o->min, o->max);
		*(int64_t *)(base + o->offset) = v;
		return 0;
	}
	case OPT_FLOAT: {
		double v;

		errno = 0;
		v = strtod(value, &end);
		if (errno || end == value || *end || !isfinite(v))
			return fail(err, errlen, "%s: '%s' is not a finite number", where, value);
		if (v < o->min || v > o->max)
			return fail(err, errlen, "%s: %g is out of range [%g, %g]", where, v, o->min,
				    o->max);
		*(double *)(base + o->offset) = v;
		return 0;
	}
	case OPT_STRING: {
		size_t cap = o->offset == OFF(lr_decay_style) ? sizeof(c->lr_decay_style)
							      : CONFIG_PATH_MAX;

		if (strlen(value) >= cap)
			return fail(err, errlen, "%s: value longer than %zu characters", where,
				    cap - 1);
		snprintf(base + o->offset, cap, "%s", value);
		return 0;
	}
	case OPT_PATHS: {
		int *n = (int *)(base + o->count_offset);
		char(*paths)[CONFIG_PATH_MAX] = (char(*)[CONFIG_PATH_MAX])(base + o->offset);

		if (*n >= CONFIG_MAX_PATHS)
			return fail(err, errlen, "%s: more than %d paths", where, CONFIG_MAX_PATHS);
		if (strlen(value) >= CONFIG_PATH_MAX)
			return fail(err, errlen, "%s: path longer than %d characters", where,
				    CONFIG_PATH_MAX - 1);
		snprintf(paths[(*n)++], CONFIG_PATH_MAX, "%s", value);
		return 0;
	}
	case OPT_BOOL:
		*(bool *)(base + o->offset) = true;
		return 0;
	}
	return fail(err, errlen, "%s: internal error", where);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Applies the file's keys except those in `skip` (given on the command line). */
static int parse_file(struct train_config *c, const char *path, const bool *skip, char *err,
		      size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[CONFIG_PATH_MAX + 128];
	int lineno = 0, rc = 0;

	if (!f)
		return fail(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
	while (!rc && fgets(line, sizeof(line), f)) {
		char *key, *value, *hash = strchr(line, '#');
		const struct option_spec *o;

		lineno++;
		if (hash)
			*hash = '\0';
		key = trim(line);
		if (!*key)
			continue;
		value = key + strcspn(key, " \t=");
		if (*value) {
			*value++ = '\0';
			value = trim(value);
			if (*value == '=')
				value = trim(value + 1);
		}
		while (*key == '-')
			key++;
		snprintf(where, sizeof(where), "%s:%d: %s", path, lineno, key);
		o = find_option(key);
		if (!o || o->kind == OPT_BOOL)
			rc = fail(err, errlen, "%s: unknown key", where);
		else if (!*value)
			rc = fail(err, errlen, "%s: missing value", where);
		else if (!skip[o - options])
			rc = set_value(c, o, value, where, err, errlen);
	}
	fclose(f);
	return rc;
}

int config_parse_args(struct train_config *c, int argc, char **argv, char *err, size_t errlen)
{
	bool given[N_OPTIONS] = {false};
	const char *config_file = NULL;

	/* Command line first, then the file for the keys the command line left alone. */
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const struct option_spec *o;
		char where[256];

		if (strncmp(arg, "--", 2) != 0)
			return fail(err, errlen, "'%s': expected a flag starting with --", arg);
		if (strcmp(arg, "--config") == 0) {
			if (i + 1 >= argc)
				return fail(err, errlen, "--config: missing value");
			config_file = argv[++i];
			continue;
		}
		o = find_option(arg + 2);
		if (!o)
			return fail(err, errlen, "%s: unknown flag (see --help)", arg);
		snprintf(where, sizeof(where), "%s", arg);
		if (o->kind == OPT_BOOL) {
			set_value(c, o, "", where, err, errlen);
			continue;
		}
		if (i + 1 >= argc || (strncmp(argv[i + 1], "--", 2) == 0 && o->kind != OPT_FLOAT))
			return fail(err, errlen, "%s: missing value", arg);
		if (o->kind == OPT_PATHS && given[o - options] == false)
			*(int *)((char *)c + o->count_offset) = 0;
		if (set_value(c, o, argv[++i], where, err, errlen))
			return -1;
		/* --data-path A B C: the following non-flag words are more paths. */
		while (o->kind == OPT_PATHS && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
			if (set_value(c, o, argv[++i], where, err, errlen))
				return -1;
		given[o - options] = true;
	}
	if (config_file)
		return parse_file(c, config_file, given, err, errlen);
	return 0;
}

int config_validate(const struct train_config *c, int world_size, char *err, size_t errlen)
{
	const int64_t tp = c->tensor_model_parallel_size, pp = c->pipeline_model_parallel_size;
	const int64_t ffn = c->ffn_hidden_size ? c->ffn_hidden_size : 2 * c->hidden_size;
	int64_t dp;

	if (c->hidden_size % c->num_heads)
		return fail(err, errlen, "--num-heads: %lld does not divide --hidden-size %lld",
			    (long long)c->num_heads, (long long)c->hidden_size);
	if ((c->hidden_size / c->num_heads) % 2 || c->hidden_size / c->num_heads < 4)
		return fail(err, errlen, "--num-heads: head width --hidden-size/--num-heads = %lld "
			    "must be even and >= 4 (the rotation pairs lanes)",
			    (long long)(c->hidden_size / c->num_heads));
	if (c->seq_length % c->chunk_size)
		return fail(err, errlen, "--chunk-size: %lld does not divide --seq-length %lld",
			    (long long)c->chunk_size, (long long)c->seq_length);
	if (strcmp(c->lr_decay_style, "linear") && strcmp(c->lr_decay_style, "cosine") &&
	    strcmp(c->lr_decay_style, "constant"))
		return fail(err, errlen, "--lr-decay-style: '%s' is not linear, cosine or constant",
			    c->lr_decay_style);
	if (c->min_lr > c->lr)
		return fail(err, errlen, "--min-lr: %g is above --lr %g", c->min_lr, c->lr);
	if (world_size % (tp * pp))
		return fail(err, errlen, "--tensor-model-parallel-size: world size %d is not "
			    "divisible by TP %lld x PP %lld", world_size, (long long)tp,
			    (long long)pp);
	if (c->num_heads % tp)
		return fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide "
			    "--num-heads %lld", (long long)tp, (long long)c->num_heads);
	if (ffn % tp)
		return fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide "
			    "--ffn-hidden-size %lld", (long long)tp, (long long)ffn);
	if (pp > c->num_layers)
		return fail(err, errlen, "--pipeline-model-parallel-size: %lld stages for "
			    "--num-layers %lld", (long long)pp, (long long)c->num_layers);
	dp = world_size / (tp * pp);
	if (c->global_batch_size && c->global_batch_size % (c->micro_batch_size * dp))
		return fail(err, errlen, "--global-batch-size: %lld is not a multiple of "
			    "--micro-batch-size %lld x data-parallel size %lld",
			    (long long)c->global_batch_size, (long long)c->micro_batch_size,
			    (long long)dp);
	if (c->save_interval > 0 && !c->save[0])
		return fail(err, errlen, "--save-interval: needs --save DIR");
	if (c->n_data_path == 0)
		return fail(err, errlen, "--data-path: required (token shards from retnet-prep)");
	return 0;
}

void config_print_help(const char *program)
{
	printf("usage: mpirun -n N %s --data-path SHARD... [flags]\n"
	       "Flags (also as 'key value' lines in --config FILE; the command line wins):\n",
	       program);
	printf("  --%-30s %s\n", "config FILE", "read flags from FILE");
	for (size_t i = 0; i < N_OPTIONS; i++)
		printf("  --%-30s %s\n", options[i].name, options[i].help);
}
