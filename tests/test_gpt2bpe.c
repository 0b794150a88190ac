/* data/gpt2bpe.c against tests/ref/gpt2bpe_reference.py, an independent Python
 * GPT-2 encoder (encoder.py's bpe() on the `regex` module): the vocab.json +
 * merges.txt pair and the tokenizer.json it wrote load to the same tokenizer (id,
 * vocabulary, end-of-document id); every case of tests/fixtures/gpt2bpe_fixture.txt
 * (non-ASCII, contractions, numbers, runs of whitespace, bytes that are not UTF-8,
 * pieces longer than the cut) encodes to the reference's ids, fed whole and in parts
 * of every awkward size, and decodes back to its bytes; random bytes round-trip; a
 * shard carries the table (version 3) and its end-of-document id, and a damaged
 * table is refused; codec.h encodes with it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "data/codec.h"
#include "data/gpt2bpe.h"
#include "data/gpt2bpe_load.h"
#include "data/shard.h"
#include "tests/harness.h"

static char err[SHARD_ERR_LEN];

static void fixture_path(char *dst, size_t len, const char *name)
{
	const char *d = getenv("RN_FIXTURES");

	snprintf(dst, len, "%s/%s", d ? d : "tests/fixtures", name);
}

struct fcase {
	unsigned char *text;
	size_t len;
	uint16_t *ids;
	size_t n_ids;
};

/* The fixture: "vocab V eod E", then "text HEX" / "ids ..." pairs. */
static int load_cases(struct fcase *c, int max, uint32_t *vocab, int32_t *eod)
{
	char path[1024], *line = NULL;
	size_t cap = 0;
	int n = 0;
	FILE *f;

	fixture_path(path, sizeof(path), "gpt2bpe_fixture.txt");
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "%s: cannot open (set RN_FIXTURES)\n", path);
		exit(1);
	}
	while (getline(&line, &cap, f) > 0) {
		char *p = line + 5;

		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "vocab ", 6)) {
			sscanf(line, "vocab %u eod %d", vocab, eod);
		} else if (!strncmp(line, "text ", 5) && n < max) {
			size_t hex = strcmp(p, "-") ? strlen(p) : 0;

			c[n].len = hex / 2;
			c[n].text = xmalloc(c[n].len + 1);
			for (size_t i = 0; i < c[n].len; i++) {
				unsigned v;

				sscanf(p + 2 * i, "%2x", &v);
				c[n].text[i] = (unsigned char)v;
			}
		} else if (!strncmp(line, "ids ", 4) && n < max) {
			char *end;

			p = line + 4;
			c[n].ids = xmalloc(sizeof(uint16_t) * (strlen(p) + 1));
			c[n].n_ids = 0;
			while (strcmp(p, "-") && *p) {
				c[n].ids[c[n].n_ids++] = (uint16_t)strtoul(p, &end, 10);
				p = end;
			}
			n++;
		}
	}
	free(line);
	fclose(f);
	return n;
}

/* Encode text in parts of `part` bytes (0: whole); ids to dst, returns the count. */
static size_t encode_parts(const struct gpt2bpe *g, const unsigned char *text, size_t len,
			   size_t part, uint16_t *dst, uint64_t *total)
{
	struct gpt2bpe_encoder e;
	size_t n = 0, at = 0;
	uint64_t bytes;

	gpt2bpe_encoder_init(&e, g);
	*total = 0;
	if (part == 0)
		part = len ? len : 1;
	while (at < len) {
		size_t k = len - at < part ? len - at : part;

		n += gpt2bpe_encode(&e, text + at, k, false, dst + n, &bytes);
		*total += bytes;
		at += k;
	}
	n += gpt2bpe_encode(&e, NULL, 0, true, dst + n, &bytes);
	*total += bytes;
	return n;
}

/* The first difference of two id lists, printed. */
static bool same_ids(const uint16_t *got, size_t n_got, const uint16_t *want, size_t n_want,
		     const char *label)
{
	size_t i = 0;

	while (i < n_got && i < n_want && got[i] == want[i])
		i++;
	if (i == n_got && i == n_want)
		return true;
	fprintf(stderr, "%s: %zu ids, want %zu; first difference at %zu: %d vs %d\n", label,
		n_got, n_want, i, i < n_got ? got[i] : -1, i < n_want ? want[i] : -1);
	return false;
}

