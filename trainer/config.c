#include "trainer/config.h"

#include "trainer/flags.h"

#include "common/log.h"
#include "trainer/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFF(field) offsetof(struct train_config, field)
#define SIZE(field) sizeof(((struct train_config *)0)->field)
#define BIG 9.2e18

static const struct flag_spec options[] = {
	{"num-layers", OPT_INT, OFF(num_layers), 0, 1, 4096, "transformer blocks L", 0},
	{"hidden-size", OPT_INT, OFF(hidden_size), 0, 2, 1 << 20, "model width d", 0},
	{"num-heads", OPT_INT, OFF(num_heads), 0, 1, 4096, "retention heads H (d/H even)", 0},
	{"ffn-hidden-size", OPT_INT, OFF(ffn_hidden_size), 0, 1, 1 << 22,
	 "FFN width f (default 2d)", 0},
	{"seq-length", OPT_INT, OFF(seq_length), 0, 1, 1 << 24, "tokens per sequence T", 0},
	{"chunk-size", OPT_INT, OFF(chunk_size), 0, 1, 1 << 16,
	 "retention chunk C (divides T)", 0},
	{"vocab-size", OPT_INT, OFF(vocab_size), 0, 2, 1 << 16,
	 "vocabulary (256: byte tokenizer)", 0},
	{"micro-batch-size", OPT_INT, OFF(micro_batch_size), 0, 1, 1 << 20,
	 "sequences per rank per forward", 0},
	{"global-batch-size", OPT_INT, OFF(global_batch_size), 0, 1, 1 << 24,
	 "sequences per optimizer step", 0},
	{"train-iters", OPT_INT, OFF(train_iters), 0, 1, BIG, "optimizer steps", 0},
	{"lr", OPT_FLOAT, OFF(lr), 0, 0, 10, "peak learning rate", 0},
	{"min-lr", OPT_FLOAT, OFF(min_lr), 0, 0, 10, "learning rate at the end of decay", 0},
	{"lr-warmup-iters", OPT_INT, OFF(lr_warmup_iters), 0, 0, BIG, "linear warm-up steps", 0},
	{"lr-decay-iters", OPT_INT, OFF(lr_decay_iters), 0, 0, BIG,
	 "decay ends here (default --train-iters)", 0},
	{"lr-decay-style", OPT_STRING, OFF(lr_decay_style), 0, 0, 0,
	 "linear, cosine or constant", SIZE(lr_decay_style)},
	{"weight-decay", OPT_FLOAT, OFF(weight_decay), 0, 0, 10, "AdamW decay on matrices", 0},
	{"clip-grad", OPT_FLOAT, OFF(clip_grad), 0, 0, 1e30,
	 "global gradient norm limit (0: off)", 0},
	{"adam-beta1", OPT_FLOAT, OFF(adam_beta1), 0, 0, 0.999999, "AdamW beta1", 0},
	{"adam-beta2", OPT_FLOAT, OFF(adam_beta2), 0, 0, 0.999999, "AdamW beta2", 0},
	{"adam-eps", OPT_FLOAT, OFF(adam_eps), 0, 1e-30, 1, "AdamW epsilon", 0},
	{"seed", OPT_INT, OFF(seed), 0, 0, BIG, "initialisation and data order", 0},
	{"data-path", OPT_PATHS, OFF(data_path), OFF(n_data_path), 0, 0,
	 "training token shards (retnet-prep)", 0},
	{"valid-data-path", OPT_PATHS, OFF(valid_data_path), OFF(n_valid_data_path), 0, 0,
	 "held-out token shards", 0},
	{"log-interval", OPT_INT, OFF(log_interval), 0, 1, BIG, "steps between log lines", 0},
	{"eval-interval", OPT_INT, OFF(eval_interval), 0, 0, BIG,
	 "steps between held-out evaluations (0: only at the end)", 0},
	{"eval-iters", OPT_INT, OFF(eval_iters), 0, 1, BIG,
	 "held-out batches per evaluation", 0},
	{"metrics", OPT_STRING, OFF(metrics), 0, 0, 0, "JSON-lines metrics file", SIZE(metrics)},
	{"save-raw-params", OPT_STRING, OFF(save_raw_params), 0, 0, 0,
	 "write rank 0's float32 parameter block here at the end (tests, debugging)", SIZE(save_raw_params)},
	{"save", OPT_STRING, OFF(save), 0, 0, 0,
	 "checkpoint directory to write (every --save-interval and at the end)", SIZE(save)},
	{"save-interval", OPT_INT, OFF(save_interval), 0, 0, BIG,
	 "steps between checkpoints (0: only at the end)", 0},
	{"load", OPT_STRING, OFF(load), 0, 0, 0,
	 "resume from the latest checkpoint in this directory (none there: start fresh)", SIZE(load)},
	{"keep-last", OPT_INT, OFF(keep_last), 0, 0, 1 << 20,
	 "keep this many newest checkpoints (0: all)", 0},
	{"ckpt-compression-level", OPT_INT, OFF(ckpt_compression_level), 0, 0, 9,
	 "deflate level of checkpoints (0: off)", 0},
	{"exit-duration-in-mins", OPT_FLOAT, OFF(exit_duration_in_mins), 0, 0, 1e9,
	 "stop with a checkpoint after this many minutes (0: never); exit status 3", 0},
	{"recompute-activations", OPT_BOOL, OFF(recompute_activations), 0, 0, 0,
	 "keep only each block's input; backward recomputes the rest (less memory)", 0},
	{"max-skipped-iters", OPT_INT, OFF(max_skipped_iters), 0, 1, 1 << 20,
	 "consecutive steps with a non-finite loss or gradient that end the run", 0},
	{"check-weight-hash-across-dp-replicas-interval", OPT_INT, OFF(check_weight_hash_interval),
	 0, 0, BIG, "steps between checks that all data-parallel replicas hold the same "
	 "parameters (0: never)", 0},
	{"inject-fault", OPT_STRING, OFF(inject_fault), 0, 0, 0,
	 "tests only: nan-grad@ITER[-LAST] or drift@ITER[-LAST] on the last rank", SIZE(inject_fault)},
	{"tensor-model-parallel-size", OPT_INT, OFF(tensor_model_parallel_size), 0, 1, 1 << 16,
	 "tensor-parallel ranks (divides heads and f)", 0},
	{"pipeline-model-parallel-size", OPT_INT, OFF(pipeline_model_parallel_size), 0, 1,
	 1 << 16, "pipeline stages (at most --num-layers)", 0},
	{"bf16", OPT_BOOL, OFF(bf16), 0, 0, 0,
	 "bf16 matmuls (float32 accumulation, weights, gradients and AdamW state); needs "
	 "AVX512-BF16; command line only", 0},
	{"help", OPT_BOOL, OFF(help), 0, 0, 0, "this text", 0},
};

