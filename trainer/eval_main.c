/*
 * retnet-eval: perplexity and bits per byte of a checkpoint on held-out corpora.
 *
 *   setup      flags, the grid of the evaluator's own layout, the checkpoint's
 *              configuration and tokenizer (nothing else is needed)
 *   corpora    every --data file read and checked before any work: token shards
 *              from retnet-prep, or raw text (plain or gzip) tokenized here
 *   model      built on this layout and loaded from the checkpoint
 *   score      windows (state reset per window) or one stream (state carried
 *              across the whole corpus), with the chunkwise, parallel or recurrent
 *              form of retention; every target token of the corpus is scored
 *   report     a table, and one JSON object per corpus in --output
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
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

#define LN2 0.69314718055994530942
/* Raw text read into memory whole: refuse what would not fit a node's RAM easily. */
#define EVAL_MAX_TEXT_BYTES ((size_t)16 << 30)

struct eval_settings {
	char load[FLAGS_PATH_MAX];
	int64_t iteration;
	char data[FLAGS_MAX_PATHS][FLAGS_PATH_MAX];
	int n_data;
	char output[FLAGS_PATH_MAX];
	int64_t seq_length, chunk_size, micro_batch_size;
	char mode[16], form[16];
	int64_t tensor_model_parallel_size, pipeline_model_parallel_size;
	bool bf16;
	bool help;
};

#define OFF(field) offsetof(struct eval_settings, field)
#define SIZE(field) sizeof(((struct eval_settings *)0)->field)

static const struct flag_spec eval_specs[] = {
	{"load", OPT_STRING, OFF(load), 0, 0, 0, "checkpoint directory (required)",
	 SIZE(load)},
	{"iteration", OPT_INT, OFF(iteration), 0, 0, 9.2e18,
	 "checkpoint iteration (default: the latest)", 0},
	{"data", OPT_PATHS, OFF(data), OFF(n_data), 0, 0,
	 "corpora: token shards or raw text, plain or gzip (required)", 0},
	{"output", OPT_STRING, OFF(output), 0, 0, 0, "JSON lines, one object per corpus",
	 SIZE(output)},
	{"seq-length", OPT_INT, OFF(seq_length), 0, 1, 1 << 24,
	 "tokens per window or stream piece (default: the checkpoint's)", 0},
	{"chunk-size", OPT_INT, OFF(chunk_size), 0, 1, 1 << 16,
	 "retention chunk (default: the checkpoint's; divides --seq-length)", 0},
	{"micro-batch-size", OPT_INT, OFF(micro_batch_size), 0, 1, 1 << 20,
	 "windows per forward (windows mode)", 0},
	{"mode", OPT_STRING, OFF(mode), 0, 0, 0,
	 "windows (state reset per window) or stream (one sequence)", SIZE(mode)},
	{"form", OPT_STRING, OFF(form), 0, 0, 0, "chunkwise, parallel or recurrent",
	 SIZE(form)},
	{"tensor-model-parallel-size", OPT_INT, OFF(tensor_model_parallel_size), 0, 1,
	 1 << 16, "tensor-parallel ranks", 0},
	{"pipeline-model-parallel-size", OPT_INT, OFF(pipeline_model_parallel_size), 0, 1,
	 1 << 16, "pipeline stages", 0},
	{"bf16", OPT_BOOL, OFF(bf16), 0, 0, 0,
	 "bf16 matmuls with float32 accumulation (needs AVX512-BF16)", 0},
	{"help", OPT_BOOL, OFF(help), 0, 0, 0, "this text", 0},
};

static const struct flag_table eval_flags = {eval_specs,
					     sizeof(eval_specs) / sizeof(eval_specs[0])};

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

