/* data/: the byte tokenizer, token shards (round trip and every corruption the
 * reader must refuse, each with its message), and the loader: window contents
 * across shard boundaries, the epoch permutation, the data-parallel contract
 * (ranks disjoint, their union equal to the single-rank batch, row for row),
 * resume from loader_state, and the sequential evaluation walk. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/harness.h"

static char dir[] = "/tmp/rn_test_data.XXXXXX";
static char err[SHARD_ERR_LEN];

static char *tmp_path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

/* A token stream that makes misplaced windows visible: no short period. */
static uint16_t token_at(uint64_t i)
{
	return (uint16_t)((i * 131 + i / 256 * 7 + 3) % 256);
}

static void fill_tokens(uint16_t *t, uint64_t first, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t[i] = token_at(first + i);
}

static unsigned char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = xmalloc((size_t)n);
	*len = fread(b, 1, (size_t)n, f);
	fclose(f);
	return b;
}

static void write_all(const char *path, const unsigned char *b, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(b, 1, len, f) != len) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	fclose(f);
}

/* Count files in dir whose name contains `sub`. */
static int count_files(const char *sub)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, sub) != NULL;
	closedir(d);
	return n;
}

static void remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlink(tmp_path(de->d_name));
	}
	closedir(d);
	rmdir(dir);
}

/* rc and err of a refused call: a negative code, one line, the file and the rule. */
#define EXPECT_REFUSED(rc, path, rule)                                              \
	EXPECT_TRUE((rc) < 0 && strstr(err, (path)) == err && strstr(err, (rule)) &&  \
		    !strchr(err, '\n'), "rc %d, err \"%s\", want \"%s: ...%s...\"",  \
		    (rc), err, (path), (rule))

/* ------------------------------------------------------------------ tokenizer */

static void test_tokenizer(void)
{
	struct tokenizer a, b;
	unsigned char text[256], back[256];
	uint16_t tok[256];
	int32_t wide[256];
	char raw[TOKENIZER_ID_LEN];
	int rc;

	tokenizer_init_bytes(&a);
	EXPECT_TRUE(strcmp(a.id, "bytes-v1") == 0 && a.vocab == 256, "id %s vocab %u", a.id,
		    a.vocab);
	for (int i = 0; i < 256; i++)
		text[i] = (unsigned char)(255 - i);
	EXPECT_TRUE(tokenizer_encode(tok, &a, text, 256) == 256, "encode count");
	for (int i = 0; i < 256; i++)
		wide[i] = tok[i];
	rc = tokenizer_decode(back, &a, wide, 256);
	EXPECT_TRUE(rc == 0 && memcmp(back, text, 256) == 0, "decode(encode(x)) != x");
	wide[7] = 256;
	EXPECT_TRUE(tokenizer_decode(back, &a, wide, 256) == -ERANGE, "token 256 decoded");
	wide[7] = -1;
	EXPECT_TRUE(tokenizer_decode(back, &a, wide, 256) == -ERANGE, "token -1 decoded");

	b = a;
	EXPECT_TRUE(tokenizer_check_same(&b, "ckpt.h5", &a, "c.bin", err, sizeof(err)) == 0,
		    "equal tokenizers refused: %s", err);
	memset(raw, 0, sizeof(raw));
	strcpy(raw, "bpe-v2");
	EXPECT_TRUE(tokenizer_from_header(&b, raw, 512, "ckpt.h5", err, sizeof(err)) == 0,
		    "from_header: %s", err);
	rc = tokenizer_check_same(&b, "ckpt.h5", &a, "c.bin", err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "ckpt.h5: tokenizer \"bpe-v2\" (vocab 512) "
					    "does not match \"bytes-v1\" (vocab 256) of c.bin"),
		    "mismatch message: %s", err);
	memset(raw, 'x', sizeof(raw));
	rc = tokenizer_from_header(&b, raw, 256, "hdr", err, sizeof(err));
	EXPECT_REFUSED(rc, "hdr", "NUL-terminated");
	memset(raw, 0, sizeof(raw));
	rc = tokenizer_from_header(&b, raw, 256, "hdr", err, sizeof(err));
	EXPECT_REFUSED(rc, "hdr", "NUL-terminated");
}

/* ------------------------------------------------------------------ shards */

