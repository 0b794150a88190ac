/*
 * retnet-prep: text corpora -> token shards for training, validation and test.
 *
 *   retnet-prep --output-prefix PREFIX [--split TRAIN,VALID,TEST | --held-out-fraction F
 *               | --held-out PATH...] [--tokenizer bytes | --tokenizer bpe --vocab-size V
 *               | --tokenizer-from CHECKPOINT_DIR|SHARD | --tokenizer-type
 *               GPT2BPETokenizer --vocab-file F --merge-file F | --tokenizer-json F]
 *               [--append-eod [--split-documents file|blank-line]] [--force] INPUT...
 *
 *   flags      the run specification's rows for retnet-prep (trainer/spec.c)
 *   inputs     files, or directories' regular files in sorted name order
 *              (data/textfile.h), concatenated byte for byte into one text; each
 *              read once and checked before anything is written
 *   split      the parts' byte ranges, cut at line starts (below), found before
 *              anything is learned or written
 *   tokenizer  bytes; BPE learned from exactly the training part's bytes; GPT-2's
 *              from its files (data/gpt2bpe_load.h); or the tokenizer of a checkpoint
 *              (--tokenizer-from DIR: its latest) or of a token shard
 *   documents  with --append-eod, the end-of-document id after each document: each
 *              input file, or (--split-documents blank-line) also each block of
 *              lines ended by a blank line, i.e. after every run of two or more
 *              '\n' that more text of the same file follows. A document's pieces
 *              end with it (the encoder is flushed there). The id counts no source
 *              byte. A document the split cuts in two ends only in the later part.
 *   write      one more pass streams every part into its shard (atomic writes)
 *   report     one line per shard
 *
 * Split. The text of B bytes is cut into the parts of positive weight, in the
 * order of --split (train, valid, test unless named otherwise). Every part but
 * the first gets floor(B x weight / total weight) bytes, counted from the end of
 * the text, the first part the rest; each boundary then moves forward to the first
 * line start (a byte that follows '\n') at or after it, or stays where it is when
 * no line starts between it and the end. So no line is split between two parts,
 * the parts are disjoint and together are the text, and the result depends on the
 * bytes alone, not on how they were passed. --held-out-fraction F is the two parts
 * (1 - F, F) of exactly that rule; --held-out PATH makes the INPUTs the training
 * part and the PATHs the validation part.
 *
 * Reading a checkpoint needs MPI (parallel HDF5): for --tokenizer-from DIR only,
 * MPI is started as a singleton, the tokenizer read, and MPI finalized again;
 * otherwise this program makes no MPI call.
 *
 * Passes over the text: check (read, count), cut (to the last boundary), learn
 * (BPE: the training part), write; memory stays at a few MiB whatever the corpus
 * size (BPE: plus its distinct pieces).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/bpe.h"
#include "data/codec.h"
#include "data/gpt2bpe.h"
#include "data/gpt2bpe_load.h"
#include "data/shard.h"
#include "data/textfile.h"
#include "data/tokenizer.h"
#include "parallel/mpi_setup.h"
#include "trainer/spec.h"
#include "trainer/train_ckpt.h"

#define EXIT_USAGE 2

static const char *const part_names[SPEC_PARTS] = {"train", "valid", "test"};

/* One part: a byte range of one list of inputs, and the shard it goes to. */
struct part {
	enum spec_part which;
	const struct text_inputs *list; /* the inputs, or the --held-out ones */
	uint64_t begin, end;            /* bytes of that list's text */
	char *path;                     /* PREFIX-<name>.bin */
	struct shard_writer w;
	struct codec_stream stream;
	bool open;
};

struct prep {
	struct run_spec spec;
	struct gpt2bpe gpt2;            /* GPT-2's tokenizer, when read from its files */
	struct text_inputs inputs, held;
	struct part parts[SPEC_PARTS];  /* in the order of the text */
	int nparts;
	bool by_fraction, at_line;
	struct tokenizer tok;           /* the merges, if any, in `merges` */
	uint16_t *merges;               /* owned */
	struct codec codec;
	unsigned char *buf;             /* (TEXTFILE_CHUNK_BYTES) */
	uint16_t *ids;                  /* (TEXTFILE_CHUNK_BYTES + CODEC_HOLD_MAX) */
};

static char err[SHARD_ERR_LEN + FLAGS_PATH_MAX];

static _Noreturn void fail(void)
{
	log_error("%s", err);
	exit(EXIT_USAGE);
}

