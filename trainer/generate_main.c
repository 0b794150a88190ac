/*
 * retnet-generate: samples text from a checkpoint with the recurrent form of
 * retention, one token per forward, the state of every layer carried from token to
 * token: constant time and memory per token however long the context.
 *
 *   setup      flags; the model of the checkpoint with T = 1 on a TP x PP layout
 *   prompt     tokenized (bytes, or BPE with the merge table of --tokenizer SHARD),
 *              fed token by token (each advances the state)
 *   sample     temperature and top-k on the last logits, with a counter-based
 *              generator keyed by (seed, step): the same seed, the same text
 *   report     the text on stdout; with --timing, ms per token after the prompt
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "common/rng.h"
#include "data/bpe.h"
#include "data/shard.h"
#include "data/textfile.h"
#include "data/tokenizer.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/mpi_setup.h"
#include "trainer/flags.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/train_ckpt.h"
#include "trainer/train_step.h"

/* A prompt file is read whole; generation is not for gigabyte prompts. */
#define GENERATE_MAX_PROMPT_BYTES ((size_t)256 << 20)

struct gen_settings {
	char load[FLAGS_PATH_MAX];
	int64_t iteration;
	char prompt[FLAGS_PATH_MAX];
	char prompt_file[FLAGS_PATH_MAX];
	char tokenizer[FLAGS_PATH_MAX];
	int64_t max_new_tokens, top_k, seed;
	double temperature;
	int64_t tensor_model_parallel_size, pipeline_model_parallel_size;
	bool timing, help;
};

#define OFF(field) offsetof(struct gen_settings, field)
#define SIZE(field) sizeof(((struct gen_settings *)0)->field)

static const struct flag_spec gen_specs[] = {
	{"load", OPT_STRING, OFF(load), 0, 0, 0, "checkpoint directory (required)",
	 SIZE(load)},
	{"iteration", OPT_INT, OFF(iteration), 0, 0, 9.2e18,
	 "checkpoint iteration (default: the latest)", 0},
	{"prompt", OPT_STRING, OFF(prompt), 0, 0, 0, "text to continue", SIZE(prompt)},
	{"prompt-file", OPT_STRING, OFF(prompt_file), 0, 0, 0,
	 "text to continue, from a file (plain or gzip)", SIZE(prompt_file)},
	{"tokenizer", OPT_STRING, OFF(tokenizer), 0, 0, 0,
	 "a token shard made with the checkpoint's BPE tokenizer (its merges are used)",
	 SIZE(tokenizer)},
	{"max-new-tokens", OPT_INT, OFF(max_new_tokens), 0, 0, 1e12, "tokens to sample", 0},
	{"temperature", OPT_FLOAT, OFF(temperature), 0, 0, 100,
	 "softmax temperature (0: always the most likely token)", 0},
	{"top-k", OPT_INT, OFF(top_k), 0, 0, 1 << 20, "sample among the k most likely (0: all)",
	 0},
	{"seed", OPT_INT, OFF(seed), 0, 0, 9.2e18, "sampling seed", 0},
	{"tensor-model-parallel-size", OPT_INT, OFF(tensor_model_parallel_size), 0, 1,
	 1 << 16, "tensor-parallel ranks", 0},
	{"pipeline-model-parallel-size", OPT_INT, OFF(pipeline_model_parallel_size), 0, 1,
	 1 << 16, "pipeline stages", 0},
	{"timing", OPT_BOOL, OFF(timing), 0, 0, 0,
	 "report the prompt's and the new tokens' time per token on stderr", 0},
	{"help", OPT_BOOL, OFF(help), 0, 0, 0, "this text", 0},
};

static const struct flag_table gen_flags = {gen_specs, sizeof(gen_specs) / sizeof(gen_specs[0])};