enum { NTOK = 1000 };

static const char *make_shard(const char *name, uint64_t first, size_t n)
{
	struct tokenizer tok;
	uint16_t *t = xmalloc(sizeof(uint16_t) * (n ? n : 1));
	const char *path = tmp_path(name);
	int rc;

	tokenizer_init_bytes(&tok);
	fill_tokens(t, first, n);
	rc = shard_write_atomic(path, t, n, 3 * n + 1, &tok, SHARD_OVERWRITE, err,
				sizeof(err));
	if (rc) {
		fprintf(stderr, "make_shard %s: %s\n", name, err);
		exit(1);
	}
	free(t);
	return path;
}

static void test_shard_round_trip(void)
{
	struct tokenizer tok;
	struct shard sh;
	uint16_t t[NTOK];
	const char *path = tmp_path("rt.bin");
	unsigned char *before, *after;
	size_t lb, la;
	int rc;

	tokenizer_init_bytes(&tok);
	fill_tokens(t, 0, NTOK);
	rc = shard_write_atomic(path, t, NTOK, 1234, &tok, 0, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "write: %s", err);
	rc = shard_open_checked(&sh, path, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "open: %s", err);
	if (rc == 0) {
		EXPECT_TRUE(sh.hdr.n_tokens == NTOK && sh.hdr.source_bytes == 1234 &&
			    sh.hdr.version == 1 && sh.hdr.vocab == 256 &&
			    sh.hdr.bytes_per_token == 2 && tokenizer_equal(&sh.tok, &tok),
			    "header fields");
		EXPECT_TRUE(memcmp(sh.tokens, t, sizeof(t)) == 0, "payload differs");
		EXPECT_TRUE(sh.map_len == SHARD_HEADER_SIZE + 2 * NTOK, "file size %zu",
			    sh.map_len);
		shard_close(&sh);
	}

	/* Refuses to overwrite, leaving the file byte-identical. */
	before = read_all(path, &lb);
	t[0] ^= 1;
	rc = shard_write_atomic(path, t, NTOK, 1234, &tok, 0, err, sizeof(err));
	EXPECT_TRUE(rc == -EEXIST, "rc %d", rc);
	EXPECT_REFUSED(rc, path, "already exists");
	after = read_all(path, &la);
	EXPECT_TRUE(la == lb && memcmp(before, after, la) == 0, "existing file changed");
	free(after);
	/* ... unless told to. */
	rc = shard_write_atomic(path, t, NTOK, 1234, &tok, SHARD_OVERWRITE, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "overwrite: %s", err);
	after = read_all(path, &la);
	EXPECT_TRUE(la == lb && memcmp(before, after, la) != 0, "not overwritten");
	free(before);
	free(after);

	/* A token >= vocab is refused by the writer: no file, no temporary. */
	t[5] = 256;
	rc = shard_write_atomic(tmp_path("bad-token.bin"), t, NTOK, 1, &tok, 0, err,
				sizeof(err));
	EXPECT_REFUSED(rc, tmp_path("bad-token.bin"), "token 256 at index 5 is >= vocab 256");
	EXPECT_TRUE(access(tmp_path("bad-token.bin"), F_OK) != 0, "file left behind");
	EXPECT_TRUE(count_files(".tmp.") == 0, "temporary file left behind");

	/* An empty shard is a valid file (the loader decides it is too short). */
	rc = shard_write_atomic(tmp_path("empty.bin"), t, 0, 0, &tok, 0, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "empty write: %s", err);
	rc = shard_open_checked(&sh, tmp_path("empty.bin"), err, sizeof(err));
	EXPECT_TRUE(rc == 0 && sh.hdr.n_tokens == 0, "empty open: %s", err);
	if (rc == 0)
		shard_close(&sh);

	/* A missing directory: a one-line error, nothing created. */
	rc = shard_write_atomic(tmp_path("no-such-dir/x.bin"), t, 4, 4, &tok, 0, err,
				sizeof(err));
	EXPECT_REFUSED(rc, tmp_path("no-such-dir/x.bin"), "cannot create temporary file");
}

/* Damage a copy of a good shard with `edit`, then expect `rule` from the reader. */
typedef void (*edit_fn)(unsigned char **b, size_t *len);

