/*
 * fuzz_config: the flag and --config FILE parser (common/flags.c) with the run
 * specification of retnet-train (trainer/spec.c) and its cross-field validation.
 *
 * Input: the first line is the command line, split at spaces and tabs (the word
 * @CONFIG stands for the config file's path; a first word @prep makes it
 * retnet-prep's); the rest of the input is written to that config file. Parsed with
 * spec_parse, then validated with spec_validate for world sizes 1, 2, 3, 4 and 8.
 * Accepted settings must satisfy what retnet-train then relies on (model_create's
 * preconditions, divisibility of the batch, NUL-terminated strings within their
 * fields, path counts in range), or what retnet-prep relies on (a split it can
 * cut: weights >= 0 and finite, some positive, each part once; a BPE vocabulary
 * in range).
 */
#include <string.h>

#include "trainer/spec.h"
#include "trainer/schedule.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ARGS 64

/* The learning rate retnet-train would use: finite and within [0, lr] (as it resolves
 * the defaults: decay ends at --train-iters). */
static void check_schedule(const struct run_spec *c)
{
	const struct lr_schedule s = {
		.lr = c->lr, .min_lr = c->min_lr, .warmup_iters = c->lr_warmup_iters,
		.decay_iters = c->lr_decay_iters ? c->lr_decay_iters : c->train_iters,
		.style = !strcmp(c->lr_decay_style, "cosine")	 ? LR_DECAY_COSINE
			 : !strcmp(c->lr_decay_style, "linear") ? LR_DECAY_LINEAR
								 : LR_DECAY_CONSTANT,
	};
	const int64_t its[] = {0, s.warmup_iters - 1, s.warmup_iters, s.decay_iters - 1,
			       s.decay_iters, c->train_iters - 1};

	for (size_t i = 0; i < sizeof(its) / sizeof(its[0]); i++) {
		double lr;

		if (its[i] < 0 || its[i] >= c->train_iters)
			continue;
		lr = lr_at(&s, its[i]);
		FUZZ_ASSERT(lr >= 0 && lr <= c->lr * (1 + 1e-12));
	}
}

static void check_accepted(const struct run_spec *c, int world)
{
	const int64_t tp = c->tensor_model_parallel_size, pp = c->pipeline_model_parallel_size;
	const int64_t ffn = c->ffn_hidden_size;
	const int64_t dp = world / (tp * pp);
	const int64_t gb = c->global_batch_size ? c->global_batch_size : c->micro_batch_size * dp;

	/* trainer/model.c model_create's ENSUREs, with the layout of this world */
	FUZZ_ASSERT(c->vocab_size > 0 && c->hidden_size > 0 && c->num_layers > 0 &&
		    c->num_heads > 0);
	FUZZ_ASSERT(c->hidden_size % c->num_heads == 0 &&
		    (c->hidden_size / c->num_heads) % 2 == 0);
	FUZZ_ASSERT(c->chunk_size > 0 && c->seq_length % c->chunk_size == 0 &&
		    c->micro_batch_size > 0);
	FUZZ_ASSERT(tp >= 1 && c->num_heads % tp == 0 && ffn > 0 && ffn % tp == 0);
	FUZZ_ASSERT(pp >= 1 && pp <= c->num_layers);
	/* retnet-train: whole micro-batches per data-parallel rank */
	FUZZ_ASSERT(dp >= 1 && (int64_t)world == dp * tp * pp);
	FUZZ_ASSERT(gb >= 1 && gb % (c->micro_batch_size * dp) == 0);
	/* interleaved 1F1B: whole chunks, groups of PP micro-batches (model_create and
	 * train_step_init's ENSUREs) */
	if (c->num_layers_per_virtual_stage) {
		const int64_t n = c->num_layers_per_virtual_stage;

		FUZZ_ASSERT(pp >= 2 && c->num_layers % (pp * n) == 0);
		FUZZ_ASSERT(c->num_layers == pp * n || (gb / (c->micro_batch_size * dp)) % pp == 0);
	}
	FUZZ_ASSERT(c->min_lr <= c->lr);
	FUZZ_ASSERT(c->data_path.n >= 1 && c->data_path.n <= c->data_path.cap);
	FUZZ_ASSERT(c->valid_data_path.n >= 0 && c->valid_data_path.n <= c->valid_data_path.cap);
	for (int i = 0; i < c->data_path.n; i++)
		FUZZ_ASSERT(memchr(c->data_path.path[i], '\0', FLAGS_PATH_MAX) != NULL);
	FUZZ_ASSERT(!strcmp(c->lr_decay_style, "linear") || !strcmp(c->lr_decay_style, "cosine") ||
		    !strcmp(c->lr_decay_style, "constant"));
	FUZZ_ASSERT(memchr(c->metrics, '\0', sizeof(c->metrics)) &&
		    memchr(c->save, '\0', sizeof(c->save)) && memchr(c->load, '\0', sizeof(c->load)));
	check_schedule(c);
}

