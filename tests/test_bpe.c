/* data/bpe.c against tests/fixtures/make_bpe_fixture.py, an independent plain Python
 * BPE: the same merges learned from tests/fixtures/bpe_text.txt (a KJV excerpt plus
 * lines that exercise every piece rule: UTF-8, tabs, CR, runs longer than 63 bytes,
 * control bytes), the same ids for the text, fed whole and in awkward parts;
 * decode(encode(x)) == x on random bytes; piece rules at part boundaries; the
 * tokenizer id; a shard round trip with a merge table and each corruption of it the
 * reader must refuse; too few pairs for the asked vocabulary; data/codec.h: a
 * corpus read from a directory of pieces cut anywhere encodes to the reference ids,
 * every id decodes to its bytes, and a BPE id without its table, or with a table
 * that is not its id's, is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "data/bpe.h"
#include "data/codec.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/harness.h"

static char err[SHARD_ERR_LEN];

static unsigned char *read_file(const char *name, size_t *len)
{
	const char *d = getenv("RN_FIXTURES");
	char path[1024];
	FILE *f;
	unsigned char *b;
	long n;

	snprintf(path, sizeof(path), "%s/%s", d ? d : "tests/fixtures", name);
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: cannot open (set RN_FIXTURES)\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = xmalloc((size_t)n + 1);
	*len = fread(b, 1, (size_t)n, f);
	b[*len] = 0;
	fclose(f);
	return b;
}

struct fixture {
	uint32_t vocab, n_merges;
	uint16_t *merges;
	size_t n_ids;
	uint16_t *ids;
};

static void load_fixture(struct fixture *fx)
{
	size_t len;
	char *text = (char *)read_file("bpe_fixture.txt", &len), *p = text;
	int k;

	if (sscanf(p, "vocab %u\nmerges %u\n%n", &fx->vocab, &fx->n_merges, &k) != 2) {
		fprintf(stderr, "bpe_fixture.txt: bad header\n");
		exit(1);
	}
	p += k;
	fx->merges = xmalloc(2 * fx->n_merges * sizeof(uint16_t));
	for (uint32_t i = 0; i < 2 * fx->n_merges; i++)
		fx->merges[i] = (uint16_t)strtoul(p, &p, 10);
	if (sscanf(p, " tokens %zu%n", &fx->n_ids, &k) != 1) {
		fprintf(stderr, "bpe_fixture.txt: no tokens line\n");
		exit(1);
	}
	p += k;
	fx->ids = xmalloc(fx->n_ids * sizeof(uint16_t));
	for (size_t i = 0; i < fx->n_ids; i++)
		fx->ids[i] = (uint16_t)strtoul(p, &p, 10);
	free(text);
}

/* Encode text in parts of the given sizes (cycled), final on the last. */
static size_t encode_in_parts(const struct bpe *b, const unsigned char *text, size_t n,
			      const size_t *parts, int n_parts, uint16_t *out, uint64_t *bytes)
{
	struct bpe_encoder *e = xmalloc(sizeof(*e));
	uint16_t *tmp = xmalloc((n + BPE_PIECE_MAX) * sizeof(*tmp));
	size_t n_out = 0, pos = 0;
	int k = 0;

	bpe_encoder_init(e, b);
	*bytes = 0;
	do {
		size_t take = parts[k++ % n_parts];
		uint64_t done;
		size_t nt;

		if (take > n - pos)
			take = n - pos;
		nt = bpe_encode(e, text + pos, take, pos + take == n, tmp, &done);
		memcpy(out + n_out, tmp, nt * sizeof(*tmp));
		n_out += nt;
		*bytes += done;
		pos += take;
	} while (pos < n);
	free(tmp);
	free(e);
	return n_out;
}

