/*
 * retnet-prep: text corpora -> token shards for training and evaluation.
 *
 *   retnet-prep --output-prefix PREFIX [--held-out-fraction F | --held-out PATH]...
 *               [--tokenizer bytes | --tokenizer bpe --vocab-size V] [--force] INPUT...
 *
 * Inputs are files or directories; a directory contributes its regular files
 * (not recursive, names starting with '.' skipped) in byte-wise sorted name
 * order. Each file is plain text or gzip, told apart by its content (zlib's
 * gzread reads both). The inputs are concatenated byte for byte, in the order
 * given, into one text stream; the byte tokenizer makes one token per byte, the
 * BPE tokenizer (data/bpe.h) learns V - 256 merges from the training text (the
 * bytes before the held-out cut, never the held-out ones) and stores them in both
 * shards.
 *
 * Split. Default: the LAST fraction F (0.05) of the stream, by bytes, is held
 * out. With B bytes the cut is the first line start at or after byte
 * B - floor(F * B) (a line start is a byte that follows '\n'); when the text from
 * there to the end holds no line start, the cut is at exactly that byte. So the
 * held-out part is the last whole lines making up at most F of the bytes: simple,
 * deterministic, and the usual "last 5% of the bytes" benchmark split. With
 * --held-out PATH (repeatable, files or directories) the INPUTs are all training
 * text and the PATHs are the held-out text.
 *
 * Outputs: PREFIX-train.bin and PREFIX-valid.bin (data/shard.h), written
 * atomically. Existing outputs are refused unless --force.
 *
 * Order: every input is read to the end and checked (missing, unreadable, not a
 * regular file, empty, invalid or truncated gzip, directory without regular
 * files) before anything is written; a bad input is one line
 * "retnet: error: <file>: <rule>" and exit status 2, and nothing is written.
 * The text is then read a second time and streamed into the shards, so memory
 * stays at a few MiB whatever the corpus size (BPE: plus its distinct pieces,
 * counted in one more pass before that).
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/bpe.h"
#include "data/shard.h"
#include "data/textfile.h"
#include "data/tokenizer.h"

#define CHUNK_BYTES TEXTFILE_CHUNK_BYTES
#define EXIT_USAGE 2

struct input {
	char *path;
	uint64_t bytes;		/* text bytes, after decompression (pass 1) */
	bool gzip;
};

struct input_list {
	struct input *v;	/* (n) */
	int n, cap;
};

struct opts {
	const char *prefix;
	double fraction;	/* of the bytes held out, when no --held-out */
	bool fraction_given;
	bool force;
	bool bpe;		/* --tokenizer bpe */
	long vocab;		/* --vocab-size, 0 when not given */
	struct input_list train, valid;	/* paths as given; expanded later */
	const char **train_args, **valid_args;
	int n_train_args, n_valid_args;
};

static char err[SHARD_ERR_LEN];

static _Noreturn void fail(void);

static void usage(FILE *f)
{
	fprintf(f,
		"usage: retnet-prep --output-prefix PREFIX [--held-out-fraction F | --held-out PATH]...\n"
		"                   [--force] INPUT...\n"
		"\n"
		"Turns text (plain or gzip, detected by content; files, or directories whose\n"
		"regular files are taken in sorted name order) into token shards\n"
		"PREFIX-train.bin and PREFIX-valid.bin.\n"
		"\n"
		"  --output-prefix PREFIX   write PREFIX-train.bin and PREFIX-valid.bin\n"
		"  --held-out-fraction F    hold out the last F of the text by bytes, cut at\n"
		"                           a line start (default 0.05, 0 < F < 1)\n"
		"  --held-out PATH          hold out this file or directory instead\n"
		"                           (repeatable; the INPUTs are then all training text)\n"
		"  --tokenizer bytes|bpe    bytes (default): one token per byte, vocabulary 256;\n"
		"                           bpe: byte pairs learned from the training text\n"
		"  --vocab-size V           bpe: vocabulary size, 257 to 65536 (the model's\n"
		"                           --vocab-size must match)\n"
		"  --force                  overwrite existing outputs\n"
		"  --help                   this text\n"
		"\n"
		"A bad input (missing, unreadable, empty, invalid gzip, directory without\n"
		"regular files) is reported on one line, exit status 2, and nothing is written.\n");
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);

	memcpy(p, s, n);
	return p;
}

