/*
 * retnet-eval: perplexity and bits per byte of a checkpoint on held-out corpora.
 *
 *   setup      flags, the grid of the evaluator's own layout, the checkpoint's
 *              configuration and tokenizer (nothing else is needed)
 *   corpora    every --data path read and checked before any work: token shards
 *              from retnet-prep, or raw text (plain or gzip, a file or a directory
 *              of files) tokenized here with the checkpoint's tokenizer
 *   model      built on this layout and loaded from the checkpoint
 *   score      windows (state reset per window) or one stream (state carried
 *              across the whole corpus), with the chunkwise, parallel or recurrent
 *              form of retention; every target token of the corpus is scored. With
 *              the checkpoint's --reset-attention-mask (or the flag) the state also
 *              restarts after each end-of-document token, in both modes
 *   report     a table, and one JSON object per corpus in --output
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/codec.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "parallel/comm.h"
#include "parallel/mpi_setup.h"
#include "trainer/launch.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/train_step.h"
#include "trainer/trainer.h"

#define LN2 0.69314718055994530942
/* Raw text read into memory whole: refuse what would not fit a node's RAM easily. */
#define EVAL_MAX_TEXT_BYTES ((size_t)16 << 30)

/* A corpus as one token array, mapped (shard) or owned (tokenized text). */
struct corpus {
	const char *path;
	const uint16_t *tokens;
	uint64_t n_tokens, source_bytes;
	uint64_t scored_bytes;	/* behind tokens 1 .. n-1, the ones both modes score */
	struct shard shard;
	bool is_shard;
	uint16_t *owned;
};

struct score {
	double nll;      /* summed over scored targets, nats */
	double targets;  /* scored target tokens */
	int64_t forwards; /* forward calls so far (train_step_forward_only's numbering) */
};

static bool is_shard_file(const char *path)
{
	char magic[8] = {0};
	FILE *f = fopen(path, "rb");
	bool yes;

	if (!f)
		return false;
	yes = fread(magic, 1, sizeof(magic), f) == sizeof(magic) &&
	      memcmp(magic, SHARD_MAGIC, sizeof(magic)) == 0;
	fclose(f);
	return yes;
}

/* Opens a token shard made with the checkpoint's tokenizer (0 if path is no shard). */
static int shard_open_for(struct corpus *c, const char *path, const struct tokenizer *tok,
			  char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->path = path;
	if (!is_shard_file(path))
		return 0;
	if (shard_open_checked(&c->shard, path, err, errlen))
		return -1;
	c->is_shard = true;
	if (tokenizer_check_same(&c->shard.tok, path, tok, "the checkpoint", err, errlen))
		return -1;
	c->tokens = c->shard.tokens;
	c->n_tokens = c->shard.hdr.n_tokens;
	c->source_bytes = c->shard.hdr.source_bytes;
	return 0;
}

/*
 * The tokenizer that reads raw text and counts the bytes behind tokens: the
 * checkpoint's; for a BPE checkpoint written before checkpoints carried the merge
 * table, that of a --data shard made with it (the same id), if there is one.
 */
static int codec_for(struct codec *codec, bool *have, const struct ckpt_info *ck,
		     const struct corpus *cs, int n, char *err, size_t errlen)
{
	*have = false;
	if (!train_ckpt_lacks_merges(ck)) {
		*have = true;
		return codec_init(codec, &ck->tok, ck->path, err, errlen) ? -1 : 0;
	}
	for (int i = 0; i < n; i++)
		if (cs[i].is_shard) {
			*have = true;
			return codec_init(codec, &cs[i].shard.tok, cs[i].path, err, errlen) ? -1 : 0;
		}
	return 0;
}

/* A raw text corpus (files or a directory), tokenized with codec (NULL: none). */
static int text_open(struct corpus *c, const struct codec *codec, const struct ckpt_info *ck,
		     char *err, size_t errlen)
{
	const char *paths[1] = {c->path};

	if (!codec)
		return log_fail(err, errlen, "%s: raw text needs the merge table of tokenizer "
				"'%s', which %s does not carry (written before checkpoints "
				"carried it): give a token shard made with that tokenizer too, "
				"whose table is then used", c->path, ck->tok.id, ck->path);
	return codec_encode_inputs(codec, paths, 1, EVAL_MAX_TEXT_BYTES, &c->owned,
				   &c->n_tokens, &c->source_bytes, err, errlen) ? -1 : 0;
}