/* Token from logits: greedy at temperature 0, else top-k sampling with u in (0,1). */
static int32_t sample(const float *logits, int64_t vocab, double temperature, int64_t top_k,
		      double u, double *scratch)
{
	int64_t best = 0;
	double max = -INFINITY, sum = 0.0, threshold = -INFINITY;

	for (int64_t v = 0; v < vocab; v++)
		if (logits[v] > logits[best])
			best = v;
	if (temperature <= 0.0)
		return (int32_t)best;
	if (top_k > 0 && top_k < vocab) {
		/* The k-th largest logit: keep the logits at or above it. */
		for (int64_t v = 0; v < vocab; v++)
			scratch[v] = logits[v];
		for (int64_t k = 0; k < top_k; k++) {
			int64_t arg = 0;

			for (int64_t v = 1; v < vocab; v++)
				if (scratch[v] > scratch[arg])
					arg = v;
			threshold = scratch[arg];
			scratch[arg] = -INFINITY;
		}
	}
	max = logits[best] / temperature;
	for (int64_t v = 0; v < vocab; v++) {
		scratch[v] = logits[v] >= threshold ? exp(logits[v] / temperature - max) : 0.0;
		sum += scratch[v];
	}
	u *= sum;
	for (int64_t v = 0; v < vocab; v++) {
		u -= scratch[v];
		if (u <= 0.0 && scratch[v] > 0.0)
			return (int32_t)v;
	}
	return (int32_t)best;
}

/*
 * One token through the pipeline at absolute position pos; returns the next token
 * (sampled on the last stage, broadcast to every rank). collective: the whole grid
 */
static int32_t step(struct train_step *ts, const struct grid *g, int32_t token, int64_t pos,
		    const struct gen_settings *set, uint64_t draw, double *scratch)
{
	struct model *m = ts->m;
	int32_t next = 0, target = 0;
	/* The first rank of the last stage samples; every TP peer has the same logits. */
	const int root = (g->pp_size - 1) * g->tp_size * g->dp_size;

	model_set_first_position(m, pos);
	train_step_forward_only(ts, &token, &target, 0);
	if (g->world_rank == root)
		next = sample(m->micro[0].logits, m->cfg.vocab, set->temperature, set->top_k,
			      rng_uniform((uint64_t)set->seed, draw, 0), scratch);
	comm_bcast(g->world, &next, sizeof(next), root);
	return next;
}