static void test_against_reference(void)
{
	struct fixture fx;
	size_t n;
	unsigned char *text = read_file("bpe_text.txt", &n);
	struct bpe_learner *l = bpe_learner_new();
	uint16_t *merges, *ids = xmalloc((n + BPE_PIECE_MAX) * sizeof(*ids));
	struct tokenizer tok;
	struct bpe b;
	static const size_t whole[] = { 1 << 30 }, odd[] = { 1, 7, 63, 64, 65, 2, 1000 };
	uint64_t bytes;
	size_t n_ids, first_bad = SIZE_MAX;

	load_fixture(&fx);
	/* Learning from the text fed in parts must not depend on the parts. */
	for (size_t pos = 0; pos < n; pos += 977)
		bpe_learner_feed(l, text + pos, n - pos < 977 ? n - pos : 977, false);
	EXPECT_TRUE(bpe_learner_merges(l, fx.vocab, &merges, "t", err, sizeof(err)) == 0, "%s",
		    err);
	bpe_learner_free(l);
	EXPECT_TRUE(memcmp(merges, fx.merges, 2 * fx.n_merges * sizeof(uint16_t)) == 0,
		    "the learned merges differ from the reference's");
	for (uint32_t i = 0; i < fx.n_merges; i++)
		if (merges[2 * i] != fx.merges[2 * i] || merges[2 * i + 1] != fx.merges[2 * i + 1]) {
			fprintf(stderr, "  first difference: merge %u: (%u, %u), reference (%u, %u)\n",
				i, merges[2 * i], merges[2 * i + 1], fx.merges[2 * i],
				fx.merges[2 * i + 1]);
			break;
		}
	EXPECT_TRUE(tokenizer_init_bpe(&tok, fx.merges, fx.n_merges, "t", err, sizeof(err)) == 0,
		    "%s", err);
	EXPECT_TRUE(tok.vocab == fx.vocab && tokenizer_is_bpe(&tok) &&
			    strncmp(tok.id, "bpe-v1-512-", 11) == 0 && strlen(tok.id) == 27,
		    "id %s vocab %u", tok.id, tok.vocab);
	bpe_init(&b, &tok);

	for (int pass = 0; pass < 2; pass++) {
		n_ids = encode_in_parts(&b, text, n, pass ? odd : whole, pass ? 7 : 1, ids, &bytes);
		for (size_t i = 0; i < n_ids && i < fx.n_ids && first_bad == SIZE_MAX; i++)
			if (ids[i] != fx.ids[i])
				first_bad = i;
		EXPECT_TRUE(n_ids == fx.n_ids && first_bad == SIZE_MAX && bytes == n,
			    "%s parts: %zu ids (reference %zu), first difference at %zd, %llu of "
			    "%zu bytes", pass ? "odd" : "whole", n_ids, fx.n_ids,
			    first_bad == SIZE_MAX ? (ssize_t)-1 : (ssize_t)first_bad,
			    (unsigned long long)bytes, n);
	}
	bpe_free(&b);
	free(merges);
	free(ids);
	free(text);
	free(fx.merges);
	free(fx.ids);
}

/* Random bytes (all 256 values, long runs of each class) survive the round trip. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void test_round_trip(void)
{
	size_t n;
	unsigned char *corpus = read_file("bpe_text.txt", &n);
	struct bpe_learner *l = bpe_learner_new();
	uint16_t *merges;
	struct tokenizer tok;
	struct bpe b;
	enum { N = 20000 };
	unsigned char *text = xmalloc(N), *back = xmalloc(N);
	uint16_t *ids = xmalloc((N + BPE_PIECE_MAX) * sizeof(*ids));
	uint64_t r = 42;
	static const size_t parts[] = { 3, 64, 1, 4096, 63 };
	uint64_t bytes;
	size_t n_ids, pos = 0;
	bool ok = true;

	bpe_learner_feed(l, corpus, n, true);
	EXPECT_TRUE(bpe_learner_merges(l, 700, &merges, "t", err, sizeof(err)) == 0, "%s", err);
	bpe_learner_free(l);
	tokenizer_init_bpe(&tok, merges, 700 - 256, "t", err, sizeof(err));
	bpe_init(&b, &tok);
	for (size_t i = 0; i < N;) {
		/* Runs of one byte value, random length, random values. */
		unsigned char c = (unsigned char)(next_random(&r) >> 56);
		size_t run = 1 + (size_t)(next_random(&r) % 100);

		if (next_random(&r) % 3 == 0)
			c = corpus[next_random(&r) % n];
		for (size_t k = 0; k < run && i < N; k++, i++)
			text[i] = next_random(&r) % 4 ? c : corpus[(i * 7) % n];
	}
	n_ids = encode_in_parts(&b, text, N, parts, 5, ids, &bytes);
	EXPECT_TRUE(bytes == N && n_ids <= N, "%llu bytes, %zu ids", (unsigned long long)bytes,
		    n_ids);
	for (size_t i = 0; i < n_ids && ok; i++) {
		size_t len;
		const unsigned char *p = bpe_token_bytes(&b, ids[i], &len);

		ok = ids[i] < tok.vocab && len >= 1 && len <= BPE_PIECE_MAX && pos + len <= N;
		if (ok)
			memcpy(back + pos, p, len);
		pos += len;
	}
	EXPECT_TRUE(ok && pos == N && memcmp(back, text, N) == 0,
		    "decode(encode(x)) != x (%zu of %d bytes back)", pos, N);
	bpe_free(&b);
	free(merges);
	free(text);
	free(back);
	free(ids);
	free(corpus);
}