/* The corpus scored: at least one target, and the bytes behind the scored tokens
 * (all but the first). */
static int corpus_finish(struct corpus *c, const struct codec *codec, char *err,
			 size_t errlen)
{
	size_t first;

	if (!c->is_shard)
		c->tokens = c->owned;
	if (c->n_tokens < 2)
		return log_fail(err, errlen, "%s: %llu tokens: a corpus needs at least 2 (one "
				"target)", c->path, (unsigned long long)c->n_tokens);
	codec_token_bytes(codec, c->tokens[0], &first);
	if (first > c->source_bytes)
		return log_fail(err, errlen, "%s: source bytes %llu are fewer than its first "
				"token's", c->path, (unsigned long long)c->source_bytes);
	c->scored_bytes = c->source_bytes - first;
	return 0;
}

static void corpus_close(struct corpus *c)
{
	if (c->is_shard)
		shard_close(&c->shard);
	free(c->owned);
}

/*
 * Row r of a batch: inputs tokens[start .. start+T), targets tokens[start+1 ..],
 * padded with token 0 past the end; returns the real targets (<= T). Causal: the
 * padding after them cannot change their scores.
 */
static int64_t fill_row(int32_t *in, int32_t *tg, const struct corpus *c, uint64_t start,
			int64_t T)
{
	int64_t valid = 0;

	for (int64_t t = 0; t < T; t++) {
		uint64_t i = start + (uint64_t)t;

		in[t] = i < c->n_tokens ? c->tokens[i] : 0;
		tg[t] = i + 1 < c->n_tokens ? c->tokens[i + 1] : 0;
		valid += i + 1 < c->n_tokens;
	}
	return valid;
}

/*
 * Document starts of corpus tokens [start, start + len) into starts (len), doc.h's
 * definition at corpus positions: a start after each eod token, and at `start`
 * itself when `first` (a window's first token) or when it is the corpus's first.
 * Tokens past the end are padding: no start (causal, they change no score).
 */
static void corpus_starts(uint8_t *starts, const struct corpus *c, uint64_t start,
			  int64_t len, int32_t eod, bool first)
{
	for (int64_t t = 0; t < len; t++) {
		uint64_t i = start + (uint64_t)t;

		starts[t] = (t == 0 && (first || i == 0)) ||
			    (i > 0 && i - 1 < c->n_tokens && c->tokens[i - 1] == (uint32_t)eod);
	}
}

/* Forward of one batch through the pipeline; adds the real targets' losses. */
static void score_batch(struct train_step *ts, const int32_t *in, const int32_t *tg,
			const int64_t *valid, struct score *s)
{
	const int64_t B = ts->micro_batch, T = ts->seq_len;
	const float *losses;

	/* numbered calls: with two slots a pipeline stage goes on while the next
	 * one works on this batch */
	train_step_forward_only(ts, in, tg, 0, s->forwards);
	losses = train_step_losses(ts, s->forwards++);
	for (int64_t r = 0; r < B; r++) {
		s->targets += (double)valid[r];
		for (int64_t t = 0; losses && t < valid[r]; t++)
			s->nll += losses[r * T + t];
	}
}

/* Windows of T targets, each scored from a zero state; DP ranks take contiguous
 * ranges of windows, and context-parallel ranks their pieces of each. */
static struct score score_windows(struct train_step *ts, const struct corpus *c,
				  const struct grid *g, int32_t eod)
{
	/* T: this rank's piece of a window of T x CP tokens, which starts at `at` */
	const int64_t B = ts->micro_batch, T = ts->seq_len;
	const uint64_t window = (uint64_t)(T * g->axis[GRID_CONTEXT].size);
	const uint64_t at = (uint64_t)(T * g->axis[GRID_CONTEXT].rank);
	const uint64_t dp = (uint64_t)g->axis[GRID_DATA].size, d = (uint64_t)g->axis[GRID_DATA].rank;
	const uint64_t windows = (c->n_tokens - 1 + window - 1) / window;
	const uint64_t w0 = windows * d / dp, w1 = windows * (d + 1) / dp;
	/* Every DP rank runs as many batches (padding with empty rows), so a rank with
	 * one window fewer still joins each pipeline transfer in step. */
	const uint64_t per_rank = (windows + dp - 1) / dp;
	int32_t *in = xmalloc(sizeof(int32_t) * (size_t)(B * T));
	int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)(B * T));
	int64_t *valid = xmalloc(sizeof(int64_t) * (size_t)B);
	/* (B, window): the starts of the whole windows, every piece's (model_docs) */
	uint8_t *starts = eod >= 0 ? xmalloc((size_t)B * window) : NULL;
	struct score s = {0, 0, 0};

	ts->starts = starts;
	for (uint64_t w = w0; w < w0 + per_rank; w += (uint64_t)B) {
		for (int64_t r = 0; r < B; r++) {
			uint64_t win = w + (uint64_t)r;
			uint64_t first = win < w1 ? win * window : 0;

			valid[r] = win < w1 ? fill_row(in + r * T, tg + r * T, c, first + at, T) : 0;
			if (win >= w1)
				fill_row(in + r * T, tg + r * T, c, 0, T);
			if (starts)
				corpus_starts(starts + (uint64_t)r * window, c, first,
					      (int64_t)window, eod, true);
		}
		score_batch(ts, in, tg, valid, &s);
	}
	ts->starts = NULL;
	free(in);
	free(tg);
	free(valid);
	free(starts);
	return s;
}