/* Opens a shard or tokenizes a text file with the checkpoint's tokenizer. */
static int corpus_open(struct corpus *c, const char *path, const struct tokenizer *tok,
		       char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->path = path;
	if (is_shard_file(path)) {
		if (shard_open_checked(&c->shard, path, err, errlen))
			return -1;
		c->is_shard = true;
		if (tokenizer_check_same(&c->shard.tok, path, tok, "the checkpoint", err, errlen))
			return -1;
		c->tokens = c->shard.tokens;
		c->n_tokens = c->shard.hdr.n_tokens;
		c->source_bytes = c->shard.hdr.source_bytes;
		c->scored_bytes = c->source_bytes - (c->n_tokens ? 1 : 0);
		if (c->shard.tok.n_merges && c->n_tokens) {
			struct bpe b;
			size_t first;

			bpe_init(&b, &c->shard.tok);
			bpe_token_bytes(&b, c->tokens[0], &first);
			bpe_free(&b);
			if (first > c->source_bytes)
				return log_fail(err, errlen, "%s: source bytes %llu are fewer than "
						"its first token's", path,
						(unsigned long long)c->source_bytes);
			c->scored_bytes = c->source_bytes - first;
		}
	} else {
		struct tokenizer bytes;
		unsigned char *text;
		size_t n;

		tokenizer_init_bytes(&bytes);
		if (!tokenizer_equal(&bytes, tok)) {
			return log_fail(err, errlen, "%s: raw text needs the byte tokenizer, the "
					"checkpoint has '%s': give token shards made with its tokenizer",
					path, tok->id);
		}
		if (textfile_read_all(path, EVAL_MAX_TEXT_BYTES, &text, &n, err, errlen))
			return -1;
		c->owned = xmalloc(sizeof(uint16_t) * (n ? n : 1));
		c->n_tokens = tokenizer_encode(c->owned, tok, text, n);
		c->source_bytes = n;
		c->scored_bytes = n ? n - 1 : 0;
		c->tokens = c->owned;
		free(text);
	}
	if (c->n_tokens < 2) {
		return log_fail(err, errlen, "%s: %llu tokens: a corpus needs at least 2 (one target)",
				path, (unsigned long long)c->n_tokens);
	}
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

/* Forward of one batch through the pipeline; adds the real targets' losses. */
static void score_batch(struct train_step *ts, const int32_t *in, const int32_t *tg,
			const int64_t *valid, struct score *s)
{
	struct model *m = ts->m;
	const int64_t B = m->cfg.micro_batch, T = m->cfg.seq_len;

	train_step_forward_only(ts, in, tg, 0);
	for (int64_t r = 0; r < B; r++) {
		s->targets += (double)valid[r];
		if (m->last_stage)
			for (int64_t t = 0; t < valid[r]; t++)
				s->nll += m->micro[0].losses[r * T + t];
	}
}

/* Windows of T targets, each scored from a zero state; DP ranks take contiguous
 * ranges of windows. */
static struct score score_windows(struct train_step *ts, const struct corpus *c,
				  const struct grid *g)
{
	const int64_t B = ts->m->cfg.micro_batch, T = ts->m->cfg.seq_len;
	const uint64_t windows = (c->n_tokens - 1 + (uint64_t)T - 1) / (uint64_t)T;
	const uint64_t w0 = windows * (uint64_t)g->dp_rank / (uint64_t)g->dp_size;
	const uint64_t w1 = windows * (uint64_t)(g->dp_rank + 1) / (uint64_t)g->dp_size;
	/* Every DP rank runs as many batches (padding with empty rows), so a rank with
	 * one window fewer still joins each pipeline transfer in step. */
	const uint64_t per_rank = (windows + (uint64_t)g->dp_size - 1) / (uint64_t)g->dp_size;
	int32_t *in = xmalloc(sizeof(int32_t) * (size_t)(B * T));
	int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)(B * T));
	int64_t *valid = xmalloc(sizeof(int64_t) * (size_t)B);
	struct score s = {0, 0};

	for (uint64_t w = w0; w < w0 + per_rank; w += (uint64_t)B) {
		for (int64_t r = 0; r < B; r++) {
			uint64_t win = w + (uint64_t)r;

			valid[r] = win < w1 ? fill_row(in + r * T, tg + r * T, c, win * (uint64_t)T, T)
					    : 0;
			if (win >= w1)
				fill_row(in + r * T, tg + r * T, c, 0, T);
		}
		score_batch(ts, in, tg, valid, &s);
	}
	free(in);
	free(tg);
	free(valid);
	return s;
}