static void check_prep(const struct run_spec *c)
{
	struct spec_split sp;
	char err[256];
	bool seen[SPEC_PARTS] = {false, false, false};
	double total = 0;

	FUZZ_ASSERT(c->output_prefix[0] && c->input.n >= 1 && c->input.n <= c->input.cap);
	FUZZ_ASSERT(spec_parse_split(c->split, &sp, err, sizeof(err)) == 0);
	for (int k = 0; k < SPEC_PARTS; k++) {
		FUZZ_ASSERT(sp.order[k] >= SPEC_PART_TRAIN && sp.order[k] < SPEC_PARTS &&
			    !seen[sp.order[k]]);
		seen[sp.order[k]] = true;
		FUZZ_ASSERT(sp.weight[k] >= 0 && sp.weight[k] <= 1e15);
		total += sp.weight[k];
	}
	FUZZ_ASSERT(total > 0);
	if (!strcmp(c->tokenizer, "bpe"))
		FUZZ_ASSERT(c->vocab_size > 256 && c->vocab_size <= 65536 && !c->tokenizer_from[0]);
	else
		FUZZ_ASSERT(!strcmp(c->tokenizer, "bytes") && c->vocab_size == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int worlds[] = {1, 2, 3, 4, 8};
	const uint8_t *nl = memchr(data, '\n', size);
	size_t line_len = nl ? (size_t)(nl - data) : size;
	size_t file_off = nl ? line_len + 1 : size;
	char *line = malloc(line_len + 1), *argv[MAX_ARGS + 1], config_path[1024];
	char err[2 * FLAGS_PATH_MAX + 256];
	struct run_spec *c = malloc(sizeof(*c));
	int argc = 0, prep;

	snprintf(config_path, sizeof(config_path), "%s",
		 fuzz_write_file("fuzz.cfg", data + file_off, size - file_off));
	memcpy(line, data, line_len);
	line[line_len] = '\0';
	argv[argc++] = "retnet-train";
	for (char *save = NULL, *w = strtok_r(line, " \t", &save); w && argc < MAX_ARGS;
	     w = strtok_r(NULL, " \t", &save))
		argv[argc++] = strcmp(w, "@CONFIG") ? w : config_path;
	argv[argc] = NULL;

	err[0] = '\0';
	prep = argc > 1 && !strcmp(argv[1], "@prep");
	if (prep)
		argv[1] = "retnet-prep";
	if (spec_parse(c, prep ? SPEC_PREP : SPEC_TRAIN, argc - prep, argv + prep, err,
		       sizeof(err)) < 0) {
		/* A refusal is one non-empty line. */
		FUZZ_ASSERT(err[0] && !strchr(err, '\n'));
	} else {
		for (size_t i = 0; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
			err[0] = '\0';
			if (spec_validate(c, worlds[i], err, sizeof(err)) == 0 && prep)
				check_prep(c);
			else if (!err[0])
				check_accepted(c, worlds[i]);
			else
				FUZZ_ASSERT(err[0] && !strchr(err, '\n'));
		}
	}
	spec_free(c);
	free(c);
	free(line);
	return 0;
}