static void test_piece_rules(void)
{
	const unsigned char *s = (const unsigned char *)" the";
	unsigned char run[100];

	EXPECT_TRUE(bpe_piece_len(s, 4, true) == 4, "' the' whole");
	EXPECT_TRUE(bpe_piece_len(s, 4, false) == 0, "' the' may go on");
	EXPECT_TRUE(bpe_piece_len(s, 1, false) == 0, "a lone space waits for the next byte");
	EXPECT_TRUE(bpe_piece_len(s, 1, true) == 1, "a final lone space");
	EXPECT_TRUE(bpe_piece_len((const unsigned char *)"  a", 3, true) == 1, "space space");
	EXPECT_TRUE(bpe_piece_len((const unsigned char *)"ab1", 3, false) == 2, "class change");
	EXPECT_TRUE(bpe_piece_len((const unsigned char *)" 12,", 4, false) == 3, "digits");
	EXPECT_TRUE(bpe_piece_len((const unsigned char *)"\n\n", 2, false) == 1, "newline");
	memset(run, 'a', sizeof(run));
	EXPECT_TRUE(bpe_piece_len(run, 100, false) == 63, "63 letters are a whole piece");
	EXPECT_TRUE(bpe_piece_len(run, 62, false) == 0, "62 letters may go on");
	run[0] = ' ';
	EXPECT_TRUE(bpe_piece_len(run, 100, false) == 64, "space + 63 letters");
}

/* Merges for too small a text; merge tables a reader must refuse. */
static void test_errors(void)
{
	struct bpe_learner *l = bpe_learner_new();
	uint16_t *merges = NULL, bad[4] = { 97, 98, 256, 258 }, doubling[14];
	struct tokenizer tok;
	int rc;

	bpe_learner_feed(l, (const unsigned char *)"abab cdcd", 9, true);
	rc = bpe_learner_merges(l, 300, &merges, "--vocab-size", err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "--vocab-size: the text has only ") &&
			    strstr(err, "too few for a vocabulary of 300"), "%d %s", rc, err);
	bpe_learner_free(l);
	free(merges);
	rc = tokenizer_init_bpe(&tok, bad, 2, "f.bin", err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "f.bin: BPE merge 1 (256, 258) uses an id"),
		    "%s", err);
	/* aa, then doubling: merge 6 would make an id of 128 bytes. */
	for (int i = 0; i < 7; i++) {
		doubling[2 * i] = (uint16_t)(i ? 255 + i : 97);
		doubling[2 * i + 1] = doubling[2 * i];
	}
	rc = tokenizer_init_bpe(&tok, doubling, 7, "g.bin", err, sizeof(err));
	EXPECT_TRUE(rc == -EINVAL && strstr(err, "g.bin: BPE merge 6 makes an id of 128 bytes"),
		    "%s", err);
	EXPECT_TRUE(tokenizer_init_bpe(&tok, doubling, 6, "g.bin", err, sizeof(err)) == 0,
		    "64 bytes are allowed: %s", err);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Rewrite a damaged header's checksum so only the intended rule can fire. */