static void check_corruption(const char *name, edit_fn edit, const char *rule)
{
	const char *good = make_shard("good.bin", 0, NTOK), *path = tmp_path(name);
	struct shard sh;
	unsigned char *b;
	size_t len;
	int rc;

	b = read_all(good, &len);
	edit(&b, &len);
	write_all(path, b, len);
	free(b);
	rc = shard_open_checked(&sh, path, err, sizeof(err));
	EXPECT_REFUSED(rc, path, rule);
	EXPECT_TRUE(sh.map == NULL && sh.tokens == NULL, "%s: shard not left empty", name);
	if (rc == 0)
		shard_close(&sh);
	else
		printf("ok   %-18s %s\n", name, err);
}

/* Rewrite the header through the codec, so only the intended rule is broken. */
static void repack(unsigned char *b, void (*change)(struct shard_header *h))
{
	struct shard_header h;

	shard_header_unpack(&h, b);
	change(&h);
	shard_header_pack(b, &h);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void ed_magic(unsigned char **b, size_t *len) { (*b)[3] ^= 0x20; }
static void ed_version(unsigned char **b, size_t *len) { put32(*b + 8, 4); }
static void ed_hsize(unsigned char **b, size_t *len) { put32(*b + 12, 64); }
static void ed_hcrc(unsigned char **b, size_t *len) { (*b)[64] ^= 1; /* source bytes */ }
static void ed_truncate(unsigned char **b, size_t *len) { *len -= 3; }
static void ed_trailing(unsigned char **b, size_t *len)
{
	*b = realloc(*b, *len + 2);
	(*b)[(*len)++] = 0;
	(*b)[(*len)++] = 0;
}
static void ed_short(unsigned char **b, size_t *len) { *len = 5; }
static void ed_header_cut(unsigned char **b, size_t *len) { *len = 100; }
static void ed_empty(unsigned char **b, size_t *len) { *len = 0; }
static void ed_payload(unsigned char **b, size_t *len) { (*b)[SHARD_HEADER_SIZE + 501] ^= 0x40; }

static void ch_bpt(struct shard_header *h) { h->bytes_per_token = 4; }
static void ch_vocab(struct shard_header *h) { h->vocab = 70000; }
static void ch_count(struct shard_header *h) { h->n_tokens = (uint64_t)1 << 40; }
static void ch_tokid(struct shard_header *h) { memset(h->tokenizer_id, 'z', TOKENIZER_ID_LEN); }
static void ed_bpt(unsigned char **b, size_t *len) { repack(*b, ch_bpt); }
static void ed_vocab(unsigned char **b, size_t *len) { repack(*b, ch_vocab); }
static void ed_count(unsigned char **b, size_t *len) { repack(*b, ch_count); }
static void ed_tokid(unsigned char **b, size_t *len) { repack(*b, ch_tokid); }

static uint64_t new_crc;
static void ch_crc(struct shard_header *h) { h->checksum = new_crc; }
/* Token 300 at index 42 with both checksums consistent: only the range rule fails. */
static void ed_token(unsigned char **b, size_t *len)
{
	(*b)[SHARD_HEADER_SIZE + 2 * 42] = 300 & 0xff;
	(*b)[SHARD_HEADER_SIZE + 2 * 42 + 1] = 300 >> 8;
	new_crc = shard_checksum(*b + SHARD_HEADER_SIZE, *len - SHARD_HEADER_SIZE);
	repack(*b, ch_crc);
}

static void test_shard_corruption(void)
{
	struct shard sh;
	int rc;

	check_corruption("magic.bin", ed_magic, "bad magic");
	check_corruption("version.bin", ed_version, "unsupported shard version 4");
	check_corruption("hsize.bin", ed_hsize, "header size 64");
	check_corruption("hcrc.bin", ed_hcrc, "header checksum mismatch");
	check_corruption("truncated.bin", ed_truncate, "truncated payload");
	check_corruption("trailing.bin", ed_trailing, "2 trailing bytes");
	check_corruption("short.bin", ed_short, "too short");
	check_corruption("headercut.bin", ed_header_cut, "truncated header");
	check_corruption("zero.bin", ed_empty, "empty file");
	check_corruption("payload.bin", ed_payload, "payload checksum mismatch");
	check_corruption("token.bin", ed_token, "token 300 at index 42 is >= vocab 256");
	check_corruption("bpt.bin", ed_bpt, "4 bytes per token not supported");
	check_corruption("vocab.bin", ed_vocab, "vocab 70000 exceeds");
	check_corruption("count.bin", ed_count, "truncated payload");
	check_corruption("tokid.bin", ed_tokid, "tokenizer id is not a NUL-terminated");

	rc = shard_open_checked(&sh, tmp_path("missing.bin"), err, sizeof(err));
	EXPECT_REFUSED(rc, tmp_path("missing.bin"), "cannot open: No such file");
	rc = shard_open_checked(&sh, dir, err, sizeof(err));
	EXPECT_REFUSED(rc, dir, "not a regular file");
}

static void test_shard_count_overflow(void)
{
	/* A count whose byte size overflows size_t must be caught before any offset. */
	const char *good = make_shard("good.bin", 0, 16), *path = tmp_path("ovf.bin");
	struct shard_header h;
	struct shard sh;
	unsigned char *b;
	size_t len;
	int rc;

	b = read_all(good, &len);
	shard_header_unpack(&h, b);
	h.n_tokens = UINT64_MAX - 3;
	shard_header_pack(b, &h);
	write_all(path, b, len);
	free(b);
	rc = shard_open_checked(&sh, path, err, sizeof(err));
	EXPECT_REFUSED(rc, path, "overflows the file size");
}

/* ------------------------------------------------------------------ loader */

/* The corpus: shards of 1000, 0, 537 and 1234 tokens, one stream of 2771. */
static const char *corpus[4];
static const uint64_t corpus_sizes[4] = { 1000, 0, 537, 1234 };
enum { CORPUS_N = 2771, T = 16 };

static void make_corpus(void)
{
	uint64_t first = 0;
	char name[32];

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "corpus%d.bin", i);
		corpus[i] = make_shard(name, first, (size_t)corpus_sizes[i]);
		first += corpus_sizes[i];
	}
}

