/*
 * retnet-generate: samples text from a checkpoint with the recurrent form of
 * retention, one token per forward, the state of every layer carried from token to
 * token: constant time and memory per token however long the context.
 *
 *   setup      flags; the model of the checkpoint with T = 1 on a TP x PP layout
 *   prompt     tokenized with the checkpoint's tokenizer (bytes, or BPE with the
 *              merge table the checkpoint carries), fed token by token (each
 *              advances the state)
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
#include "data/codec.h"
#include "data/textfile.h"
#include "data/tokenizer.h"
#include "parallel/comm.h"
#include "parallel/mpi_setup.h"
#include "trainer/launch.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/train_step.h"

/* A prompt file is read whole; generation is not for gigabyte prompts. */
#define GENERATE_MAX_PROMPT_BYTES ((size_t)256 << 20)

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
		    const struct run_spec *set, uint64_t draw, double *scratch)
{
	struct model *m = ts->m;
	int32_t next = 0, target = 0;
	/* The first rank of the last stage samples; every TP peer has the same logits. */
	const int root = g->world_size - g->world_size / g->axis[GRID_PIPELINE].size;

	model_set_first_position(m, pos);
	train_step_forward_only(ts, &token, &target, 0, 0);
	if (g->world_rank == root)
		next = sample(model_logits(m, 0), set->vocab_size, set->temperature, set->top_k,
			      rng_uniform((uint64_t)set->sample_seed, draw, 0), scratch);
	comm_bcast(g->world, &next, sizeof(next), root);
	return next;
}

/*
 * The text to continue as token ids, with the checkpoint's tokenizer, which codec
 * is set up to encode and decode. A BPE checkpoint written before checkpoints
 * carried the merge table is refused. collective: all ranks agree on errors
 */
static uint16_t *prompt_ids(const struct run_spec *s, const struct ckpt_info *ck,
			    struct codec *codec, unsigned char **text, size_t *n_text,
			    size_t *n_ids)
{
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct codec_stream stream;
	uint64_t encoded;
	uint16_t *ids;
	bool ok;

	if (train_ckpt_lacks_merges(ck))
		snprintf(err, sizeof(err), "%s: tokenizer '%s' without its merge table (a "
			 "checkpoint written before checkpoints carried it): to write one that "
			 "carries it, resume it for no steps with retnet-train on its training "
			 "shards (--load DIR --save DIR --train-iters %lld)", ck->path, ck->tok.id,
			 (long long)ck->iteration);
	else
		codec_init(codec, &ck->tok, ck->path, err, sizeof(err));
	mpi_setup_agree_or_exit(!err[0], err);
	if (s->prompt_file[0]) {
		ok = textfile_read_all(s->prompt_file, GENERATE_MAX_PROMPT_BYTES, text, n_text,
				       err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	} else {
		*n_text = strlen(s->prompt);
		*text = xmalloc(*n_text + 1);
		memcpy(*text, s->prompt, *n_text);
	}
	ids = xmalloc(sizeof(uint16_t) * (*n_text + CODEC_HOLD_MAX));
	codec_stream_init(&stream, codec);
	*n_ids = codec_stream_encode(&stream, *text, *n_text, true, ids, &encoded);
	ENSURE(encoded == *n_text);
	return ids;
}

/* A token's text on stdout (rank 0). */
static void emit(const struct grid *g, int32_t token, const struct codec *codec)
{
	size_t len;
	const unsigned char *p;

	if (g->world_rank != 0)
		return;
	p = codec_token_bytes(codec, (uint32_t)token, &len);
	fwrite(p, 1, len, stdout);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct launch *l = xcalloc(1, sizeof(*l));
	const struct run_spec *s = &l->spec;
	const struct grid *g = &l->grid;
	struct train_step ts;
	struct codec codec;
	unsigned char *text;
	size_t n_text, n_ids;
	uint16_t *ids;
	struct model *m;

	/* ---- setup: flags; the checkpoint's model with T = 1 ------------------ */
	launch_begin(l, SPEC_GENERATE, &argc, &argv);
	launch_read_checkpoint(l);

	/* ---- prompt: tokenized ------------------------------------------------ */
	ids = prompt_ids(s, &l->checkpoint, &codec, &text, &n_text, &n_ids);

	/* ---- model: recurrent form, the state carried from token to token ------ */
	m = launch_model(l, 1);
	train_step_init(&ts, m, g, s, 1, NULL);
	model_stream_begin(m);

	double *scratch = xmalloc(sizeof(double) * (size_t)s->vocab_size);
	/* With no prompt the sequence starts from a newline, a document boundary. */
	int32_t token = n_ids ? ids[0] : '\n';
	int64_t pos = 0;
	double t0 = metrics_now_s(), t_prompt;

	for (size_t i = 1; i < n_ids; i++, pos++) {
		step(&ts, g, token, pos, s, (uint64_t)pos, scratch);
		token = ids[i];
	}
	t_prompt = metrics_now_s() - t0;

	/* ---- sample: the prompt first, then each new token as it comes ------- */
	if (g->world_rank == 0 && n_text) {
		fwrite(text, 1, n_text, stdout);
		fflush(stdout);
	}
	t0 = metrics_now_s();
	for (int64_t k = 0; k < s->max_new_tokens; k++, pos++) {
		token = step(&ts, g, token, pos, s, (uint64_t)pos, scratch);
		emit(g, token, &codec);
	}
	if (g->world_rank == 0)
		fputc('\n', stdout);

	/* ---- report ------------------------------------------------------------ */
	if (s->timing && g->world_rank == 0)
		fprintf(stderr, "retnet-generate: prompt %zu tokens, %.3f ms/token; %lld new tokens "
			"after %lld of context, %.3f ms/token; peak RSS %.0f MiB\n", n_ids,
			n_ids > 1 ? 1e3 * t_prompt / (double)(n_ids - 1) : 0.0,
			(long long)s->max_new_tokens, (long long)(pos - s->max_new_tokens),
			s->max_new_tokens ? 1e3 * (metrics_now_s() - t0) /
						    (double)s->max_new_tokens
					  : 0.0,
			metrics_peak_rss_mib());
	free(scratch);
	free(text);
	free(ids);
	codec_free(&codec);
	model_stream_end(m);
	train_step_free(&ts);
	model_destroy(m);
	launch_end(l);
	free(l);
	return 0;
}