static const struct flag_table train_flags = {options, sizeof(options) / sizeof(options[0])};

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
	c->max_skipped_iters = 5;
}

int config_parse_args(struct train_config *c, int argc, char **argv, char *err, size_t errlen)
{
	return flags_parse(&train_flags, c, argc, argv, err, errlen);
}

int config_parse_fault(const char *spec, enum fault_kind *kind, int64_t *first, int64_t *last)
{
	static const char *const names[] = {[FAULT_NAN_GRAD] = "nan-grad", [FAULT_DRIFT] = "drift"};
	const char *at = strchr(spec, '@');
	char *end;
	long long a, b;

	if (!at || at[1] < '0' || at[1] > '9')
		return -1;
	a = b = strtoll(at + 1, &end, 10);
	if (*end == '-') {
		if (end[1] < '0' || end[1] > '9')
			return -1;
		b = strtoll(end + 1, &end, 10);
	}
	if (*end || a < 1 || b < a)
		return -1;
	for (int k = FAULT_NAN_GRAD; k <= FAULT_DRIFT; k++)
		if (strlen(names[k]) == (size_t)(at - spec) &&
		    !strncmp(spec, names[k], (size_t)(at - spec))) {
			if (kind)
				*kind = (enum fault_kind)k;
			if (first)
				*first = a;
			if (last)
				*last = b;
			return 0;
		}
	return -1;
}