int main(int argc, char **argv)
{
	struct gen_settings set = {.iteration = -1, .max_new_tokens = 200, .temperature = 1.0,
				   .seed = 1, .tensor_model_parallel_size = 1,
				   .pipeline_model_parallel_size = 1};
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct grid g;
	int world;
	bool ok;

	/* ---- setup ---------------------------------------------------------- */
	mpi_setup_init(&argc, &argv);
	ok = flags_parse(&gen_flags, &set, argc, argv, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	if (set.help) {
		if (log_rank() == 0) {
			printf("usage: [mpirun -n TPxPP] retnet-generate --load DIR "
			       "[--prompt TEXT | --prompt-file FILE] [flags]\n");
			flags_print_help(&gen_flags);
		}
		mpi_setup_finalize();
		return 0;
	}
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
	if (!set.load[0])
		snprintf(err, sizeof(err), "--load: required (a checkpoint directory)");
	else if (set.prompt[0] && set.prompt_file[0])
		snprintf(err, sizeof(err), "--prompt-file: give --prompt or --prompt-file, not both");
	else if (world != set.tensor_model_parallel_size * set.pipeline_model_parallel_size)
		snprintf(err, sizeof(err), "--tensor-model-parallel-size: generation is one "
			 "sequence: run with TP x PP = %lld ranks, not %d",
			 (long long)(set.tensor_model_parallel_size *
				     set.pipeline_model_parallel_size), world);
	mpi_setup_agree_or_exit(!err[0], err);

	int64_t iteration;
	struct ckpt_info info;

	ok = train_ckpt_resolve(set.load, set.iteration, &iteration, MPI_COMM_WORLD, err,
				sizeof(err)) == 0 &&
	     train_ckpt_read_info(set.load, iteration, &info, MPI_COMM_WORLD, err,
				  sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);

	struct model_config mc;
	struct tokenizer bytes;
	struct bpe bpe = {0};
	bool use_bpe = false;

	tokenizer_init_bytes(&bytes);
	if (set.tokenizer[0]) {
		/* Checks the shard and that it is the checkpoint's tokenizer. */
		struct shard sh;

		if (shard_open_checked(&sh, set.tokenizer, err, sizeof(err)) == 0) {
			if (tokenizer_check_same(&sh.tok, set.tokenizer, &info.tok, info.path, err,
						 sizeof(err)) == 0 &&
			    sh.tok.n_merges) {
				bpe_init(&bpe, &sh.tok);
				use_bpe = true;
			}
			shard_close(&sh);
		}
	} else if (!tokenizer_equal(&bytes, &info.tok)) {
		snprintf(err, sizeof(err), "--tokenizer: %s has tokenizer '%s': give a token shard "
			 "made with it (--tokenizer SHARD, e.g. its training shard), whose merge "
			 "table encodes and decodes the text", info.path, info.tok.id);
	}
	if (!err[0])
		train_ckpt_model_config(&info, 1, 1, 1, set.tensor_model_parallel_size,
					set.pipeline_model_parallel_size, &mc, err, sizeof(err));
	mpi_setup_agree_or_exit(!err[0], err);
	grid_init(&g, (int)set.tensor_model_parallel_size, (int)set.pipeline_model_parallel_size);

	/* ---- prompt --------------------------------------------------------- */
	unsigned char *text = NULL;
	size_t n_prompt = 0;

	if (set.prompt_file[0]) {
		ok = textfile_read_all(set.prompt_file, GENERATE_MAX_PROMPT_BYTES, &text, &n_prompt,
				       err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	} else {
		n_prompt = strlen(set.prompt);
		text = xmalloc(n_prompt + 1);
		memcpy(text, set.prompt, n_prompt);
	}
	uint16_t *ids = xmalloc(sizeof(uint16_t) * (n_prompt + BPE_PIECE_MAX));
	size_t n_ids = n_prompt;

	if (use_bpe) {
		struct bpe_encoder *enc = xmalloc(sizeof(*enc));
		uint64_t encoded;

		bpe_encoder_init(enc, &bpe);
		n_ids = bpe_encode(enc, text, n_prompt, true, ids, &encoded);
		ENSURE(encoded == n_prompt);
		free(enc);
	} else {
		n_ids = tokenizer_encode(ids, &bytes, text, n_prompt);
	}

	/* ---- model ---------------------------------------------------------- */
	struct model m;
	struct train_step ts;

	ok = train_ckpt_build_model(&m, set.load, iteration, &mc, &g, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	m.form = RETENTION_RECURRENT;
	train_step_init(&ts, &m, &g, 1);
	model_stream_begin(&m);

	double *scratch = xmalloc(sizeof(double) * (size_t)mc.vocab);
	/* With no prompt the sequence starts from a newline, a document boundary. */
	int32_t token = n_ids ? ids[0] : '\n';
	int64_t pos = 0;
	double t0 = metrics_now_s(), t_prompt;

	for (size_t i = 1; i < n_ids; i++, pos++) {
		step(&ts, &g, token, pos, &set, (uint64_t)pos, scratch);
		token = ids[i];
	}
	t_prompt = metrics_now_s() - t0;

	/* ---- sample --------------------------------------------------------- */
	if (g.world_rank == 0 && n_prompt) {
		fwrite(text, 1, n_prompt, stdout);
		fflush(stdout);
	}
	t0 = metrics_now_s();
	for (int64_t k = 0; k < set.max_new_tokens; k++) {
		token = step(&ts, &g, token, pos, &set, (uint64_t)pos, scratch);
		pos++;
		if (g.world_rank == 0) {
			if (use_bpe) {
				size_t len;
				const unsigned char *p = bpe_token_bytes(&bpe, (uint32_t)token, &len);

				fwrite(p, 1, len, stdout);
			} else {
				fputc((unsigned char)token, stdout);
			}
			fflush(stdout);
		}
	}
	if (g.world_rank == 0)
		fputc('\n', stdout);

	/* ---- report --------------------------------------------------------- */
	if (set.timing && g.world_rank == 0)
		fprintf(stderr, "retnet-generate: prompt %zu tokens, %.3f ms/token; %lld new tokens "
			"after %lld of context, %.3f ms/token; peak RSS %.0f MiB\n", n_ids,
			n_ids > 1 ? 1e3 * t_prompt / (double)(n_ids - 1) : 0.0,
			(long long)set.max_new_tokens, (long long)(pos - set.max_new_tokens),
			set.max_new_tokens ? 1e3 * (metrics_now_s() - t0) /
						     (double)set.max_new_tokens
					   : 0.0,
			metrics_peak_rss_mib());
	free(scratch);
	free(text);
	free(ids);
	if (use_bpe)
		bpe_free(&bpe);
	model_stream_end(&m);
	train_step_free(&ts);
	model_free(&m);
	grid_free(&g);
	mpi_setup_finalize();
	return 0;
}