static void test_cases(const struct gpt2bpe *g)
{
	static const size_t parts[] = {0, 1, 2, 3, 5, 7, 13, 64, 1000, 1031};
	struct fcase c[64];
	uint32_t vocab = 0;
	int32_t eod = -2;
	int n = load_cases(c, 64, &vocab, &eod);

	EXPECT_TRUE(n >= 20, "%d cases in the fixture", n);
	EXPECT_TRUE(g->tok.vocab == vocab && g->tok.eod_id == eod, "vocab %u eod %d, want %u %d",
		    g->tok.vocab, g->tok.eod_id, vocab, eod);
	for (int k = 0; k < n; k++) {
		uint16_t *ids = xmalloc(sizeof(uint16_t) * (c[k].len + GPT2BPE_HOLD_MAX + 1));
		unsigned char *back = xmalloc(c[k].len + 1);

		for (size_t p = 0; p < sizeof(parts) / sizeof(parts[0]); p++) {
			char label[64];
			uint64_t bytes;
			size_t m = encode_parts(g, c[k].text, c[k].len, parts[p], ids, &bytes);

			snprintf(label, sizeof(label), "case %d, parts of %zu bytes", k, parts[p]);
			EXPECT_TRUE(same_ids(ids, m, c[k].ids, c[k].n_ids, label) &&
				    bytes == c[k].len, "%s: ids or bytes (%llu of %zu) differ", label,
				    (unsigned long long)bytes, c[k].len);
		}
		/* decode(encode(t)) == t */
		{
			size_t at = 0, len;

			for (size_t i = 0; i < c[k].n_ids && at <= c[k].len; i++) {
				const unsigned char *p = gpt2bpe_token_bytes(g, c[k].ids[i], &len);

				if (at + len <= c[k].len)
					memcpy(back + at, p, len);
				at += len;
			}
			EXPECT_TRUE(at == c[k].len && !memcmp(back, c[k].text, c[k].len),
				    "case %d: decode gives %zu bytes, not the %zu of the text", k, at,
				    c[k].len);
		}
		free(ids);
		free(back);
		free(c[k].text);
		free(c[k].ids);
	}
}

/* Random bytes (mostly not UTF-8, some UTF-8 mixed in) round-trip, whole and in parts. */
static void test_random(const struct gpt2bpe *g)
{
	const size_t N = 20000;
	unsigned char *text = xmalloc(N), *back = xmalloc(N);
	uint16_t *a = xmalloc(sizeof(uint16_t) * (N + GPT2BPE_HOLD_MAX)), *b;
	uint64_t state = 42, bytes;
	size_t na, nb, at = 0, len;

	b = xmalloc(sizeof(uint16_t) * (N + GPT2BPE_HOLD_MAX));
	for (size_t i = 0; i < N; i++) {
		state = state * 6364136223846793005ull + 1442695040888963407ull;
		text[i] = (unsigned char)(state >> 56);
		if ((state >> 20) % 4 == 0)
			text[i] = (unsigned char)" aeiouxyz'\n\t19"[(state >> 30) % 15];
	}
	na = encode_parts(g, text, N, 0, a, &bytes);
	nb = encode_parts(g, text, N, 4097, b, &bytes);
	EXPECT_TRUE(same_ids(a, na, b, nb, "random bytes, whole vs parts"), "parts differ");
	for (size_t i = 0; i < na && at <= N; i++) {
		const unsigned char *p = gpt2bpe_token_bytes(g, a[i], &len);

		if (at + len <= N)
			memcpy(back + at, p, len);
		at += len;
	}
	EXPECT_TRUE(at == N && !memcmp(back, text, N), "random bytes: decode gives %zu of %zu",
		    at, N);
	free(text);
	free(back);
	free(a);
	free(b);
}