static int open_corpus(struct loader *ld, int seq_len, int r, int d, uint64_t seed)
{
	int rc = loader_init(ld, corpus, 4, seq_len, r, d, seed, err, sizeof(err));

	if (rc)
		fprintf(stderr, "loader_init: %s\n", err);
	return rc;
}

/* Window w straight from the definition. */
static void want_window(int32_t *in, int32_t *tg, uint64_t w, int seq_len)
{
	for (int t = 0; t < seq_len; t++) {
		in[t] = token_at(w * (uint64_t)seq_len + (uint64_t)t);
		tg[t] = token_at(w * (uint64_t)seq_len + (uint64_t)t + 1);
	}
}

static void test_loader_windows(void)
{
	struct loader ld;
	int32_t in[T], tg[T], win[T], wtg[T];
	size_t bad = 0;

	if (open_corpus(&ld, T, 0, 1, 1))
		return;
	EXPECT_TRUE(ld.n_tokens == CORPUS_N && ld.n_windows == (CORPUS_N - 1) / T,
		    "N %llu W %llu", (unsigned long long)ld.n_tokens,
		    (unsigned long long)ld.n_windows);
	EXPECT_TRUE(loader_remainder_tokens(&ld) == CORPUS_N - 1 - (CORPUS_N - 1) / T * T,
		    "remainder %llu", (unsigned long long)loader_remainder_tokens(&ld));
	EXPECT_TRUE(ld.source_bytes == 3 * CORPUS_N + 4, "source bytes %llu",
		    (unsigned long long)ld.source_bytes);
	/* Every window, including those straddling the shard boundaries (62, 95, ...). */
	for (uint64_t w = 0; w < ld.n_windows; w++) {
		loader_read_window(&ld, w, in, tg);
		want_window(win, wtg, w, T);
		bad += memcmp(in, win, sizeof(in)) != 0 || memcmp(tg, wtg, sizeof(tg)) != 0;
	}
	EXPECT_TRUE(bad == 0, "%zu windows differ from the stream definition", bad);
	loader_free(&ld);
}