/* The whole corpus as one sequence in pieces of T, the state carried across (with
 * eod >= 0 restarted at each document start, a piece's first token included). */
static struct score score_stream(struct train_step *ts, const struct corpus *c, int32_t eod)
{
	struct model *m = ts->m;
	const int64_t T = ts->seq_len;
	int32_t *in = xmalloc(sizeof(int32_t) * (size_t)T);
	int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)T);
	uint8_t *starts = eod >= 0 ? xmalloc((size_t)T) : NULL;
	struct score s = {0, 0, 0};

	ts->starts = starts;
	model_stream_begin(m);
	for (uint64_t start = 0; start + 1 < c->n_tokens; start += (uint64_t)T) {
		int64_t valid = fill_row(in, tg, c, start, T);

		if (starts)
			corpus_starts(starts, c, start, T, eod, false);
		model_set_first_position(m, (int64_t)start);
		score_batch(ts, in, tg, &valid, &s);
	}
	model_stream_end(m);
	ts->starts = NULL;
	free(in);
	free(tg);
	free(starts);
	return s;
}

/* One JSON line per corpus, written to path.tmp then renamed: never half a file. */
static int write_output(const char *path, const struct run_spec *set, struct corpus *cs,
			const double (*res)[5], int n, char *err, size_t errlen)
{
	char tmp[FLAGS_PATH_MAX + 16];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, errlen, "--output: cannot create '%s'", tmp);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		fprintf(f, "{\"corpus\":\"");
		for (const char *p = cs[i].path; *p; p++)
			fprintf(f, (*p == '"' || *p == '\\') ? "\\%c" : "%c", *p);
		fprintf(f, "\",\"tokens\":%.0f,\"bytes\":%.0f,\"nll\":%.9g,\"perplexity\":%.9g,"
			   "\"bits_per_byte\":%.9g,\"mode\":\"%s\",\"form\":\"%s\","
			   "\"reset_attention_mask\":%s}\n",
			res[i][0], res[i][1], res[i][2], res[i][3], res[i][4], set->mode, set->form,
			set->reset_attention_mask ? "true" : "false");
	}
	if (fflush(f) || ferror(f) || fclose(f) || rename(tmp, path)) {
		snprintf(err, errlen, "--output: cannot write '%s'", path);
		return -1;
	}
	return 0;
}

/* Scores every corpus: one row of the table each, and res[i] = tokens, bytes, nll,
 * perplexity, bits per byte. collective: the whole grid */
static void score_all(struct train_step *ts, struct corpus *cs, int n, const struct grid *g,
		      bool stream, int32_t eod, double (*res)[5])
{
	log0("%-40s %12s %12s %10s %12s %14s %8s\n", "corpus", "tokens", "bytes", "nll",
	     "perplexity", "bits/byte", "tok/s");
	for (int i = 0; i < n; i++) {
		double t0 = metrics_now_s(), sums[2];
		struct score s = stream ? score_stream(ts, &cs[i], eod)
					: score_windows(ts, &cs[i], g, eod);

		/* The losses live on the last stage, spread over the DP ranks and the pieces. */
		sums[0] = s.nll;
		sums[1] = s.targets;
		comm_allreduce_sum_f64(g->axis[GRID_PIPELINE].comm, sums, 1);
		comm_allreduce_sum_f64(g->replicas.comm, sums, 2);
		/* Bytes behind the scored tokens: every token but the first is scored. */
		ENSURE(sums[1] == (double)(cs[i].n_tokens - 1));
		res[i][0] = sums[1];
		res[i][1] = (double)cs[i].scored_bytes;
		res[i][2] = sums[0] / sums[1];
		res[i][3] = exp(res[i][2]);
		res[i][4] = sums[0] / LN2 / res[i][1];
		log0("%-40s %12.0f %12.0f %10.5f %12.4f %14.5f %8.0f\n", cs[i].path, res[i][0],
		     res[i][1], res[i][2], res[i][3], res[i][4],
		     res[i][0] / (metrics_now_s() - t0));
	}
}