/* ------------------------------------------------------------------ flags */

/* "--flag value" or "--flag=value"; advances *i over a separate value. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag)
{
	size_t n = strlen(flag);
	const char *a = argv[*i];

	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc) {
		log_error("%s: needs a value", flag);
		exit(EXIT_USAGE);
	}
	return argv[++*i];
}

static bool is_flag(const char *arg, const char *flag)
{
	size_t n = strlen(flag);

	return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	bool flags_done = false;

	o->fraction = 0.05;
	o->train_args = xcalloc((size_t)argc, sizeof(char *));
	o->valid_args = xcalloc((size_t)argc, sizeof(char *));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (flags_done || a[0] != '-' || strcmp(a, "-") == 0) {
			o->train_args[o->n_train_args++] = a;
		} else if (strcmp(a, "--") == 0) {
			flags_done = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (is_flag(a, "--output-prefix")) {
			o->prefix = flag_value(argc, argv, &i, "--output-prefix");
		} else if (is_flag(a, "--held-out-fraction")) {
			const char *v = flag_value(argc, argv, &i, "--held-out-fraction");
			char *end;

			errno = 0;
			o->fraction = strtod(v, &end);
			if (errno || end == v || *end != '\0' || !(o->fraction > 0.0) ||
			    !(o->fraction < 1.0)) {
				log_error("--held-out-fraction: \"%s\" must be a number with "
					  "0 < F < 1", v);
				exit(EXIT_USAGE);
			}
			o->fraction_given = true;
		} else if (is_flag(a, "--held-out")) {
			o->valid_args[o->n_valid_args++] = flag_value(argc, argv, &i,
								      "--held-out");
		} else if (is_flag(a, "--tokenizer")) {
			const char *v = flag_value(argc, argv, &i, "--tokenizer");

			if (strcmp(v, "bpe") != 0 && strcmp(v, "bytes") != 0) {
				log_error("--tokenizer: \"%s\" must be bytes or bpe", v);
				exit(EXIT_USAGE);
			}
			o->bpe = strcmp(v, "bpe") == 0;
		} else if (is_flag(a, "--vocab-size")) {
			const char *v = flag_value(argc, argv, &i, "--vocab-size");
			char *end;

			errno = 0;
			o->vocab = strtol(v, &end, 10);
			if (errno || end == v || *end != '\0' ||
			    o->vocab <= TOKENIZER_BYTES_VOCAB || o->vocab > TOKENIZER_MAX_VOCAB) {
				log_error("--vocab-size: \"%s\" must be an integer from %d to %d",
					  v, TOKENIZER_BYTES_VOCAB + 1, TOKENIZER_MAX_VOCAB);
				exit(EXIT_USAGE);
			}
		} else if (strcmp(a, "--force") == 0) {
			o->force = true;
		} else {
			log_error("%s: unknown flag (see --help)", a);
			exit(EXIT_USAGE);
		}
	}
	if (!o->prefix || !o->prefix[0]) {
		log_error("--output-prefix: required (see --help)");
		exit(EXIT_USAGE);
	}
	if (o->fraction_given && o->n_valid_args) {
		log_error("--held-out-fraction: give either it or --held-out, not both");
		exit(EXIT_USAGE);
	}
	if (o->bpe != (o->vocab != 0)) {
		log_error(o->bpe ? "--vocab-size: required with --tokenizer bpe"
				 : "--vocab-size: only for --tokenizer bpe (the byte "
				   "tokenizer's vocabulary is 256)");
		exit(EXIT_USAGE);
	}
	if (o->n_train_args == 0) {
		log_error("INPUT: at least one input file or directory is required "
			  "(see --help)");
		exit(EXIT_USAGE);
	}
}

/* ------------------------------------------------------------------ inputs */