static void test_loader_permutation(void)
{
	/* Window counts 4999, 2499, ..., 3, 1 from one shard of 5000 tokens. */
	static const int lens[] = { 1, 2, 3, 5, 7, 29, 100, 1000, 1666, 2499, 4999 };
	const char *path = make_shard("perm.bin", 0, 5000);

	for (size_t c = 0; c < sizeof(lens) / sizeof(lens[0]); c++) {
		struct loader ld, other_seed;
		uint64_t W, fixed = 0, same_epoch = 0, same_seed = 0;
		size_t missing = 0;
		unsigned char *seen;

		if (loader_init(&ld, &path, 1, lens[c], 0, 1, 42, err, sizeof(err)) ||
		    loader_init(&other_seed, &path, 1, lens[c], 0, 1, 43, err, sizeof(err))) {
			EXPECT_TRUE(0, "loader_init: %s", err);
			return;
		}
		W = ld.n_windows;
		seen = xcalloc(W, 1);
		for (uint64_t e = 0; e < 3; e++) {
			memset(seen, 0, W);
			for (uint64_t i = 0; i < W; i++) {
				uint64_t w = loader_permute(&ld, e, i);

				if (w < W)
					seen[w] = 1;
				if (e == 0) {
					fixed += w == i;
					same_seed += w == loader_permute(&other_seed, 0, i);
				}
				if (e == 1)
					same_epoch += w == loader_permute(&ld, 0, i);
			}
			for (uint64_t i = 0; i < W; i++)
				missing += !seen[i];
		}
		EXPECT_TRUE(missing == 0, "W=%llu: %zu windows missing from an epoch",
			    (unsigned long long)W, missing);
		/* A shuffle: few fixed points; other epochs and seeds give other orders. */
		EXPECT_TRUE(W < 50 || (fixed < W / 10 && same_epoch < W / 10 &&
				       same_seed < W / 10),
			    "W=%llu: %llu fixed points, %llu as epoch 0, %llu as seed 43",
			    (unsigned long long)W, (unsigned long long)fixed,
			    (unsigned long long)same_epoch, (unsigned long long)same_seed);
		free(seen);
		loader_free(&ld);
		loader_free(&other_seed);
	}
	printf("ok   epoch permutations are bijections for W = 1 .. 4999\n");
}

/*
 * The data-parallel contract: for D ranks and global batch G, rank r's rows of
 * step s are global windows s*G + [r*G/D, (r+1)*G/D), and their concatenation
 * over r is the single-rank batch of G rows.
 */
static void test_loader_dp(int G, int D, int steps)
{
	struct loader one, ranks[8];
	int32_t *in1 = xmalloc(sizeof(int32_t) * (size_t)G * T);
	int32_t *tg1 = xmalloc(sizeof(int32_t) * (size_t)G * T);
	int32_t *in = xmalloc(sizeof(int32_t) * (size_t)G * T);
	int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)G * T);
	int32_t *want_in = xmalloc(sizeof(int32_t) * (size_t)G * T);
	int32_t *want_tg = xmalloc(sizeof(int32_t) * (size_t)G * T);
	size_t bad_union = 0, bad_def = 0, bad_rows = 0;
	unsigned char *count;
	uint64_t W;

	if (open_corpus(&one, T, 0, 1, 7))
		return;
	for (int r = 0; r < D; r++)
		if (open_corpus(&ranks[r], T, r, D, 7))
			return;
	W = one.n_windows;
	count = xcalloc(W, 1);
	for (int s = 0; s < steps; s++) {
		size_t off = 0;
		int n1 = loader_next_batch(&one, in1, tg1, G);

		bad_rows += n1 != G;
		for (int r = 0; r < D; r++) {
			int rows = loader_local_rows(&ranks[r], G);
			int n = loader_next_batch(&ranks[r], in + off, tg + off, G);

			bad_rows += n != rows || rows != (r + 1) * G / D - r * G / D;
			off += (size_t)n * T;
		}
		bad_rows += off != (size_t)G * T;
		/* Union over ranks == the single-rank batch, in order. */
		bad_union += memcmp(in, in1, sizeof(int32_t) * (size_t)G * T) != 0 ||
			     memcmp(tg, tg1, sizeof(int32_t) * (size_t)G * T) != 0;
		/* ... == the definition: global windows s*G .. s*G+G-1 of the epochs. */
		for (int k = 0; k < G; k++) {
			uint64_t g = (uint64_t)s * G + k, w = loader_permute(&one, g / W, g % W);

			want_window(want_in + (size_t)k * T, want_tg + (size_t)k * T, w, T);
			if (g < W)
				count[w]++;
		}
		bad_def += memcmp(in1, want_in, sizeof(int32_t) * (size_t)G * T) != 0 ||
			   memcmp(tg1, want_tg, sizeof(int32_t) * (size_t)G * T) != 0;
	}
	EXPECT_TRUE(bad_rows == 0, "G=%d D=%d: %zu wrong row counts", G, D, bad_rows);
	EXPECT_TRUE(bad_union == 0, "G=%d D=%d: %zu steps where the ranks' union differs from "
		    "the single-rank batch", G, D, bad_union);
	EXPECT_TRUE(bad_def == 0, "G=%d D=%d: %zu steps differ from the global window "
		    "definition", G, D, bad_def);
	if ((uint64_t)steps * G >= W) {
		size_t wrong = 0;

		for (uint64_t w = 0; w < W; w++)
			wrong += count[w] != 1;
		EXPECT_TRUE(wrong == 0, "G=%d D=%d: %zu windows not seen exactly once in epoch 0",
			    G, D, wrong);
	}
	EXPECT_TRUE(one.epoch == (uint64_t)steps * G / W &&
		    one.position == (uint64_t)steps * G % W, "epoch %llu position %llu",
		    (unsigned long long)one.epoch, (unsigned long long)one.position);
	printf("ok   dp contract G=%d D=%d over %d steps (W=%llu, %llu epochs)\n", G, D, steps,
	       (unsigned long long)W, (unsigned long long)one.epoch);
	free(count);
	loader_free(&one);
	for (int r = 0; r < D; r++)
		loader_free(&ranks[r]);
	free(in1), free(tg1), free(in), free(tg), free(want_in), free(want_tg);
}