int main(int argc, char **argv)
{
	struct launch *l = xcalloc(1, sizeof(*l));
	const struct run_spec *s = &l->spec;
	const struct grid *g = &l->grid;
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct train_step ts;
	struct model *m;
	bool ok;

	/* ---- setup: flags, the grid, the checkpoint's model and tokenizer ---- */
	launch_begin(l, SPEC_EVAL, &argc, &argv);
	launch_read_checkpoint(l);

	/* ---- corpora: every path read and checked before any work ------------ */
	const int n = s->data.n;
	const struct ckpt_info *ck = &l->checkpoint;
	struct corpus *cs = xcalloc((size_t)n, sizeof(*cs));
	struct codec codec = {0};
	bool have_codec;

	for (int i = 0; i < n; i++) {
		ok = shard_open_for(&cs[i], s->data.path[i], &ck->tok, err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}
	ok = codec_for(&codec, &have_codec, ck, cs, n, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	for (int i = 0; i < n; i++) {
		ok = (cs[i].is_shard ||
		      text_open(&cs[i], have_codec ? &codec : NULL, ck, err, sizeof(err)) == 0) &&
		     corpus_finish(&cs[i], &codec, err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}

	/* Document resets as the checkpoint was trained (or as the flags say): the
	 * end-of-document id they need, -1 when off. */
	const int32_t eod = s->reset_attention_mask ? ck->tok.eod_id : -1;

	if (s->reset_attention_mask && eod < 0)
		snprintf(err, sizeof(err), "--reset-attention-mask (%s): the checkpoint's tokenizer "
			 "has no end-of-document token; --no-reset-attention-mask scores without "
			 "resets", spec_given(s, &s->reset_attention_mask) ? "given" : "the checkpoint's");
	mpi_setup_agree_or_exit(!s->reset_attention_mask || eod >= 0, err);

	/* ---- model: this layout's slices of the checkpoint ------------------- */
	/* A second slot lets pipeline stages work on successive batches at once. */
	m = launch_model(l, g->axis[GRID_PIPELINE].size > 1 ? 2 : 1);
	train_step_init(&ts, m, g, s, 1, NULL);
	log0("retnet-eval: %s (iteration %lld): d=%lld L=%lld H=%lld; %s mode%s, %s form, "
	     "%s matmuls, T=%lld, %lld windows per forward, %d ranks (DP %d x PP %d x CP %d x "
	     "TP %d)\n",
	     l->checkpoint.path, (long long)l->checkpoint.iteration, (long long)s->hidden_size,
	     (long long)s->num_layers, (long long)s->num_heads, s->mode,
	     eod >= 0 ? " with document resets" : "", s->form,
	     s->bf16 ? "bf16" : "fp32", (long long)s->seq_length,
	     (long long)s->micro_batch_size, g->world_size,
	     g->axis[GRID_DATA].size, g->axis[GRID_PIPELINE].size, g->axis[GRID_CONTEXT].size,
	     g->axis[GRID_TENSOR].size);

	/* ---- score: windows or one stream, every target token ---------------- */
	double (*res)[5] = xcalloc((size_t)n, sizeof(*res));

	score_all(&ts, cs, n, g, !strcmp(s->mode, "stream"), eod, res);

	/* ---- report: one JSON object per corpus ------------------------------ */
	if (s->output[0]) {
		ok = g->world_rank != 0 ||
		     write_output(s->output, s, cs, (const double(*)[5])res, n, err,
				  sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}
	free(res);
	train_step_free(&ts);
	model_destroy(m);
	for (int i = 0; i < n; i++)
		corpus_close(&cs[i]);
	free(cs);
	codec_free(&codec);
	launch_end(l);
	free(l);
	return 0;
}