static double now_seconds(void)
{
	struct timespec ts;

	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &ts));
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ tokenizer */

/* The tokenizer of the latest checkpoint in dir: a singleton MPI job for the read. */
static void tokenizer_of_checkpoint(struct prep *p, const char *dir, int *argc, char ***argv)
{
	struct ckpt_info *info = xcalloc(1, sizeof(*info));
	int64_t iteration;
	int world;
	bool ok;

	mpi_setup_init(argc, argv);
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
	snprintf(err, sizeof(err), "retnet-prep: runs as one process, not %d", world);
	mpi_setup_agree_or_exit(world == 1, err);
	ok = train_ckpt_resolve(dir, -1, &iteration, MPI_COMM_WORLD, err, sizeof(err)) == 0 &&
	     train_ckpt_read_info(dir, iteration, info, MPI_COMM_WORLD, err, sizeof(err)) == 0;
	if (ok && train_ckpt_lacks_merges(info)) {
		snprintf(err, sizeof(err), "%s: tokenizer '%s' without its merge table (a "
			 "checkpoint written before checkpoints carried it): give --tokenizer-from "
			 "a token shard made with it", info->path, info->tok.id);
		ok = false;
	}
	mpi_setup_agree_or_exit(ok, err);
	p->tok = info->tok;
	if (info->tok.n_merges) {
		size_t bytes = 2 * (size_t)info->tok.n_merges * sizeof(uint16_t);

		p->merges = xmalloc(bytes);
		memcpy(p->merges, info->tok.merges, bytes);
		p->tok.merges = p->merges;
	}
	/* a GPT-2 table, checked by the read: owned by p->gpt2 from here */
	if (info->tok.table) {
		ENSURE(gpt2bpe_init(&p->gpt2, &info->tok, info->path, err, sizeof(err)) == 0);
		p->tok = p->gpt2.tok;
	}
	train_ckpt_info_free(info);
	free(info);
	mpi_setup_finalize();
	fatal_set_hook(NULL); /* MPI is gone: a fatal error aborts this process alone */
}

/* The tokenizer of a token shard (checked as every shard is opened). */
static void tokenizer_of_shard(struct prep *p, const char *path)
{
	struct shard sh;

	if (shard_open_checked(&sh, path, err, sizeof(err)))
		fail();
	p->tok = sh.tok;
	if (sh.tok.n_merges) {
		size_t bytes = 2 * (size_t)sh.tok.n_merges * sizeof(uint16_t);

		p->merges = xmalloc(bytes);
		memcpy(p->merges, sh.tok.merges, bytes);
		p->tok.merges = p->merges;
	}
	if (sh.tok.table) {
		ENSURE(gpt2bpe_init(&p->gpt2, &sh.tok, path, err, sizeof(err)) == 0);
		p->tok = p->gpt2.tok;
	}
	shard_close(&sh);
}

static void tokenizer_from(struct prep *p, int *argc, char ***argv)
{
	const char *from = p->spec.tokenizer_from;
	struct stat st;

	if (stat(from, &st) != 0) {
		snprintf(err, sizeof(err), "--tokenizer-from: '%s': cannot open: %s", from,
			 strerror(errno));
		fail();
	}
	if (S_ISDIR(st.st_mode))
		tokenizer_of_checkpoint(p, from, argc, argv);
	else
		tokenizer_of_shard(p, from);
}

/* GPT-2's tokenizer from --vocab-file/--merge-file or --tokenizer-json. */
static void tokenizer_gpt2(struct prep *p)
{
	const struct run_spec *s = &p->spec;

	if ((s->tokenizer_json[0] ? gpt2bpe_load_json(&p->gpt2, s->tokenizer_json, err,
						      sizeof(err))
	     : gpt2bpe_load_pair(&p->gpt2, s->vocab_file, s->merge_file, err, sizeof(err))))
		fail();
	p->tok = p->gpt2.tok;
}

/* --append-eod needs the tokenizer's end-of-document id: refused before any work. */
static void check_eod(const struct prep *p)
{
	const struct run_spec *s = &p->spec;

	if (!s->append_eod || p->tok.eod_id >= 0)
		return;
	if (s->tokenizer_from[0])
		snprintf(err, sizeof(err), "%s: tokenizer \"%s\" has no end-of-document id: "
			 "--append-eod needs one", s->tokenizer_from, p->tok.id);
	else
		snprintf(err, sizeof(err), "%s: no \"" GPT2BPE_EOD_TOKEN "\" token: --append-eod "
			 "needs an end-of-document token in the vocabulary",
			 s->tokenizer_json[0] ? s->tokenizer_json : s->vocab_file);
	fail();
}