static void list_add(struct input_list *l, const char *path)
{
	if (l->n == l->cap) {
		struct input *v;

		l->cap = l->cap ? 2 * l->cap : 16;
		CHECK_PTR(v = realloc(l->v, sizeof(*v) * (size_t)l->cap));
		l->v = v;
	}
	memset(&l->v[l->n], 0, sizeof(l->v[0]));
	l->v[l->n++].path = xstrdup(path);
}

static void list_free(struct input_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name)
{
	size_t nd = strlen(dir), nn = strlen(name);
	bool slash = nd > 0 && dir[nd - 1] != '/';
	char *p = xmalloc(nd + slash + nn + 1);

	memcpy(p, dir, nd);
	if (slash)
		p[nd] = '/';
	memcpy(p + nd + slash, name, nn + 1);
	return p;
}

/* The regular files of a directory, in strcmp order; 0 or -1 with err set. */
static int expand_dir(struct input_list *l, const char *dir)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int added = 0, rc = 0;
	DIR *d = opendir(dir);

	if (!d) {
		snprintf(err, sizeof(err), "%s: cannot open directory: %s", dir, strerror(errno));
		return -1;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **v;

			cap = cap ? 2 * cap : 64;
			CHECK_PTR(v = realloc(names, sizeof(*v) * cap));
			names = v;
		}
		names[n++] = xstrdup(de->d_name);
	}
	if (errno) {
		snprintf(err, sizeof(err), "%s: cannot read directory: %s", dir, strerror(errno));
		rc = -1;
		goto out;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char *p = join_path(dir, names[i]);
		struct stat st;

		/* stat, not lstat: a symlink to a regular file counts. */
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			list_add(l, p);
			added++;
		}
		free(p);
	}
	if (added == 0) {
		snprintf(err, sizeof(err), "%s: directory has no regular files", dir);
		rc = -1;
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

static int expand(struct input_list *l, const char *const *args, int nargs)
{
	for (int i = 0; i < nargs; i++) {
		struct stat st;

		if (stat(args[i], &st) != 0) {
			snprintf(err, sizeof(err), "%s: cannot open: %s", args[i], strerror(errno));
			return -1;
		}
		if (S_ISDIR(st.st_mode)) {
			if (expand_dir(l, args[i]))
				return -1;
		} else if (S_ISREG(st.st_mode)) {
			list_add(l, args[i]);
		} else {
			snprintf(err, sizeof(err), "%s: not a regular file or directory", args[i]);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ reading */

/* One input through data/textfile.c, with err (this file's buffer) set on failure. */
static int read_input(struct input *in, unsigned char *buf, textfile_chunk_fn fn, void *ctx,
		      uint64_t *bytes)
{
	return textfile_read(in->path, buf, fn, ctx, bytes, &in->gzip, err, sizeof(err));
}

/* Pass 1 over the fraction-split stream: where the last line starts fall. */
struct scan {
	uint64_t pos;		/* bytes seen */
	uint64_t nl1, nl2;	/* positions after the last and second-to-last '\n' (0: none) */
};

static int scan_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct scan *s = ctx;

	for (size_t j = n, found = 0; j-- > 0 && found < 2;) {
		if (buf[j] != '\n')
			continue;
		if (found == 0) {
			/* The newest newline; the old last one may stay second. */
			s->nl2 = s->nl1;
			s->nl1 = s->pos + j + 1;
		} else {
			s->nl2 = s->pos + j + 1;
		}
		found++;
	}
	s->pos += n;
	return 0;
}

/* Read every input once: checks them all, counts their bytes. */
static int check_inputs(struct input_list *l, unsigned char *buf, struct scan *scan)
{
	for (int i = 0; i < l->n; i++) {
		if (read_input(&l->v[i], buf, scan ? scan_chunk : NULL, scan, &l->v[i].bytes))
			return -1;
		if (l->v[i].bytes == 0) {
			snprintf(err, sizeof(err), "%s: empty file (no text)%s", l->v[i].path,
				 l->v[i].gzip ? " after decompression" : "");
			return -1;
		}
	}
	return 0;
}

static uint64_t list_bytes(const struct input_list *l)
{
	uint64_t b = 0;

	for (int i = 0; i < l->n; i++)
		b += l->v[i].bytes;
	return b;
}

/* ------------------------------------------------------------------ writing */

/* Pass 2: bytes [0, cut) go to train, [cut, end) to valid. */
struct route {
	struct shard_writer *train, *valid;
	struct tokenizer tok;
	const struct bpe *bpe;		/* NULL: the byte tokenizer */
	struct bpe_encoder *enc_train, *enc_valid;
	uint16_t *tokens;	/* (CHUNK_BYTES + BPE_PIECE_MAX) */
	uint64_t pos;		/* bytes routed so far */
	uint64_t cut;		/* the first held-out byte (UINT64_MAX: none) */
};

/* final: flush the BPE encoder's unfinished piece (buf may then be NULL). */
static int emit(struct shard_writer *w, struct route *r, const unsigned char *buf, size_t n,
		bool final)
{
	uint64_t bytes = n;
	size_t nt;

	if (!r->bpe)
		nt = tokenizer_encode(r->tokens, &r->tok, buf, n);
	else
		nt = bpe_encode(w == r->train ? r->enc_train : r->enc_valid, buf, n, final,
				r->tokens, &bytes);
	return shard_writer_append(w, r->tokens, nt, bytes, err, sizeof(err));
}

static int route_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct route *r = ctx;
	uint64_t p0 = r->pos, end = p0 + n;
	size_t ntrain;

	ntrain = r->cut <= p0 ? 0 : r->cut >= end ? n : (size_t)(r->cut - p0);
	if (ntrain && emit(r->train, r, buf, ntrain, false))
		return -1;
	if (ntrain < n && emit(r->valid, r, buf + ntrain, n - ntrain, false))
		return -1;
	r->pos = end;
	return 0;
}

/* Pass 2 over one list; checks the text did not change since pass 1. */
static int stream_inputs(struct input_list *l, unsigned char *buf, struct route *r)
{
	for (int i = 0; i < l->n; i++) {
		uint64_t bytes;

		if (read_input(&l->v[i], buf, route_chunk, r, &bytes))
			return -1;
		if (bytes != l->v[i].bytes) {
			snprintf(err, sizeof(err), "%s: changed while being read (%llu bytes, then "
				 "%llu)", l->v[i].path, (unsigned long long)l->v[i].bytes,
				 (unsigned long long)bytes);
			return -1;
		}
	}
	return 0;
}

/* The fraction cut: the first line start at or after c0 (a byte that follows '\n',
 * before the end), found before anything is learned or written. */
struct find_cut {
	uint64_t pos, c0, total, cut;	/* cut: UINT64_MAX until found */
};

static int find_cut_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct find_cut *f = ctx;
	uint64_t p0 = f->pos, from = f->c0 - 1 > p0 ? f->c0 - 1 - p0 : 0;
	const unsigned char *nl;

	f->pos += n;
	if (from >= n || !(nl = memchr(buf + from, '\n', n - from)))
		return 0;
	if (p0 + (uint64_t)(nl - buf) + 1 < f->total)
		f->cut = p0 + (uint64_t)(nl - buf) + 1;
	return 1;	/* found (or the only '\n' left is the last byte): stop reading */
}

static uint64_t find_cut(struct opts *o, unsigned char *buf, uint64_t c0, uint64_t total)
{
	struct find_cut f = { .c0 = c0, .total = total, .cut = UINT64_MAX };

	for (int i = 0; i < o->train.n && f.cut == UINT64_MAX && f.pos < total; i++) {
		uint64_t bytes;

		if (read_input(&o->train.v[i], buf, find_cut_chunk, &f, &bytes) < 0)
			fail();
	}
	return f.cut;
}

/* The BPE pass: count the pieces of the training text, bytes [0, limit). */
struct learn {
	struct bpe_learner *l;
	uint64_t pos, limit;
};

static int learn_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct learn *s = ctx;
	uint64_t take = s->pos >= s->limit ? 0 : s->limit - s->pos;

	if (take > n)
		take = n;
	if (take)
		bpe_learner_feed(s->l, buf, (size_t)take, false);
	s->pos += n;
	return 0;
}