/* Two ranks with 2 rows each == one rank with 4 rows, row for row. */
static void test_loader_dp2_equals_dp1(void)
{
	struct loader a, r0, r1;
	int32_t in1[4 * T], tg1[4 * T], in[4 * T], tg[4 * T];
	int ok = 1;

	if (open_corpus(&a, T, 0, 1, 3) || open_corpus(&r0, T, 0, 2, 3) ||
	    open_corpus(&r1, T, 1, 2, 3))
		return;
	EXPECT_TRUE(loader_local_rows(&r0, 4) == 2 && loader_local_rows(&r1, 4) == 2,
		    "shares of 4 over 2 ranks");
	for (int s = 0; s < 100; s++) {
		loader_next_batch(&a, in1, tg1, 4);
		loader_next_batch(&r0, in, tg, 4);
		loader_next_batch(&r1, in + 2 * T, tg + 2 * T, 4);
		ok &= memcmp(in, in1, sizeof(in)) == 0 && memcmp(tg, tg1, sizeof(tg)) == 0;
		/* Targets are the inputs shifted by one. */
		for (int b = 0; b < 4; b++)
			ok &= memcmp(in1 + b * T + 1, tg1 + b * T, sizeof(int32_t) * (T - 1)) == 0;
	}
	EXPECT_TRUE(ok, "DP=2 x 2 rows differs from DP=1 x 4 rows");
	loader_free(&a), loader_free(&r0), loader_free(&r1);
}