/* The BPE pass: count the pieces of exactly the training part's bytes. */
struct learn {
	struct bpe_learner *l;
	uint64_t pos, begin, end;
};

static int learn_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct learn *s = ctx;
	uint64_t p0 = s->pos, a = s->begin > p0 ? s->begin : p0;
	uint64_t b = s->end < p0 + n ? s->end : p0 + n;

	s->pos += n;
	if (a < b)
		bpe_learner_feed(s->l, buf + (a - p0), (size_t)(b - a), false);
	return s->pos >= s->end ? 1 : 0; /* 1: the rest is not the training part */
}

static void learn_merges(struct prep *p, const struct part *train)
{
	struct learn s = {.l = bpe_learner_new(), .begin = train->begin, .end = train->end};
	uint32_t vocab = (uint32_t)p->spec.vocab_size;
	double t0 = now_seconds();

	for (int i = 0; i < train->list->n && s.pos < s.end; i++) {
		uint64_t bytes;
		bool gz;

		if (textfile_read(train->list->v[i].path, p->buf, learn_chunk, &s, &bytes, &gz,
				  err, sizeof(err)) < 0)
			fail();
	}
	if (bpe_learner_merges(s.l, vocab, &p->merges, "--vocab-size", err, sizeof(err)) ||
	    tokenizer_init_bpe(&p->tok, p->merges, vocab - TOKENIZER_BYTES_VOCAB, "--vocab-size",
			       err, sizeof(err)))
		fail();
	bpe_learner_free(s.l);
	printf("retnet-prep: learned %u BPE merges in %.2f s\n", vocab - TOKENIZER_BYTES_VOCAB,
	       now_seconds() - t0);
}

/* ------------------------------------------------------------------ split */

/* The boundaries' first line starts: for each target, the first byte after a '\n'
 * at or after it and before the end (else the target itself). */
struct cuts {
	uint64_t pos, total;
	uint64_t target[SPEC_PARTS], cut[SPEC_PARTS];
	int n, next;    /* targets, and the first not yet found */
	bool line[SPEC_PARTS];
};

static int cut_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct cuts *c = ctx;
	const uint64_t p0 = c->pos;

	c->pos += n;
	while (c->next < c->n) {
		/* a '\n' at p0 + j starts a line at p0 + j + 1 >= target */
		uint64_t t = c->target[c->next], from = t - 1 > p0 ? t - 1 - p0 : 0;
		const unsigned char *nl = from < n ? memchr(buf + from, '\n', n - from) : NULL;

		if (!nl)
			return 0;
		if (p0 + (uint64_t)(nl - buf) + 1 >= c->total)
			return 1; /* the last byte: no line starts after the target */
		c->cut[c->next] = p0 + (uint64_t)(nl - buf) + 1;
		c->line[c->next++] = true;
	}
	return 1;
}

/* Every boundary of the parts of the inputs' text (split mode). */
static void find_cuts(struct prep *p, const struct spec_split *sp, double total_weight)
{
	const uint64_t B = textfile_total(&p->inputs);
	struct cuts c = {.total = B};
	uint64_t from_end = 0, size[SPEC_PARTS];

	/* sizes of every part but the first, from the end of the text */
	for (int k = p->nparts - 1; k >= 1; k--) {
		const enum spec_part w = p->parts[k].which;

		size[k] = (uint64_t)((double)B * sp->weight[w] / total_weight);
		if (size[k] == 0) {
			if (p->by_fraction)
				snprintf(err, sizeof(err), "%s: %llu bytes of text are too few to "
					 "hold out %g of them", p->inputs.v[0].path,
					 (unsigned long long)B, p->spec.held_out_fraction);
			else
				snprintf(err, sizeof(err), "%s: %llu bytes of text are too few for a "
					 "%s part of weight %g in %g", p->inputs.v[0].path,
					 (unsigned long long)B, part_names[w], sp->weight[w],
					 total_weight);
			fail();
		}
		from_end += size[k];
	}
	for (int k = 1; k < p->nparts; k++) {
		c.target[c.n++] = B - from_end;
		from_end -= size[k];
	}
	for (int i = 0; i < c.n; i++)
		c.cut[i] = c.target[i];
	for (int i = 0; i < p->inputs.n && c.next < c.n; i++) {
		uint64_t bytes;
		bool gz;

		if (textfile_read(p->inputs.v[i].path, p->buf, cut_chunk, &c, &bytes, &gz, err,
				  sizeof(err)) < 0)
			fail();
	}
	p->at_line = c.n > 0 && c.line[c.n - 1];
	for (int k = 0; k < p->nparts; k++) {
		p->parts[k].begin = k ? c.cut[k - 1] : 0;
		p->parts[k].end = k + 1 < p->nparts ? c.cut[k] : B;
		if (p->parts[k].begin == p->parts[k].end) {
			snprintf(err, sizeof(err), "%s: the %s part came out empty: its boundaries "
				 "fall on the same line start (lines longer than the part)",
				 p->spec.output_prefix, part_names[p->parts[k].which]);
			fail();
		}
	}
}