/* Learns o->vocab - 256 merges from the training text before byte `limit`. */
static int learn_merges(struct opts *o, unsigned char *buf, uint64_t limit, uint16_t **merges)
{
	struct learn s = { .l = bpe_learner_new(), .limit = limit };
	int rc = 0;

	for (int i = 0; i < o->train.n && !rc; i++) {
		uint64_t bytes;

		rc = read_input(&o->train.v[i], buf, learn_chunk, &s, &bytes);
	}
	if (!rc)
		rc = bpe_learner_merges(s.l, (uint32_t)o->vocab, merges, "--vocab-size", err,
					sizeof(err));
	bpe_learner_free(s.l);
	return rc ? -1 : 0;
}

static char *output_path(const char *prefix, const char *suffix)
{
	size_t n = strlen(prefix) + strlen(suffix) + 1;
	char *p = xmalloc(n);

	snprintf(p, n, "%s%s", prefix, suffix);
	return p;
}

static double now_seconds(void)
{
	struct timespec ts;

	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &ts));
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int count_gzip(const struct input_list *l)
{
	int n = 0;

	for (int i = 0; i < l->n; i++)
		n += l->v[i].gzip;
	return n;
}

static _Noreturn void fail(void)
{
	log_error("%s", err);
	exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct scan scan = { 0 };
	struct route r = { 0 };
	struct shard_writer wtrain, wvalid;
	unsigned char *buf;
	char *train_path, *valid_path;
	uint64_t total, held, c0;
	bool by_fraction, at_line = false;
	uint64_t n_train, b_train, n_valid, b_valid;
	uint16_t *merges = NULL;
	struct bpe bpe;
	struct bpe_encoder *enc = NULL;
	unsigned flags;
	struct stat st;
	double t0 = now_seconds();
	int ngz;

	/* ---- 1. flags ---- */
	parse_args(&o, argc, argv);
	by_fraction = o.n_valid_args == 0;
	train_path = output_path(o.prefix, "-train.bin");
	valid_path = output_path(o.prefix, "-valid.bin");
	tokenizer_init_bytes(&r.tok);

	/* ---- 2. inputs: expand, then read each once to check it ---- */
	buf = xmalloc(CHUNK_BYTES);
	if (expand(&o.train, o.train_args, o.n_train_args) ||
	    expand(&o.valid, o.valid_args, o.n_valid_args))
		fail();
	if (check_inputs(&o.train, buf, by_fraction ? &scan : NULL) ||
	    check_inputs(&o.valid, buf, NULL))
		fail();
	total = list_bytes(&o.train);

	/* ---- 3. the split ---- */
	r.cut = UINT64_MAX;
	if (by_fraction) {
		uint64_t last_start = scan.nl1 < total ? scan.nl1 : scan.nl2;

		held = (uint64_t)(o.fraction * (double)total);
		if (held == 0) {
			snprintf(err, sizeof(err), "%s: %llu bytes of text are too few to hold out "
				 "%g of them", o.train.v[0].path, (unsigned long long)total,
				 o.fraction);
			fail();
		}
		c0 = total - held;
		at_line = last_start >= c0;
		/* The cut is known before any table is learned: the table comes from the
		 * whole training part, to its line start, so the same training bytes give
		 * the same table however they were passed (a file, a directory of parts of
		 * it, or a fraction of more text). */
		r.cut = at_line ? find_cut(&o, buf, c0, total) : c0;
		ENSURE(r.cut != UINT64_MAX);
	}

	/* ---- 4. outputs: refuse to overwrite, then stream the text into them ---- */
	if (!o.force && (lstat(train_path, &st) == 0 || lstat(valid_path, &st) == 0)) {
		snprintf(err, sizeof(err), "%s: already exists (pass --force to overwrite)",
			 lstat(train_path, &st) == 0 ? train_path : valid_path);
		fail();
	}
	if (o.bpe) {
		double tl = now_seconds();

		/* Exactly the training part: never a held-out byte, nor fewer. */
		if (learn_merges(&o, buf, by_fraction ? r.cut : UINT64_MAX, &merges) ||
		    tokenizer_init_bpe(&r.tok, merges, (uint32_t)o.vocab - TOKENIZER_BYTES_VOCAB,
				       "--vocab-size", err, sizeof(err)))
			fail();
		bpe_init(&bpe, &r.tok);
		printf("retnet-prep: learned %ld BPE merges in %.2f s\n",
		       o.vocab - TOKENIZER_BYTES_VOCAB, now_seconds() - tl);
		enc = xmalloc(2 * sizeof(*enc));
		bpe_encoder_init(&enc[0], &bpe);
		bpe_encoder_init(&enc[1], &bpe);
		r.bpe = &bpe;
		r.enc_train = &enc[0];
		r.enc_valid = &enc[1];
	}
	flags = o.force ? SHARD_OVERWRITE : 0;
	if (shard_writer_open(&wtrain, train_path, &r.tok, flags, err, sizeof(err)))
		fail();
	if (shard_writer_open(&wvalid, valid_path, &r.tok, flags, err, sizeof(err))) {
		shard_writer_abort(&wtrain);
		fail();
	}
	r.train = &wtrain;
	r.valid = &wvalid;
	r.tokens = xmalloc(sizeof(uint16_t) * (CHUNK_BYTES + BPE_PIECE_MAX));
	if (stream_inputs(&o.train, buf, &r))
		goto out_abort;
	if (!by_fraction) {
		r.cut = 0;	/* everything from here on is held out */
		r.pos = 0;
		if (stream_inputs(&o.valid, buf, &r))
			goto out_abort;
	}
	if (r.bpe && (emit(&wtrain, &r, NULL, 0, true) || emit(&wvalid, &r, NULL, 0, true)))
		goto out_abort;
	n_train = wtrain.hdr.n_tokens;
	b_train = wtrain.hdr.source_bytes;
	n_valid = wvalid.hdr.n_tokens;
	b_valid = wvalid.hdr.source_bytes;
	if (n_valid == 0 || n_train == 0) {
		/* Only reachable through a race with the inputs changing. */
		snprintf(err, sizeof(err), "%s: the %s split came out empty", o.prefix,
			 n_valid == 0 ? "held-out" : "training");
		goto out_abort;
	}
	if (shard_writer_commit(&wtrain, err, sizeof(err))) {
		shard_writer_abort(&wvalid);
		fail();
	}
	if (shard_writer_commit(&wvalid, err, sizeof(err)))
		fail();

	/* ---- 5. report ---- */
	ngz = count_gzip(&o.train) + count_gzip(&o.valid);
	printf("retnet-prep: %d input file%s (%d gzip), %llu bytes; tokenizer %s (vocab %u)\n",
	       o.train.n + o.valid.n, o.train.n + o.valid.n == 1 ? "" : "s", ngz,
	       (unsigned long long)(total + list_bytes(&o.valid)), r.tok.id, r.tok.vocab);
	if (by_fraction)
		printf("retnet-prep: held out the last %.2f%% of the bytes (asked %g), cut %s "
		       "at byte %llu\n", 100.0 * (double)b_valid / (double)total, o.fraction,
		       at_line ? "at a line start" : "mid-line (no line start left)",
		       (unsigned long long)b_train);
	else
		printf("retnet-prep: held out %d file%s given with --held-out\n", o.valid.n,
		       o.valid.n == 1 ? "" : "s");
	printf("retnet-prep: %s: %llu tokens from %llu bytes\n", train_path,
	       (unsigned long long)n_train, (unsigned long long)b_train);
	printf("retnet-prep: %s: %llu tokens from %llu bytes\n", valid_path,
	       (unsigned long long)n_valid, (unsigned long long)b_valid);
	printf("retnet-prep: done in %.3f s\n", now_seconds() - t0);

	free(r.tokens);
	free(buf);
	if (r.bpe)
		bpe_free(&bpe);
	free(enc);
	free(merges);
	free(train_path);
	free(valid_path);
	free(o.train_args);
	free(o.valid_args);
	list_free(&o.train);
	list_free(&o.valid);
	return 0;

out_abort:
	/* A writer whose append failed has aborted itself; abort is idempotent. */
	shard_writer_abort(&wtrain);
	shard_writer_abort(&wvalid);
	fail();
}