/* A shard carries the table and the end-of-document id; damage is refused. */
static void test_shard(const struct gpt2bpe *g)
{
	char dir[] = "/tmp/rn_gpt2bpe_XXXXXX", path[256];
	uint16_t tokens[4] = {1, 2, (uint16_t)g->tok.eod_id, 3};
	struct shard sh;
	struct codec c;
	unsigned char *bytes;
	size_t size;
	FILE *f;

	EXPECT_TRUE(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/a.bin", dir);
	EXPECT_TRUE(shard_write_atomic(path, tokens, 4, 3, &g->tok, 0, err, sizeof(err)) == 0,
		    "%s", err);
	EXPECT_TRUE(shard_open_checked(&sh, path, err, sizeof(err)) == 0, "%s", err);
	EXPECT_TRUE(sh.hdr.version == SHARD_VERSION_TABLE && tokenizer_equal(&sh.tok, &g->tok) &&
		    sh.tok.eod_id == g->tok.eod_id && sh.tok.table_bytes == g->tok.table_bytes,
		    "shard: version %u, tokenizer %s eod %d", sh.hdr.version, sh.tok.id,
		    sh.tok.eod_id);
	EXPECT_TRUE(codec_init(&c, &sh.tok, path, err, sizeof(err)) == 0, "%s", err);
	EXPECT_TRUE(c.is_gpt2 && c.tok.eod_id == g->tok.eod_id, "codec of the shard's table");
	codec_free(&c);
	shard_close(&sh);

	/* a merge naming an id beyond the vocabulary, the checksums made right */
	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	size = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	bytes = xmalloc(size);
	EXPECT_TRUE(fread(bytes, 1, size, f) == size, "read back");
	fclose(f);
	{
		struct shard_header h;
		unsigned char *t = bytes + SHARD_HEADER_SIZE;
		const size_t merges_at = 16 + 2 * (size_t)g->tok.vocab;

		shard_header_unpack(&h, bytes);
		t[merges_at] = 0xff;
		t[merges_at + 1] = 0xff;
		h.merges_checksum = (uint32_t)shard_checksum(t, h.table_bytes);
		shard_header_pack(bytes, &h);
	}
	snprintf(path, sizeof(path), "%s/b.bin", dir);
	f = fopen(path, "wb");
	fwrite(bytes, 1, size, f);
	fclose(f);
	EXPECT_TRUE(shard_open_checked(&sh, path, err, sizeof(err)) == -EINVAL &&
		    strstr(err, "merge 0 (65535,") && strstr(err, "beyond the vocabulary"),
		    "damaged table: %s", err);
	free(bytes);
	unlink(path);
	snprintf(path, sizeof(path), "%s/a.bin", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	char vocab[1024], merges[1024], json[1024];
	struct gpt2bpe pair, tj;
	struct tokenizer t;

	fixture_path(vocab, sizeof(vocab), "gpt2_vocab.json");
	fixture_path(merges, sizeof(merges), "gpt2_merges.txt");
	fixture_path(json, sizeof(json), "gpt2_tokenizer.json");
	if (gpt2bpe_load_pair(&pair, vocab, merges, err, sizeof(err))) {
		fprintf(stderr, "FAIL: %s\n", err);
		return 1;
	}
	if (gpt2bpe_load_json(&tj, json, err, sizeof(err))) {
		fprintf(stderr, "FAIL: %s\n", err);
		return 1;
	}
	EXPECT_TRUE(tokenizer_equal(&pair.tok, &tj.tok) && pair.tok.eod_id == tj.tok.eod_id,
		    "the pair gives %s (eod %d), tokenizer.json %s (eod %d)", pair.tok.id,
		    pair.tok.eod_id, tj.tok.id, tj.tok.eod_id);
	EXPECT_TRUE(!strncmp(pair.tok.id, "gpt2bpe-558-", 12) && strlen(pair.tok.id) == 28,
		    "id %s", pair.tok.id);
	EXPECT_TRUE(gpt2bpe_table_check(&t, pair.tok.table, pair.tok.table_bytes, "table", err,
					sizeof(err)) == 0 && tokenizer_equal(&t, &pair.tok),
		    "the table checks and gives its id: %s", err);
	test_cases(&pair);
	test_cases(&tj);
	test_random(&pair);
	test_shard(&pair);
	gpt2bpe_free(&pair);
	gpt2bpe_free(&tj);
	return test_finish();
}