/* The parts, their lists and their byte ranges. */
static void plan_parts(struct prep *p)
{
	const struct run_spec *s = &p->spec;
	struct spec_split sp;
	double total = 0;

	if (p->held.n) {
		p->parts[0] = (struct part){.which = SPEC_PART_TRAIN, .list = &p->inputs,
					    .end = textfile_total(&p->inputs)};
		p->parts[1] = (struct part){.which = SPEC_PART_VALID, .list = &p->held,
					    .end = textfile_total(&p->held)};
		p->nparts = 2;
		return;
	}
	p->by_fraction = spec_given(s, &s->held_out_fraction);
	if (p->by_fraction) {
		sp = (struct spec_split){.order = {SPEC_PART_TRAIN, SPEC_PART_VALID, SPEC_PART_TEST},
					 .weight = {1.0 - s->held_out_fraction,
						    s->held_out_fraction, 0}};
		total = 1.0; /* so the held-out size is exactly floor(F x B) */
	} else {
		ENSURE(spec_parse_split(s->split, &sp, err, sizeof(err)) == 0);
		for (int k = 0; k < SPEC_PARTS; k++)
			total += sp.weight[k];
	}
	for (int k = 0; k < SPEC_PARTS; k++)
		if (sp.weight[sp.order[k]] > 0)
			p->parts[p->nparts++] = (struct part){.which = sp.order[k],
							      .list = &p->inputs};
	find_cuts(p, &sp, total);
}

/* ------------------------------------------------------------------ writing */

static struct part *part_of(struct prep *p, enum spec_part which)
{
	for (int k = 0; k < p->nparts; k++)
		if (p->parts[k].which == which)
			return &p->parts[k];
	return NULL;
}

/* n more bytes of a part (final: its last ones; buf may then be NULL). */
static int emit(struct prep *p, struct part *t, const unsigned char *buf, size_t n, bool final)
{
	uint64_t bytes;
	size_t ids = codec_stream_encode(&t->stream, buf, n, final, p->ids, &bytes);

	return shard_writer_append(&t->w, p->ids, ids, bytes, err, sizeof(err));
}

struct route {
	struct prep *p;
	const struct text_inputs *list;
	uint64_t pos;
	uint64_t newlines;  /* the run of '\n' the text read so far ends with */
};

/* Each part of this list takes its bytes of the chunk; a part that ends here is
 * flushed. */
static int route_bytes(struct route *r, const unsigned char *buf, size_t n)
{
	const uint64_t p0 = r->pos, p1 = p0 + n;

	r->pos = p1;
	for (int k = 0; k < r->p->nparts; k++) {
		struct part *t = &r->p->parts[k];
		uint64_t a = t->begin > p0 ? t->begin : p0, b = t->end < p1 ? t->end : p1;

		if (t->list != r->list || a >= b)
			continue;
		if (emit(r->p, t, buf + (a - p0), (size_t)(b - a), false) ||
		    (b == t->end && emit(r->p, t, NULL, 0, true)))
			return -1;
	}
	return 0;
}

/* A document ends at the current position: the part it ends in (the one whose
 * bytes end at or after it) flushes its pieces and takes the end-of-document id. */
static int document_end(struct route *r)
{
	for (int k = 0; k < r->p->nparts; k++) {
		struct part *t = &r->p->parts[k];
		const uint16_t eod = (uint16_t)r->p->tok.eod_id;

		if (t->list != r->list || r->pos <= t->begin || r->pos > t->end)
			continue;
		if (emit(r->p, t, NULL, 0, true) ||
		    shard_writer_append(&t->w, &eod, 1, 0, err, sizeof(err)))
			return -1;
		codec_stream_init(&t->stream, &r->p->codec);
	}
	return 0;
}