int config_validate(const struct train_config *c, int world_size, char *err, size_t errlen)
{
	const int64_t tp = c->tensor_model_parallel_size, pp = c->pipeline_model_parallel_size;
	const int64_t ffn = c->ffn_hidden_size ? c->ffn_hidden_size : 2 * c->hidden_size;
	int64_t dp;

	if (c->hidden_size % c->num_heads)
		return log_fail(err, errlen, "--num-heads: %lld does not divide --hidden-size %lld",
			    (long long)c->num_heads, (long long)c->hidden_size);
	if ((c->hidden_size / c->num_heads) % 2 || c->hidden_size / c->num_heads < 4)
		return log_fail(err, errlen, "--num-heads: head width --hidden-size/--num-heads = %lld "
			    "must be even and >= 4 (the rotation pairs lanes)",
			    (long long)(c->hidden_size / c->num_heads));
	if (c->seq_length % c->chunk_size)
		return log_fail(err, errlen, "--chunk-size: %lld does not divide --seq-length %lld",
			    (long long)c->chunk_size, (long long)c->seq_length);
	if (strcmp(c->lr_decay_style, "linear") && strcmp(c->lr_decay_style, "cosine") &&
	    strcmp(c->lr_decay_style, "constant"))
		return log_fail(err, errlen, "--lr-decay-style: '%s' is not linear, cosine or constant",
			    c->lr_decay_style);
	if (c->min_lr > c->lr)
		return log_fail(err, errlen, "--min-lr: %g is above --lr %g", c->min_lr, c->lr);
	if (world_size % (tp * pp))
		return log_fail(err, errlen, "--tensor-model-parallel-size: world size %d is not "
			    "divisible by TP %lld x PP %lld", world_size, (long long)tp,
			    (long long)pp);
	if (c->num_heads % tp)
		return log_fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide "
			    "--num-heads %lld", (long long)tp, (long long)c->num_heads);
	if (ffn % tp)
		return log_fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide "
			    "--ffn-hidden-size %lld", (long long)tp, (long long)ffn);
	if (pp > c->num_layers)
		return log_fail(err, errlen, "--pipeline-model-parallel-size: %lld stages for "
			    "--num-layers %lld", (long long)pp, (long long)c->num_layers);
	dp = world_size / (tp * pp);
	if (c->global_batch_size && c->global_batch_size % (c->micro_batch_size * dp))
		return log_fail(err, errlen, "--global-batch-size: %lld is not a multiple of "
			    "--micro-batch-size %lld x data-parallel size %lld",
			    (long long)c->global_batch_size, (long long)c->micro_batch_size,
			    (long long)dp);
	if (c->save_interval > 0 && !c->save[0])
		return log_fail(err, errlen, "--save-interval: needs --save DIR");
	if (c->inject_fault[0] && config_parse_fault(c->inject_fault, NULL, NULL, NULL) != 0)
		return log_fail(err, errlen, "--inject-fault: '%s' is not KIND@ITER or KIND@FIRST-LAST, "
				"KIND nan-grad or drift",
				c->inject_fault);
	if (c->n_data_path == 0)
		return log_fail(err, errlen, "--data-path: required (token shards from retnet-prep)");
	return 0;
}

static const struct flag_spec *spec_of(const char *name)
{
	for (size_t i = 0; i < train_flags.count; i++)
		if (!strcmp(options[i].name, name))
			return &options[i];
	return NULL;
}

int config_check_model(const struct model_config *mc, const char *where, char *err,
		       size_t errlen)
{
	const struct {
		const char *key, *flag;
		int64_t v;
	} f[] = {
		{"vocab_size", "vocab-size", mc->vocab},
		{"hidden_size", "hidden-size", mc->hidden},
		{"num_layers", "num-layers", mc->layers},
		{"num_heads", "num-heads", mc->heads},
		{"ffn_hidden_size", "ffn-hidden-size", mc->ffn_hidden},
		{"chunk_size", "chunk-size", mc->chunk},
		{"seq_length", "seq-length", mc->seq_len},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const struct flag_spec *o = spec_of(f[i].flag);

		if ((double)f[i].v < o->min || (double)f[i].v > o->max)
			return log_fail(err, errlen, "%s: config/%s: %lld is out of range [%.0f, "
					"%.0f] (that of --%s)", where, f[i].key, (long long)f[i].v,
					o->min, o->max, f[i].flag);
	}
	if (mc->hidden % mc->heads)
		return log_fail(err, errlen, "%s: config/num_heads: %lld does not divide "
				"config/hidden_size %lld", where, (long long)mc->heads,
				(long long)mc->hidden);
	if ((mc->hidden / mc->heads) % 2 || mc->hidden / mc->heads < 4)
		return log_fail(err, errlen, "%s: config/num_heads: head width %lld / %lld must "
				"be even and >= 4", where, (long long)mc->hidden,
				(long long)mc->heads);
	if (mc->seq_len % mc->chunk)
		return log_fail(err, errlen, "%s: config/chunk_size: %lld does not divide "
				"config/seq_length %lld", where, (long long)mc->chunk,
				(long long)mc->seq_len);
	return 0;
}

void config_print_help(const char *program)
{
	printf("usage: mpirun -n N %s --data-path SHARD... [flags]\n"
	       "Flags (also as 'key value' lines in --config FILE; the command line wins):\n",
	       program);
	flags_print_help(&train_flags);
}