static void test_loader_determinism_and_resume(void)
{
	enum { G = 5, STEPS = 120, CUT = 47 };	/* 120 * 5 = 600 windows: 3+ epochs of 173 */
	struct loader a, b, c, d2;
	struct loader_state st, st2;
	int32_t *in_a = xmalloc(sizeof(int32_t) * STEPS * G * T);
	int32_t *tg_a = xmalloc(sizeof(int32_t) * STEPS * G * T);
	int32_t in[G * T], tg[G * T];
	size_t bad_det = 0, bad_resume = 0, bad_dp = 0;
	int rc;

	if (open_corpus(&a, T, 0, 1, 11) || open_corpus(&b, T, 0, 1, 11))
		return;
	for (int s = 0; s < STEPS; s++) {
		loader_next_batch(&a, in_a + s * G * T, tg_a + s * G * T, G);
		loader_next_batch(&b, in, tg, G);
		bad_det += memcmp(in, in_a + s * G * T, sizeof(in)) != 0 ||
			   memcmp(tg, tg_a + s * G * T, sizeof(tg)) != 0;
		if (s + 1 == CUT)
			loader_state_get(&b, &st);
	}
	EXPECT_TRUE(bad_det == 0, "%zu steps differ between two loaders with one seed", bad_det);
	EXPECT_TRUE(st.epoch == (uint64_t)CUT * G / a.n_windows &&
		    st.position == (uint64_t)CUT * G % a.n_windows && st.seed == 11 &&
		    st.seq_len == T && st.n_windows == a.n_windows, "state after %d steps", CUT);

	/* A fresh loader resumed at step CUT sees what the uninterrupted one saw. */
	if (open_corpus(&c, T, 0, 1, 11))
		return;
	rc = loader_state_set(&c, &st, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "state_set: %s", err);
	/* ... and so do two data-parallel ranks resumed from the same state. */
	if (open_corpus(&d2, T, 1, 2, 11))
		return;
	rc = loader_state_set(&d2, &st, err, sizeof(err));
	for (int s = CUT; s < STEPS; s++) {
		int lo = G / 2;

		loader_next_batch(&c, in, tg, G);
		bad_resume += memcmp(in, in_a + s * G * T, sizeof(in)) != 0 ||
			      memcmp(tg, tg_a + s * G * T, sizeof(tg)) != 0;
		loader_next_batch(&d2, in, tg, G);	/* rank 1 of 2: rows [2, 5) */
		bad_dp += memcmp(in, in_a + (s * G + lo) * T,
				 sizeof(int32_t) * (size_t)(G - lo) * T) != 0;
	}
	EXPECT_TRUE(bad_resume == 0, "%zu resumed steps differ from the uninterrupted run",
		    bad_resume);
	EXPECT_TRUE(bad_dp == 0, "%zu steps of DP rank 1 of 2 resumed differ", bad_dp);
	loader_state_get(&c, &st2);
	loader_state_get(&a, &st);
	EXPECT_TRUE(memcmp(&st, &st2, sizeof(st)) == 0, "final states differ");

	/* A state from another seed, corpus shape or an impossible position is refused. */
	st2 = st;
	st2.seed = 12;
	rc = loader_state_set(&c, &st2, err, sizeof(err));
	EXPECT_REFUSED(rc, "data loader state", "seed 12");
	st2 = st;
	st2.seq_len = 8;
	rc = loader_state_set(&c, &st2, err, sizeof(err));
	EXPECT_REFUSED(rc, "data loader state", "windows of 8 tokens");
	st2 = st;
	st2.position = st.n_windows;
	rc = loader_state_set(&c, &st2, err, sizeof(err));
	EXPECT_REFUSED(rc, "data loader state", "position");
	loader_free(&a), loader_free(&b), loader_free(&c), loader_free(&d2);
	free(in_a), free(tg_a);
}

static void test_loader_sequential(void)
{
	struct loader one, r[3];
	int32_t in[7 * T], tg[7 * T], win[T], wtg[T];
	uint64_t next = 0, total = 0;
	size_t bad = 0;
	int n;

	if (open_corpus(&one, T, 0, 1, 5))
		return;
	/* One rank walks every window in corpus order, 7 rows at a time. */
	while ((n = loader_seq_next(&one, in, tg, 7)) > 0) {
		for (int i = 0; i < n; i++, next++) {
			want_window(win, wtg, next, T);
			bad += memcmp(in + i * T, win, sizeof(win)) != 0 ||
			       memcmp(tg + i * T, wtg, sizeof(wtg)) != 0;
		}
	}
	EXPECT_TRUE(next == one.n_windows && bad == 0, "sequential walk: %llu of %llu windows, "
		    "%zu wrong", (unsigned long long)next, (unsigned long long)one.n_windows, bad);
	EXPECT_TRUE(loader_seq_next(&one, in, tg, 7) == 0, "walk did not stay at its end");
	loader_seq_rewind(&one);
	n = loader_seq_next(&one, in, tg, 1);
	want_window(win, wtg, 0, T);
	EXPECT_TRUE(n == 1 && memcmp(in, win, sizeof(win)) == 0, "rewind");

	/* Three ranks: contiguous ranges whose concatenation is the whole walk. */
	next = 0;
	bad = 0;
	for (int k = 0; k < 3; k++) {
		if (open_corpus(&r[k], T, k, 3, 5))
			return;
		total += loader_seq_windows(&r[k]);
		while ((n = loader_seq_next(&r[k], in, tg, 7)) > 0) {
			for (int i = 0; i < n; i++, next++) {
				want_window(win, wtg, next, T);
				bad += memcmp(in + i * T, win, sizeof(win)) != 0;
			}
		}
		loader_free(&r[k]);
	}
	EXPECT_TRUE(total == one.n_windows && next == one.n_windows && bad == 0,
		    "3-rank walk: %llu windows, %zu wrong", (unsigned long long)next, bad);
	loader_free(&one);
}