/* The chunk's bytes to their parts; with --split-documents blank-line, a document
 * ends before the first byte that follows a run of two or more '\n'. */
static int route_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct route *r = ctx;
	const struct run_spec *s = &r->p->spec;
	size_t from = 0;

	if (!s->append_eod || strcmp(s->split_documents, "blank-line"))
		return route_bytes(r, buf, n);
	for (size_t j = 0; j < n; j++) {
		if (buf[j] == '\n') {
			r->newlines++;
			continue;
		}
		if (r->newlines >= 2) {
			if (route_bytes(r, buf + from, j - from) || document_end(r))
				return -1;
			from = j;
		}
		r->newlines = 0;
	}
	return route_bytes(r, buf + from, n - from);
}

/* The write pass over one list; checks the text did not change since it was read. */
static int stream_list(struct prep *p, const struct text_inputs *list)
{
	struct route r = {p, list, 0, 0};

	for (int i = 0; i < list->n; i++) {
		uint64_t bytes;
		bool gz;

		r.newlines = 0; /* a blank line does not span two files */
		if (textfile_read(list->v[i].path, p->buf, route_chunk, &r, &bytes, &gz, err,
				  sizeof(err)))
			return -1;
		/* every file ends a document */
		if (p->spec.append_eod && document_end(&r))
			return -1;
		if (bytes != list->v[i].bytes) {
			snprintf(err, sizeof(err), "%s: changed while being read (%llu bytes, then "
				 "%llu)", list->v[i].path, (unsigned long long)list->v[i].bytes,
				 (unsigned long long)bytes);
			return -1;
		}
	}
	return 0;
}

static void abort_all(struct prep *p)
{
	for (int k = 0; k < p->nparts; k++)
		if (p->parts[k].open)
			shard_writer_abort(&p->parts[k].w);
}

static void write_parts(struct prep *p)
{
	const unsigned flags = p->spec.force ? SHARD_OVERWRITE : 0;
	struct stat st;

	for (int k = 0; k < p->nparts; k++) {
		struct part *t = &p->parts[k];
		size_t len = strlen(p->spec.output_prefix) + 16;

		t->path = xmalloc(len);
		snprintf(t->path, len, "%s-%s.bin", p->spec.output_prefix, part_names[t->which]);
	}
	/* refuse before writing anything (shard_writer_open refuses too, race-free) */
	for (int w = 0; w < SPEC_PARTS && !p->spec.force; w++) {
		struct part *t = part_of(p, (enum spec_part)w);

		if (t && lstat(t->path, &st) == 0) {
			snprintf(err, sizeof(err), "%s: already exists (pass --force to overwrite)",
				 t->path);
			fail();
		}
	}
	for (int k = 0; k < p->nparts; k++) {
		struct part *t = &p->parts[k];

		if (shard_writer_open(&t->w, t->path, &p->tok, flags, err, sizeof(err))) {
			abort_all(p);
			fail();
		}
		t->open = true;
		codec_stream_init(&t->stream, &p->codec);
	}
	if (stream_list(p, &p->inputs) || (p->held.n && stream_list(p, &p->held)))
		goto out_abort;
	for (int k = 0; k < p->nparts; k++)
		if (p->parts[k].w.hdr.n_tokens == 0) {
			/* Only reachable through a race with the inputs changing. */
			snprintf(err, sizeof(err), "%s: the %s part came out empty", p->parts[k].path,
				 part_names[p->parts[k].which]);
			goto out_abort;
		}
	for (int w = 0; w < SPEC_PARTS; w++) {
		struct part *t = part_of(p, (enum spec_part)w);

		if (!t)
			continue;
		t->open = false;
		if (shard_writer_commit(&t->w, err, sizeof(err)))
			goto out_abort;
	}
	return;

out_abort:
	/* A writer whose append failed has aborted itself; abort is idempotent. */
	abort_all(p);
	fail();
}

/* ------------------------------------------------------------------ main */