static void reseal(unsigned char *b)
{
	put32(b + 124, (uint32_t)shard_checksum(b, 124));
}

static void test_shard_v2(void)
{
	char dir[] = "/tmp/rn_test_bpe.XXXXXX", path[600], bad[600];
	uint16_t merges[6] = { 97, 98, 256, 99, 257, 257 }, ids[5] = { 256, 258, 7, 257, 0 };
	struct tokenizer tok;
	struct shard sh;
	unsigned char *b;
	size_t len;
	FILE *f;
	struct {
		const char *what;
		size_t off;
		unsigned char xor;
		bool reseal;
		const char *want;
	} cases[] = {
		{ "merge table byte", 128 + 5, 0x01, false, "merge table checksum mismatch" },
		{ "merge count", 80, 0x01, true, "merges do not make vocab 259" },
		{ "header size", 12, 0x04, true, "is not 140, the size of a version 2 header" },
		{ "id", 40, 0x01, true, "is not that of its merge table" },
	};

	EXPECT_TRUE(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/v2.bin", dir);
	EXPECT_TRUE(tokenizer_init_bpe(&tok, merges, 3, "t", err, sizeof(err)) == 0, "%s", err);
	EXPECT_TRUE(shard_write_atomic(path, ids, 5, 11, &tok, 0, err, sizeof(err)) == 0, "%s",
		    err);
	EXPECT_TRUE(shard_open_checked(&sh, path, err, sizeof(err)) == 0, "%s", err);
	EXPECT_TRUE(sh.hdr.version == 2 && sh.hdr.header_size == 140 && sh.tok.n_merges == 3 &&
			    memcmp(sh.tok.merges, merges, sizeof(merges)) == 0 &&
			    tokenizer_equal(&sh.tok, &tok) && sh.hdr.n_tokens == 5 &&
			    sh.tokens[1] == 258 && sh.hdr.source_bytes == 11,
		    "round trip: version %u header %u merges %u", sh.hdr.version,
		    sh.hdr.header_size, sh.tok.n_merges);
	shard_close(&sh);

	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	b = xmalloc(len);
	EXPECT_TRUE(fread(b, 1, len, f) == len, "read back");
	fclose(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *c = xmalloc(len);

		memcpy(c, b, len);
		c[cases[i].off] ^= cases[i].xor;
		if (cases[i].reseal)
			reseal(c);
		snprintf(bad, sizeof(bad), "%s/bad%zu.bin", dir, i);
		f = fopen(bad, "wb");
		fwrite(c, 1, len, f);
		fclose(f);
		EXPECT_TRUE(shard_open_checked(&sh, bad, err, sizeof(err)) == -EINVAL &&
				    strncmp(err, bad, strlen(bad)) == 0 && strstr(err, cases[i].want),
			    "%s: got \"%s\"", cases[i].what, err);
		unlink(bad);
		free(c);
	}
	/* Cut inside the merge table. */
	snprintf(bad, sizeof(bad), "%s/short.bin", dir);
	f = fopen(bad, "wb");
	fwrite(b, 1, 134, f);
	fclose(f);
	EXPECT_TRUE(shard_open_checked(&sh, bad, err, sizeof(err)) == -EINVAL &&
			    strstr(err, "truncated merge table"), "short: got \"%s\"", err);
	unlink(bad);
	unlink(path);
	rmdir(dir);
	free(b);
}

/* The reference text as a directory of pieces cut mid-piece (one file each 4099
 * bytes) gives the reference ids, and decodes back to the text. */
static void test_codec(void)
{
	struct fixture fx;
	size_t n;
	unsigned char *text = read_file("bpe_text.txt", &n);
	char dir[] = "/tmp/rn_test_codec.XXXXXX", path[1100];
	const char *paths[1];
	struct tokenizer tok, bad;
	struct codec c;
	uint16_t *ids = NULL, merges2[4];
	uint64_t n_ids = 0, bytes = 0;
	size_t k = 0, pos = 0, len, first_bad = SIZE_MAX;
	int files = 0;

	load_fixture(&fx);
	EXPECT_TRUE(mkdtemp(dir) != NULL, "mkdtemp");
	for (size_t at = 0; at < n; at += 4099, files++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/part-%03d", dir, files);
		f = fopen(path, "wb");
		fwrite(text + at, 1, n - at < 4099 ? n - at : 4099, f);
		fclose(f);
	}
	paths[0] = dir;
	EXPECT_TRUE(tokenizer_init_bpe(&tok, fx.merges, fx.n_merges, "t", err, sizeof(err)) == 0,
		    "%s", err);
	EXPECT_TRUE(codec_init(&c, &tok, "t", err, sizeof(err)) == 0, "codec: %s", err);
	EXPECT_TRUE(codec_encode_inputs(&c, paths, 1, 1 << 30, &ids, &n_ids, &bytes, err,
					sizeof(err)) == 0,
		    "a directory of %d pieces: %s", files, err);
	for (size_t i = 0; ids && i < n_ids && i < fx.n_ids && first_bad == SIZE_MAX; i++)
		if (ids[i] != fx.ids[i])
			first_bad = i;
	EXPECT_TRUE(n_ids == fx.n_ids && bytes == n && first_bad == SIZE_MAX,
		    "%llu ids of %llu bytes (reference %zu of %zu), first difference %zd",
		    (unsigned long long)n_ids, (unsigned long long)bytes, fx.n_ids, n,
		    first_bad == SIZE_MAX ? (ssize_t)-1 : (ssize_t)first_bad);
	for (uint64_t i = 0; ids && i < n_ids && pos <= n; i++) {
		const unsigned char *p = codec_token_bytes(&c, ids[i], &len);

		k += pos + len <= n && memcmp(p, text + pos, len) == 0;
		pos += len;
	}
	EXPECT_TRUE(pos == n && k == n_ids, "decoded: %zu of %zu bytes, %zu ids match", pos, n,
		    k);
	codec_free(&c);
	free(ids);

	/* a BPE id without its table; a table that is not its id's; an unknown id */
	bad = tok;
	bad.merges = NULL;
	bad.n_merges = 0;
	EXPECT_TRUE(codec_init(&c, &bad, "ck.h5", err, sizeof(err)) == -EINVAL &&
			    strstr(err, "ck.h5: tokenizer \"bpe-v1-512-") &&
			    strstr(err, "has no merge table here"),
		    "no table: %s", err);
	memcpy(merges2, fx.merges, sizeof(merges2));
	merges2[2] = fx.merges[0]; /* merge 1 made the same as merge 0: still valid */
	merges2[3] = fx.merges[1];
	bad = tok;
	bad.merges = merges2;
	bad.n_merges = 2;
	bad.vocab = 258;
	snprintf(bad.id, sizeof(bad.id), "bpe-v1-258-0123456789abcdef");
	EXPECT_TRUE(codec_init(&c, &bad, "ck.h5", err, sizeof(err)) == -EINVAL &&
			    strstr(err, "ck.h5: the merge table gives tokenizer \"bpe-v1-258-") &&
			    strstr(err, "not \"bpe-v1-258-0123456789abcdef\""),
		    "a table that is not its id's: %s", err);
	memset(&bad, 0, sizeof(bad));
	snprintf(bad.id, sizeof(bad.id), "words-v1");
	bad.vocab = 256;
	EXPECT_TRUE(codec_init(&c, &bad, "x.bin", err, sizeof(err)) == -EINVAL &&
			    strstr(err, "x.bin: tokenizer \"words-v1\" (vocab 256) is not one"),
		    "an unknown tokenizer: %s", err);
	tokenizer_init_bytes(&bad);
	EXPECT_TRUE(codec_init(&c, &bad, "x", err, sizeof(err)) == 0 &&
			    *codec_token_bytes(&c, 200, &len) == 200 && len == 1,
		    "bytes: %s", err);
	codec_free(&c);
	for (int i = 0; i < files; i++) {
		snprintf(path, sizeof(path), "%s/part-%03d", dir, i);
		unlink(path);
	}
	rmdir(dir);
	free(text);
	free(fx.merges);
	free(fx.ids);
}

int main(void)
{
	test_codec();
	test_against_reference();
	test_round_trip();
	test_piece_rules();
	test_errors();
	test_shard_v2();
	return test_finish();
}