/* The whole corpus as one sequence in pieces of T, the state carried across. */
static struct score score_stream(struct train_step *ts, const struct corpus *c)
{
	struct model *m = ts->m;
	const int64_t T = m->cfg.seq_len;
	int32_t *in = xmalloc(sizeof(int32_t) * (size_t)T);
	int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)T);
	struct score s = {0, 0};

	model_stream_begin(m);
	for (uint64_t start = 0; start + 1 < c->n_tokens; start += (uint64_t)T) {
		int64_t valid = fill_row(in, tg, c, start, T);

		model_set_first_position(m, (int64_t)start);
		score_batch(ts, in, tg, &valid, &s);
	}
	model_stream_end(m);
	free(in);
	free(tg);
	return s;
}

/* One JSON line per corpus, written to path.tmp then renamed: never half a file. */
static int write_output(const char *path, const struct eval_settings *set, struct corpus *cs,
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
			   "\"bits_per_byte\":%.9g,\"mode\":\"%s\",\"form\":\"%s\"}\n",
			res[i][0], res[i][1], res[i][2], res[i][3], res[i][4], set->mode, set->form);
	}
	if (fflush(f) || ferror(f) || fclose(f) || rename(tmp, path)) {
		snprintf(err, errlen, "--output: cannot write '%s'", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct eval_settings set = {.iteration = -1, .micro_batch_size = 1,
				    .tensor_model_parallel_size = 1,
				    .pipeline_model_parallel_size = 1};
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	struct grid g;
	int world;
	bool ok;

	/* ---- setup ---------------------------------------------------------- */
	mpi_setup_init(&argc, &argv);
	snprintf(set.mode, sizeof(set.mode), "windows");
	snprintf(set.form, sizeof(set.form), "chunkwise");
	ok = flags_parse(&eval_flags, &set, argc, argv, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	if (set.help) {
		if (log_rank() == 0) {
			printf("usage: mpirun -n N retnet-eval --load DIR --data FILE... [flags]\n");
			flags_print_help(&eval_flags);
		}
		mpi_setup_finalize();
		return 0;
	}
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
	if (!set.load[0])
		snprintf(err, sizeof(err), "--load: required (a checkpoint directory)");
	else if (!set.n_data)
		snprintf(err, sizeof(err), "--data: required (one or more corpora)");
	else if (strcmp(set.mode, "windows") && strcmp(set.mode, "stream"))
		snprintf(err, sizeof(err), "--mode: '%s' is not windows or stream", set.mode);
	else if (strcmp(set.form, "chunkwise") && strcmp(set.form, "parallel") &&
		 strcmp(set.form, "recurrent"))
		snprintf(err, sizeof(err), "--form: '%s' is not chunkwise, parallel or recurrent",
			 set.form);
	else if (!strcmp(set.mode, "stream") && !strcmp(set.form, "parallel"))
		snprintf(err, sizeof(err), "--form: parallel cannot carry a state across pieces: "
			 "use --mode windows or --form chunkwise|recurrent");
	else if (grid_validate(world, (int)set.tensor_model_parallel_size,
			       (int)set.pipeline_model_parallel_size, err, sizeof(err)) == 0 &&
		 !strcmp(set.mode, "stream") &&
		 world != set.tensor_model_parallel_size * set.pipeline_model_parallel_size)
		snprintf(err, sizeof(err), "--mode: stream scores one sequence: run with world = "
			 "TP x PP = %lld ranks (no data parallelism), not %d",
			 (long long)(set.tensor_model_parallel_size *
				     set.pipeline_model_parallel_size), world);
	mpi_setup_agree_or_exit(!err[0], err);

	/* The checkpoint says what the model is. */
	int64_t iteration;
	struct ckpt_info info;

	ok = train_ckpt_resolve(set.load, set.iteration, &iteration, MPI_COMM_WORLD, err,
				sizeof(err)) == 0 &&
	     train_ckpt_read_info(set.load, iteration, &info, MPI_COMM_WORLD, err,
				  sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);

	struct model_config mc;
	const bool stream = !strcmp(set.mode, "stream");

	ok = train_ckpt_model_config(&info, set.seq_length, set.chunk_size,
				     stream ? 1 : set.micro_batch_size,
				     set.tensor_model_parallel_size,
				     set.pipeline_model_parallel_size, &mc, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	grid_init(&g, (int)set.tensor_model_parallel_size, (int)set.pipeline_model_parallel_size);

	/* ---- corpora -------------------------------------------------------- */
	struct corpus *cs = xcalloc((size_t)set.n_data, sizeof(*cs));

	for (int i = 0; i < set.n_data; i++) {
		ok = corpus_open(&cs[i], set.data[i], &info.tok, err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}

	/* ---- model ---------------------------------------------------------- */
	struct model m;
	struct train_step ts;

	ok = train_ckpt_build_model(&m, set.load, iteration, &mc, &g, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	/* The checkpoint is float32 whatever trained it; --bf16 only changes the matmuls. */
	ok = !set.bf16 || model_set_bf16(&m, true, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	m.form = !strcmp(set.form, "parallel")	  ? RETENTION_PARALLEL
		 : !strcmp(set.form, "recurrent") ? RETENTION_RECURRENT
						  : RETENTION_CHUNKWISE;
	train_step_init(&ts, &m, &g, 1);
	log0("retnet-eval: %s (iteration %lld): d=%lld L=%lld H=%lld; %s mode, %s form, "
	     "%s matmuls, T=%lld, %d ranks (DP %d x PP %d x TP %d)\n",
	     info.path, (long long)iteration, (long long)mc.hidden, (long long)mc.layers,
	     (long long)mc.heads, set.mode, set.form, set.bf16 ? "bf16" : "fp32",
	     (long long)mc.seq_len, g.world_size, g.dp_size, g.pp_size, g.tp_size);

	/* ---- score ---------------------------------------------------------- */
	double (*res)[5] = xcalloc((size_t)set.n_data, sizeof(*res));

	log0("%-40s %12s %12s %10s %12s %14s %8s\n", "corpus", "tokens", "bytes", "nll",
	     "perplexity", "bits/byte", "tok/s");
	for (int i = 0; i < set.n_data; i++) {
		double t0 = metrics_now_s(), sums[2], bytes;
		struct score s = stream ? score_stream(&ts, &cs[i]) : score_windows(&ts, &cs[i], &g);

		/* The losses live on the last stage, spread over the DP ranks. */
		sums[0] = s.nll;
		sums[1] = s.targets;
		comm_allreduce_sum_f64(g.pp_comm, sums, 1);
		comm_allreduce_sum_f64(g.dp_comm, sums, 2);
		/* Bytes behind the scored tokens: every token but the first is scored. */
		ENSURE(sums[1] == (double)(cs[i].n_tokens - 1));
		bytes = (double)cs[i].scored_bytes;
		res[i][0] = sums[1];
		res[i][1] = bytes;
		res[i][2] = sums[0] / sums[1];
		res[i][3] = exp(res[i][2]);
		res[i][4] = sums[0] / LN2 / bytes;
		log0("%-40s %12.0f %12.0f %10.5f %12.4f %14.5f %8.0f\n", cs[i].path, res[i][0],
		     res[i][1], res[i][2], res[i][3], res[i][4],
		     res[i][0] / (metrics_now_s() - t0));
	}

	/* ---- report --------------------------------------------------------- */
	if (set.output[0]) {
		ok = g.world_rank != 0 ||
		     write_output(set.output, &set, cs, (const double(*)[5])res, set.n_data, err,
				  sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}
	free(res);
	train_step_free(&ts);
	model_free(&m);
	for (int i = 0; i < set.n_data; i++)
		corpus_close(&cs[i]);
	free(cs);
	grid_free(&g);
	mpi_setup_finalize();
	return 0;
}