static void test_loader_errors(void)
{
	struct loader ld;
	struct tokenizer other;
	const char *paths[2];
	uint16_t t[64];
	char id[TOKENIZER_ID_LEN] = "other-v1";
	int rc;

	/* 10 tokens: one window of 9 + 1 fits, 10 + 1 does not. */
	paths[0] = make_shard("ten.bin", 0, 10);
	rc = loader_init(&ld, paths, 1, 9, 0, 1, 1, err, sizeof(err));
	EXPECT_TRUE(rc == 0 && ld.n_windows == 1 && loader_remainder_tokens(&ld) == 0,
		    "10 tokens, seq_len 9: %s", err);
	if (rc == 0)
		loader_free(&ld);
	paths[1] = make_shard("five.bin", 10, 5);
	rc = loader_init(&ld, paths, 1, 10, 0, 1, 1, err, sizeof(err));
	EXPECT_REFUSED(rc, paths[0], "corpus of 10 tokens is shorter than one window of "
		       "seq_len + 1 = 11 tokens");
	/* Both files named when both are too short together. */
	rc = loader_init(&ld, paths, 2, 15, 0, 1, 1, err, sizeof(err));
	EXPECT_REFUSED(rc, paths[0], "five.bin: corpus of 15 tokens");
	rc = loader_init(&ld, paths, 2, 14, 0, 1, 1, err, sizeof(err));
	EXPECT_TRUE(rc == 0, "15 tokens, seq_len 14: %s", err);
	if (rc == 0)
		loader_free(&ld);

	/* Shards made with different tokenizers are not one corpus. */
	tokenizer_from_header(&other, id, 256, "test", err, sizeof(err));
	fill_tokens(t, 0, 64);
	shard_write_atomic(tmp_path("other.bin"), t, 64, 64, &other, SHARD_OVERWRITE, err,
			   sizeof(err));
	paths[1] = tmp_path("other.bin");
	rc = loader_init(&ld, paths, 2, 4, 0, 1, 1, err, sizeof(err));
	EXPECT_REFUSED(rc, paths[1], "tokenizer \"other-v1\" (vocab 256) does not match");

	/* A bad shard in the list is named. */
	paths[1] = tmp_path("magic.bin");
	rc = loader_init(&ld, paths, 2, 4, 0, 1, 1, err, sizeof(err));
	EXPECT_REFUSED(rc, paths[1], "bad magic");
	rc = loader_init(&ld, paths, 1, 4, 2, 2, 1, err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "rank 2 of 2"), "bad dp rank: %s", err);
	rc = loader_init(&ld, paths, 1, 0, 0, 1, 1, err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "seq_len"), "seq_len 0: %s", err);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_tokenizer();
	test_shard_round_trip();
	test_shard_corruption();
	test_shard_count_overflow();
	make_corpus();
	test_loader_windows();
	test_loader_permutation();
	test_loader_dp(6, 1, 70);
	test_loader_dp(6, 2, 70);
	test_loader_dp(6, 3, 70);
	test_loader_dp(6, 4, 70);	/* uneven shares: 1, 2, 1, 2 */
	test_loader_dp(8, 8, 50);
	test_loader_dp(3, 2, 200);	/* G not a multiple of D */
	test_loader_dp(400, 4, 3);	/* a batch larger than an epoch (W = 173) */
	test_loader_dp2_equals_dp1();
	test_loader_determinism_and_resume();
	test_loader_sequential();
	test_loader_errors();
	EXPECT_TRUE(count_files(".tmp.") == 0, "temporary files left in %s", dir);
	remove_dir();
	return test_finish();
}