static void report(const struct prep *p, double t0)
{
	const int nfiles = p->inputs.n + p->held.n;
	int ngz = 0;

	for (int i = 0; i < p->inputs.n; i++)
		ngz += p->inputs.v[i].gzip;
	for (int i = 0; i < p->held.n; i++)
		ngz += p->held.v[i].gzip;
	printf("retnet-prep: %d input file%s (%d gzip), %llu bytes; tokenizer %s (vocab %u)\n",
	       nfiles, nfiles == 1 ? "" : "s", ngz,
	       (unsigned long long)(textfile_total(&p->inputs) + textfile_total(&p->held)),
	       p->tok.id, p->tok.vocab);
	if (p->held.n) {
		printf("retnet-prep: held out %d file%s given with --held-out\n", p->held.n,
		       p->held.n == 1 ? "" : "s");
	} else if (p->by_fraction) {
		const struct part *v = &p->parts[1];

		printf("retnet-prep: held out the last %.2f%% of the bytes (asked %g), cut %s at "
		       "byte %llu\n", 100.0 * (double)(v->end - v->begin) /
		       (double)textfile_total(&p->inputs), p->spec.held_out_fraction,
		       p->at_line ? "at a line start" : "mid-line (no line start left)",
		       (unsigned long long)v->begin);
	} else {
		printf("retnet-prep: split %s:", p->spec.split);
		for (int k = 0; k < p->nparts; k++)
			printf(" %s bytes [%llu, %llu)", part_names[p->parts[k].which],
			       (unsigned long long)p->parts[k].begin,
			       (unsigned long long)p->parts[k].end);
		printf(", cut at line starts\n");
	}
	for (int w = 0; w < SPEC_PARTS; w++) {
		const struct part *t = NULL;

		for (int k = 0; k < p->nparts; k++)
			if (p->parts[k].which == (enum spec_part)w)
				t = &p->parts[k];
		if (t)
			printf("retnet-prep: %s: %llu tokens from %llu bytes\n", t->path,
			       (unsigned long long)t->w.hdr.n_tokens,
			       (unsigned long long)t->w.hdr.source_bytes);
	}
	printf("retnet-prep: done in %.3f s\n", now_seconds() - t0);
}

int main(int argc, char **argv)
{
	struct prep *p = xcalloc(1, sizeof(*p));
	struct run_spec *s = &p->spec;
	double t0 = now_seconds();
	int rc;

	/* ---- flags ---- */
	rc = spec_parse(s, SPEC_PREP, argc, argv, err, sizeof(err));
	if (rc == 1) {
		spec_print_help(SPEC_PREP);
		spec_free(s);
		free(p);
		return 0;
	}
	if (rc || spec_validate(s, 1, err, sizeof(err)))
		fail();

	/* ---- tokenizer that encodes (a learned one comes after the split) ---- */
	tokenizer_init_bytes(&p->tok);
	if (s->tokenizer_from[0])
		tokenizer_from(p, &argc, &argv);
	if (s->tokenizer_type[0] || s->tokenizer_json[0])
		tokenizer_gpt2(p);
	check_eod(p);

	/* ---- inputs: expanded, each read once (checked, counted) ---- */
	p->buf = xmalloc(TEXTFILE_CHUNK_BYTES);
	if (textfile_expand(&p->inputs, (const char *const *)s->input.path, s->input.n, err,
			    sizeof(err)) ||
	    textfile_expand(&p->held, (const char *const *)s->held_out.path, s->held_out.n, err,
			    sizeof(err)) ||
	    textfile_check(&p->inputs, p->buf, NULL, NULL, err, sizeof(err)) ||
	    textfile_check(&p->held, p->buf, NULL, NULL, err, sizeof(err)))
		fail();

	/* ---- split: every part's bytes, before anything is learned ---- */
	plan_parts(p);

	/* ---- tokenizer: BPE from exactly the training part ---- */
	if (!strcmp(s->tokenizer, "bpe"))
		learn_merges(p, part_of(p, SPEC_PART_TRAIN));
	if (codec_init(&p->codec, &p->tok, s->tokenizer_from[0] ? s->tokenizer_from
			       : s->tokenizer_json[0] ? s->tokenizer_json
			       : s->vocab_file[0] ? s->vocab_file : "--tokenizer", err, sizeof(err)))
		fail();

	/* ---- write: every part streamed into its shard ---- */
	p->ids = xmalloc(sizeof(uint16_t) * (TEXTFILE_CHUNK_BYTES + CODEC_HOLD_MAX));
	write_parts(p);

	/* ---- report ---- */
	report(p, t0);

	for (int k = 0; k < p->nparts; k++)
		free(p->parts[k].path);
	codec_free(&p->codec);
	gpt2bpe_free(&p->gpt2);
	free(p->ids);
	free(p->buf);
	free(p->merges);
	textfile_inputs_free(&p->inputs);
	textfile_inputs_free(&p->held);
	spec_free(s);
	free(p);
	return 0;
}
