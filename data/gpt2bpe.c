#include "data/gpt2bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"

/* GPT-2's pre-tokenizer pattern (encoder.py), verbatim. */
static const char gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define TABLE_HEAD 16u
#define NO_CP 0xffffu

/* ------------------------------------------------------------ byte-level map */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
 * other 68 bytes for U+0100 onwards, so that every byte is a visible character. */
static void byte_level_maps(uint16_t byte_cp[256], uint16_t cp_byte[324])
{
	int n = 0;

	for (int i = 0; i < 324; i++)
		cp_byte[i] = NO_CP;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) ||
				 (b >= 0xae && b <= 0xff);

		byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
		cp_byte[byte_cp[b]] = (uint16_t)b;
	}
}

/* Length of the valid UTF-8 character at s (n >= 1 bytes), as Python's strict
 * decoder accepts it; 0 if none. *more: the bytes are the start of a valid
 * character that continues past the n bytes. */
static size_t utf8_len(const unsigned char *s, size_t n, bool *more)
{
	const unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	*more = false;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;	/* no surrogates */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;	/* nothing above U+10FFFF */
	for (size_t i = 1; i < len; i++) {
		if (i >= n) {
			*more = true;
			return 0;
		}
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return len;
}

/* Decode a NUL-terminated UTF-8 string (valid: from a JSON parser). A token of
 * the byte-level alphabet gives its bytes; any other (a special token) its own
 * UTF-8 bytes. dst holds strlen(s) bytes; returns the length. */
static size_t token_bytes_of(unsigned char *dst, const char *s, const uint16_t cp_byte[324])
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), k = 0;
	bool more;

	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(p + i, n - i, &more);
		uint32_t cp;

		if (len == 0)
			goto raw;
		cp = len == 1 ? p[i] : len == 2 ? (p[i] & 0x1fu) << 6 | (p[i + 1] & 0x3fu)
			: len == 3 ? (p[i] & 0x0fu) << 12 | (p[i + 1] & 0x3fu) << 6 |
				     (p[i + 2] & 0x3fu)
			: 0x110000;
		if (cp >= 324 || cp_byte[cp] == NO_CP)
			goto raw;
		dst[k++] = (unsigned char)cp_byte[cp];
		i += len;
	}
	return k;
raw:
	memcpy(dst, s, n);
	return n;
}

/* ------------------------------------------------------------ hash maps */

static uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

#define FNV_START 0xcbf29ce484222325ull

/* bytes -> id, open addressed: slot holds id + 1 (0: empty). */
struct bytes_map {
	uint32_t *slot;
	size_t cap;
};

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;

	while (c < n)
		c *= 2;
	return c;
}

/* The id with these bytes, or -1. */
static int32_t bytes_find(const struct bytes_map *m, const uint16_t *len, const uint32_t *off,
			  const unsigned char *text, const unsigned char *p, size_t n)
{
	for (size_t h = fnv1a(p, n, FNV_START) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
		uint32_t id;

		if (!m->slot[h])
			return -1;
		id = m->slot[h] - 1;
		if (len[id] == n && !memcmp(text + off[id], p, n))
			return (int32_t)id;
	}
}

/* (a, b) -> (rank, merged id), open addressed: rank + 1 in `rank` (0: empty). */
struct gpt2bpe_pairs {
	uint32_t *key, *rank;
	uint16_t *merged;
	size_t cap;
};

static size_t pair_slot(const struct gpt2bpe_pairs *m, uint32_t key)
{
	size_t h = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (m->cap - 1);

	while (m->rank[h] && m->key[h] != key)
		h = (h + 1) & (m->cap - 1);
	return h;
}

/* ------------------------------------------------------------ the table */

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Table bytes for n ids, m merges and B token bytes (uint64: no overflow). */
static uint64_t table_size(uint64_t n, uint64_t m, uint64_t text)
{
	return (TABLE_HEAD + 2 * n + 4 * m + text + 3) / 4 * 4;
}

bool gpt2bpe_is(const struct tokenizer *tok)
{
	return strncmp(tok->id, GPT2BPE_ID_PREFIX, strlen(GPT2BPE_ID_PREFIX)) == 0;
}

/* Fill g's views of its table (owned or not) and its maps; checks every rule. */
static int setup(struct gpt2bpe *g, const unsigned char *t, uint32_t bytes, const char *what,
		 char *err, size_t err_len)
{
	struct bytes_map bm = {0};
	unsigned char *cat = NULL;	/* two ids' bytes joined */
	uint32_t n, m, eod1, text_bytes;
	uint64_t sum = 0;
	int rc = -EINVAL;

	if (bytes < TABLE_HEAD || bytes % 4) {
		snprintf(err, err_len, "%s: GPT-2 tokenizer table of %u bytes: too short or not "
			 "a multiple of 4", what, bytes);
		return -EINVAL;
	}
	n = get_u32(t);
	m = get_u32(t + 4);
	eod1 = get_u32(t + 8);
	text_bytes = get_u32(t + 12);
	if (n < 256 || n > TOKENIZER_MAX_VOCAB || m > TOKENIZER_MAX_VOCAB ||
	    table_size(n, m, text_bytes) != bytes) {
		snprintf(err, err_len, "%s: GPT-2 tokenizer table: %u ids, %u merges and %u "
			 "token bytes do not make its %u bytes (256 to %d ids)", what, n, m,
			 text_bytes, bytes, TOKENIZER_MAX_VOCAB);
		return -EINVAL;
	}
	if (eod1 > n) {
		snprintf(err, err_len, "%s: GPT-2 tokenizer table: end-of-document id %u is beyond "
			 "the vocabulary of %u ids", what, eod1 - 1, n);
		return -EINVAL;
	}
	g->len = (const uint16_t *)(const void *)(t + TABLE_HEAD);
	g->merges = g->len + n;
	g->text = t + TABLE_HEAD + 2 * (size_t)n + 4 * (size_t)m;
	g->n_merges = m;
	g->offset = xmalloc(sizeof(uint32_t) * n);
	for (uint32_t i = 0; i < n; i++) {
		if (g->len[i] == 0) {
			snprintf(err, err_len, "%s: id %u has no bytes", what, i);
			goto out;
		}
		g->offset[i] = (uint32_t)sum;
		sum += g->len[i];
	}
	if (sum != text_bytes) {
		snprintf(err, err_len, "%s: GPT-2 tokenizer table: the ids' lengths add up to %llu "
			 "bytes, not %u", what, (unsigned long long)sum, text_bytes);
		goto out;
	}
	bm.cap = pow2_at_least(2 * (size_t)n);
	bm.slot = xcalloc(bm.cap, sizeof(uint32_t));
	for (uint32_t i = 0; i < n; i++) {
		const unsigned char *p = g->text + g->offset[i];
		int32_t dup = bytes_find(&bm, g->len, g->offset, g->text, p, g->len[i]);
		size_t h;

		if (dup >= 0) {
			snprintf(err, err_len, "%s: ids %d and %u have the same bytes", what, dup, i);
			goto out;
		}
		for (h = fnv1a(p, g->len[i], FNV_START) & (bm.cap - 1); bm.slot[h];
		     h = (h + 1) & (bm.cap - 1))
			;
		bm.slot[h] = i + 1;
	}
	for (int b = 0; b < 256; b++) {
		unsigned char c = (unsigned char)b;
		int32_t id = bytes_find(&bm, g->len, g->offset, g->text, &c, 1);

		if (id < 0) {
			snprintf(err, err_len, "%s: byte 0x%02x has no token (a byte-level "
				 "vocabulary has all 256)", what, b);
			goto out;
		}
		g->byte_id[b] = (uint16_t)id;
	}
	g->pairs = xcalloc(1, sizeof(*g->pairs));
	g->pairs->cap = pow2_at_least(2 * (size_t)m);
	g->pairs->key = xcalloc(g->pairs->cap, sizeof(uint32_t));
	g->pairs->rank = xcalloc(g->pairs->cap, sizeof(uint32_t));
	g->pairs->merged = xcalloc(g->pairs->cap, sizeof(uint16_t));
	cat = xmalloc(2 * 65535);
	for (uint32_t r = 0; r < m; r++) {
		const uint16_t a = g->merges[2 * r], b = g->merges[2 * r + 1];
		int32_t id;
		size_t h;

		if (a >= n || b >= n) {
			snprintf(err, err_len, "%s: merge %u (%u, %u) names an id beyond the "
				 "vocabulary of %u ids", what, r, a, b, n);
			goto out;
		}
		memcpy(cat, g->text + g->offset[a], g->len[a]);
		memcpy(cat + g->len[a], g->text + g->offset[b], g->len[b]);
		id = bytes_find(&bm, g->len, g->offset, g->text, cat,
				(size_t)g->len[a] + g->len[b]);
		if (id < 0) {
			snprintf(err, err_len, "%s: merge %u (%u, %u) makes bytes that are no id of "
				 "the vocabulary", what, r, a, b);
			goto out;
		}
		h = pair_slot(g->pairs, (uint32_t)a << 16 | b);
		if (!g->pairs->rank[h]) {	/* a repeated merge: the first rank counts */
			g->pairs->key[h] = (uint32_t)a << 16 | b;
			g->pairs->rank[h] = r + 1;
			g->pairs->merged[h] = (uint16_t)id;
		}
	}
	memset(&g->tok, 0, sizeof(g->tok));
	g->tok.vocab = n;
	g->tok.eod_id = (int32_t)eod1 - 1;
	g->tok.table = t;
	g->tok.table_bytes = bytes;
	snprintf(g->tok.id, sizeof(g->tok.id), GPT2BPE_ID_PREFIX "%u-%016llx", n,
		 (unsigned long long)fnv1a(t, bytes, FNV_START));
	rc = 0;
out:
	free(cat);
	free(bm.slot);
	return rc;
}

static void release(struct gpt2bpe *g)
{
	if (g->pairs) {
		free(g->pairs->key);
		free(g->pairs->rank);
		free(g->pairs->merged);
		free(g->pairs);
	}
	if (g->code)
		pcre2_code_free(g->code);
	free(g->offset);
	free(g->table);
	memset(g, 0, sizeof(*g));
}

int gpt2bpe_table_check(struct tokenizer *tok, const unsigned char *table, uint32_t bytes,
			const char *what, char *err, size_t err_len)
{
	struct gpt2bpe g = {0};
	int rc = setup(&g, table, bytes, what, err, err_len);

	if (!rc)
		*tok = g.tok;
	release(&g);
	return rc;
}

/* Own a copy of the table, check it and compile the pattern. */
static int init_table(struct gpt2bpe *g, const unsigned char *table, uint32_t bytes,
		      const char *what, char *err, size_t err_len)
{
	PCRE2_SIZE at;
	int code_err, rc;

	memset(g, 0, sizeof(*g));
	g->table = xmalloc(bytes ? bytes : 1);
	memcpy(g->table, table, bytes);
	g->table_bytes = bytes;
	rc = setup(g, g->table, bytes, what, err, err_len);
	if (rc) {
		release(g);
		return rc;
	}
	g->code = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
				PCRE2_UTF | PCRE2_UCP, &code_err, &at, NULL);
	if (!g->code)
		FATAL("pcre2_compile of GPT-2's pattern: error %d at %zu", code_err, (size_t)at);
	/* JIT is an optimisation: without it (no JIT on this CPU) the interpreter runs */
	(void)pcre2_jit_compile(g->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
	return 0;
}

int gpt2bpe_init(struct gpt2bpe *g, const struct tokenizer *tok, const char *what, char *err,
		 size_t err_len)
{
	int rc;

	if (!tok->table) {
		snprintf(err, err_len, "%s: tokenizer \"%.*s\" has no vocabulary table here", what,
			 TOKENIZER_ID_LEN, tok->id);
		return -EINVAL;
	}
	rc = init_table(g, tok->table, tok->table_bytes, what, err, err_len);
	if (!rc && !tokenizer_equal(&g->tok, tok)) {
		snprintf(err, err_len, "%s: the vocabulary table gives tokenizer \"%s\", not "
			 "\"%.*s\"", what, g->tok.id, TOKENIZER_ID_LEN, tok->id);
		release(g);
		return -EINVAL;
	}
	return rc;
}

void gpt2bpe_free(struct gpt2bpe *g)
{
	release(g);
}

const unsigned char *gpt2bpe_token_bytes(const struct gpt2bpe *g, uint32_t id, size_t *len)
{
	ENSURE(id < g->tok.vocab);
	*len = g->len[id];
	return g->text + g->offset[id];
}

/* ------------------------------------------------------------ loading files */

/* A vocabulary being read: each id's bytes, and the merges as id pairs. */
struct build {
	uint32_t n;			/* ids 0..n-1 */
	unsigned char **bytes;		/* (n) owned, NULL: not yet given */
	uint16_t *len;			/* (n) */
	uint16_t *merges;		/* (cap_m, 2) */
	uint32_t n_merges, cap_m;
	struct bytes_map map;		/* filled once every id is known */
	uint32_t *offset;		/* (n) for the map: into a joined text */
	unsigned char *text;
	uint16_t byte_cp[256], cp_byte[324];
};

static void build_free(struct build *b)
{
	for (uint32_t i = 0; b->bytes && i < b->n; i++)
		free(b->bytes[i]);
	free(b->bytes);
	free(b->len);
	free(b->merges);
	free(b->map.slot);
	free(b->offset);
	free(b->text);
}

/* Id `id` is the token of JSON string s. */
static int build_set(struct build *b, json_int_t id, const char *s, const char *what,
		     char *err, size_t err_len)
{
	size_t n = strlen(s);

	if (id < 0 || (uint64_t)id >= b->n) {
		snprintf(err, err_len, "%s: token id %lld of \"%.40s\" is beyond the vocabulary "
			 "of %u ids (ids must be 0 to N-1, each once)", what, (long long)id, s,
			 b->n);
		return -EINVAL;
	}
	if (n == 0 || n > 65535) {
		snprintf(err, err_len, "%s: token id %lld has %zu bytes (1 to 65535)", what,
			 (long long)id, n);
		return -EINVAL;
	}
	if (b->bytes[id]) {
		snprintf(err, err_len, "%s: token id %lld is given twice (ids must be 0 to N-1, "
			 "each once)", what, (long long)id);
		return -EINVAL;
	}
	b->bytes[id] = xmalloc(n);
	b->len[id] = (uint16_t)token_bytes_of(b->bytes[id], s, b->cp_byte);
	return 0;
}

static int build_vocab(struct build *b, json_t *vocab, uint32_t extra, const char *what,
		       char *err, size_t err_len)
{
	const char *key;
	json_t *v;

	if (!json_is_object(vocab)) {
		snprintf(err, err_len, "%s: the vocabulary is not a JSON object of token: id", what);
		return -EINVAL;
	}
	if (json_object_size(vocab) + extra > TOKENIZER_MAX_VOCAB) {
		snprintf(err, err_len, "%s: %zu tokens: more than %d (ids are stored as uint16)",
			 what, json_object_size(vocab) + extra, TOKENIZER_MAX_VOCAB);
		return -EINVAL;
	}
	b->n = (uint32_t)json_object_size(vocab) + extra;
	b->bytes = xcalloc(b->n ? b->n : 1, sizeof(*b->bytes));
	b->len = xcalloc(b->n ? b->n : 1, sizeof(*b->len));
	byte_level_maps(b->byte_cp, b->cp_byte);
	json_object_foreach(vocab, key, v) {
		if (!json_is_integer(v)) {
			snprintf(err, err_len, "%s: token \"%.40s\": its id is not an integer", what,
				 key);
			return -EINVAL;
		}
		if (build_set(b, json_integer_value(v), key, what, err, err_len))
			return -EINVAL;
	}
	return 0;
}

/* Every id known: the map from bytes to ids that merges are checked with. */
static int build_map(struct build *b, const char *what, char *err, size_t err_len)
{
	size_t total = 0;

	b->offset = xmalloc(sizeof(uint32_t) * (b->n ? b->n : 1));
	for (uint32_t i = 0; i < b->n; i++) {
		if (!b->bytes[i]) {
			snprintf(err, err_len, "%s: no token has id %u (ids must be 0 to %u, each "
				 "once)", what, i, b->n - 1);
			return -EINVAL;
		}
		b->offset[i] = (uint32_t)total;
		total += b->len[i];
	}
	b->text = xmalloc(total ? total : 1);
	for (uint32_t i = 0; i < b->n; i++)
		memcpy(b->text + b->offset[i], b->bytes[i], b->len[i]);
	b->map.cap = pow2_at_least(2 * (size_t)b->n);
	b->map.slot = xcalloc(b->map.cap, sizeof(uint32_t));
	for (uint32_t i = 0; i < b->n; i++) {
		const unsigned char *p = b->text + b->offset[i];
		size_t h;

		if (bytes_find(&b->map, b->len, b->offset, b->text, p, b->len[i]) >= 0)
			continue;	/* a duplicate: refused when the table is checked */
		for (h = fnv1a(p, b->len[i], FNV_START) & (b->map.cap - 1); b->map.slot[h];
		     h = (h + 1) & (b->map.cap - 1))
			;
		b->map.slot[h] = i + 1;
	}
	return 0;
}

/* One merge "a b" (where: "FILE:LINE" or "FILE: model.merges[i]"). */
static int build_merge(struct build *b, const char *a, size_t na, const char *c, size_t nc,
		       const char *where, char *err, size_t err_len)
{
	char *s = xmalloc(na + nc + 1);
	unsigned char *ab = xmalloc(na + nc + 1), *bb = xmalloc(nc + 1);
	size_t la, lb;
	int32_t ia, ib;
	int rc = -EINVAL;

	memcpy(s, a, na);
	s[na] = '\0';
	la = token_bytes_of(ab, s, b->cp_byte);
	ia = bytes_find(&b->map, b->len, b->offset, b->text, ab, la);
	memcpy(s, c, nc);
	s[nc] = '\0';
	lb = token_bytes_of(bb, s, b->cp_byte);
	ib = bytes_find(&b->map, b->len, b->offset, b->text, bb, lb);
	if (ia < 0 || ib < 0) {
		snprintf(err, err_len, "%s: merge \"%.*s %.*s\": \"%.*s\" is not a token of the "
			 "vocabulary (the pair disagree)", where, (int)na, a, (int)nc, c,
			 ia < 0 ? (int)na : (int)nc, ia < 0 ? a : c);
		goto out;
	}
	memcpy(ab + la, bb, lb);
	if (bytes_find(&b->map, b->len, b->offset, b->text, ab, la + lb) < 0) {
		snprintf(err, err_len, "%s: merge \"%.*s %.*s\" makes \"%.*s%.*s\", which is not a "
			 "token of the vocabulary (the pair disagree)", where, (int)na, a, (int)nc,
			 c, (int)na, a, (int)nc, c);
		goto out;
	}
	if (b->n_merges == b->cap_m) {
		b->cap_m = b->cap_m ? 2 * b->cap_m : 1024;
		b->merges = realloc(b->merges, size_mul_checked(b->cap_m, 4, "merges"));
		CHECK_PTR(b->merges);
	}
	if (b->n_merges >= TOKENIZER_MAX_VOCAB) {
		snprintf(err, err_len, "%s: more than %d merges", where, TOKENIZER_MAX_VOCAB);
		goto out;
	}
	b->merges[2 * b->n_merges] = (uint16_t)ia;
	b->merges[2 * b->n_merges + 1] = (uint16_t)ib;
	b->n_merges++;
	rc = 0;
out:
	free(s);
	free(ab);
	free(bb);
	return rc;
}

/* The table of a complete build, loaded into g. */
static int build_finish(struct gpt2bpe *g, struct build *b, const char *what, char *err,
			size_t err_len)
{
	const unsigned char eod[] = GPT2BPE_EOD_TOKEN;
	const uint64_t text = b->offset && b->n ? (uint64_t)b->offset[b->n - 1] + b->len[b->n - 1] : 0;
	const uint64_t size = table_size(b->n, b->n_merges, text);
	int32_t eod_id = bytes_find(&b->map, b->len, b->offset, b->text, eod, sizeof(eod) - 1);
	unsigned char *t;
	int rc;

	if (size > UINT32_MAX) {
		snprintf(err, err_len, "%s: the vocabulary's %llu bytes are too many", what,
			 (unsigned long long)text);
		return -EINVAL;
	}
	t = xcalloc(1, (size_t)size);
	put_u32(t, b->n);
	put_u32(t + 4, b->n_merges);
	put_u32(t + 8, (uint32_t)(eod_id + 1));
	put_u32(t + 12, (uint32_t)text);
	memcpy(t + TABLE_HEAD, b->len, 2 * (size_t)b->n);
	memcpy(t + TABLE_HEAD + 2 * (size_t)b->n, b->merges, 4 * (size_t)b->n_merges);
	memcpy(t + TABLE_HEAD + 2 * (size_t)b->n + 4 * (size_t)b->n_merges, b->text, text);
	rc = init_table(g, t, (uint32_t)size, what, err, err_len);
	free(t);
	return rc;
}

static json_t *load_json(const char *path, char *err, size_t err_len)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		snprintf(err, err_len, "%s: not a JSON file: %s (line %d)", path, je.text, je.line);
	return j;
}

int gpt2bpe_load_pair(struct gpt2bpe *g, const char *vocab_path, const char *merges_path,
		      char *err, size_t err_len)
{
	struct build b = {0};
	json_t *vocab = load_json(vocab_path, err, err_len);
	char *text = NULL, where[1100];
	size_t n = 0, cap = 0, got;
	unsigned line = 0;
	FILE *f;
	int rc = -EINVAL;

	memset(g, 0, sizeof(*g));
	if (!vocab)
		return -EINVAL;
	if (build_vocab(&b, vocab, 0, vocab_path, err, err_len) ||
	    build_map(&b, vocab_path, err, err_len))
		goto out;
	f = fopen(merges_path, "rb");
	if (!f) {
		snprintf(err, err_len, "%s: cannot open: %s", merges_path, strerror(errno));
		goto out;
	}
	do {
		if (n + 65536 + 1 > cap) {
			cap = 2 * cap + 65536 + 1;
			text = realloc(text, cap);
			CHECK_PTR(text);
		}
		got = fread(text + n, 1, 65536, f);
		n += got;
	} while (got > 0);
	fclose(f);
	text[n] = '\0';
	for (char *p = text, *nl; p < text + n; p = nl + 1) {
		char *sp, *end;

		nl = memchr(p, '\n', (size_t)(text + n - p));
		if (!nl)
			nl = text + n;
		end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
		line++;
		if (end == p || (line == 1 && !strncmp(p, "#version", 8)))
			continue;
		snprintf(where, sizeof(where), "%s:%u", merges_path, line);
		sp = memchr(p, ' ', (size_t)(end - p));
		if (!sp || sp == p || sp + 1 == end || memchr(sp + 1, ' ', (size_t)(end - sp - 1))) {
			snprintf(err, err_len, "%s: not two tokens separated by one space", where);
			goto out;
		}
		if (build_merge(&b, p, (size_t)(sp - p), sp + 1, (size_t)(end - sp - 1), where, err,
				err_len))
			goto out;
	}
	rc = build_finish(g, &b, vocab_path, err, err_len);
out:
	free(text);
	json_decref(vocab);
	build_free(&b);
	return rc;
}

/* tokenizer.json: the rules a GPT-2 byte-level BPE satisfies. */
static int check_json_kind(json_t *root, const char *path, char *err, size_t err_len)
{
	json_t *model = json_object_get(root, "model"), *pre, *norm, *v;
	const char *type = json_string_value(json_object_get(model, "type"));
	const char *pre_type;

	if (!json_is_object(model) || !type) {
		snprintf(err, err_len, "%s: no model.type: not a Hugging Face tokenizer.json",
			 path);
		return -EINVAL;
	}
	if (strcmp(type, "BPE")) {
		snprintf(err, err_len, "%s: model.type \"%.32s\" is not supported: only "
			 "byte-level BPE (GPT-2's kind)", path, type);
		return -EINVAL;
	}
	pre = json_object_get(root, "pre_tokenizer");
	pre_type = json_string_value(json_object_get(pre, "type"));
	if (!pre_type || strcmp(pre_type, "ByteLevel")) {
		snprintf(err, err_len, "%s: pre_tokenizer \"%.32s\" is not supported: GPT-2's "
			 "byte-level BPE needs the ByteLevel pre-tokenizer", path,
			 pre_type ? pre_type : "none");
		return -EINVAL;
	}
	if (json_is_true(json_object_get(pre, "add_prefix_space"))) {
		snprintf(err, err_len, "%s: pre_tokenizer.add_prefix_space true is not supported "
			 "(GPT-2 adds no space)", path);
		return -EINVAL;
	}
	v = json_object_get(pre, "use_regex");
	if (v && !json_is_true(v)) {
		snprintf(err, err_len, "%s: pre_tokenizer.use_regex false is not supported (GPT-2 "
			 "splits with its pattern)", path);
		return -EINVAL;
	}
	norm = json_object_get(root, "normalizer");
	if (norm && !json_is_null(norm)) {
		snprintf(err, err_len, "%s: a normalizer is not supported (GPT-2 has none)", path);
		return -EINVAL;
	}
	if (json_is_true(json_object_get(model, "byte_fallback"))) {
		snprintf(err, err_len, "%s: model.byte_fallback true is not supported (GPT-2's "
			 "vocabulary has every byte)", path);
		return -EINVAL;
	}
	return 0;
}

int gpt2bpe_load_json(struct gpt2bpe *g, const char *path, char *err, size_t err_len)
{
	struct build b = {0};
	json_t *root = load_json(path, err, err_len), *model, *merges, *added, *v;
	char what[1100], where[1150];
	uint32_t extra = 0;
	size_t i;
	int rc = -EINVAL;

	memset(g, 0, sizeof(*g));
	if (!root)
		return -EINVAL;
	if (check_json_kind(root, path, err, err_len))
		goto out;
	model = json_object_get(root, "model");
	added = json_object_get(root, "added_tokens");
	/* added tokens not in model.vocab take ids of their own */
	json_array_foreach(added, i, v) {
		const char *content = json_string_value(json_object_get(v, "content"));

		if (!content || !json_is_integer(json_object_get(v, "id"))) {
			snprintf(err, err_len, "%s: added_tokens[%zu]: needs a content string and "
				 "an integer id", path, i);
			goto out;
		}
		extra += !json_object_get(json_object_get(model, "vocab"), content);
	}
	snprintf(what, sizeof(what), "%s: model.vocab", path);
	if (build_vocab(&b, json_object_get(model, "vocab"), extra, what, err, err_len))
		goto out;
	snprintf(what, sizeof(what), "%s: added_tokens", path);
	json_array_foreach(added, i, v) {
		const char *content = json_string_value(json_object_get(v, "content"));
		json_int_t id = json_integer_value(json_object_get(v, "id"));
		json_t *in_vocab = json_object_get(json_object_get(model, "vocab"), content);

		if (in_vocab && json_integer_value(in_vocab) != id) {
			snprintf(err, err_len, "%s: \"%.40s\" has id %lld, but %lld in model.vocab",
				 what, content, (long long)id, (long long)json_integer_value(in_vocab));
			goto out;
		}
		if (!in_vocab && build_set(&b, id, content, what, err, err_len))
			goto out;
	}
	if (build_map(&b, path, err, err_len))
		goto out;
	merges = json_object_get(model, "merges");
	if (!json_is_array(merges)) {
		snprintf(err, err_len, "%s: model.merges is not an array", path);
		goto out;
	}
	json_array_foreach(merges, i, v) {
		const char *s = json_string_value(v), *a, *c, *sp;

		snprintf(where, sizeof(where), "%s: model.merges[%zu]", path, i);
		if (s) {	/* "a b" */
			sp = strchr(s, ' ');
			if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
				snprintf(err, err_len, "%s: not two tokens separated by one space",
					 where);
				goto out;
			}
			if (build_merge(&b, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), where, err,
					err_len))
				goto out;
			continue;
		}
		a = json_string_value(json_array_get(v, 0));	/* ["a", "b"] */
		c = json_string_value(json_array_get(v, 1));
		if (!a || !c || json_array_size(v) != 2) {
			snprintf(err, err_len, "%s: not \"a b\" or [\"a\", \"b\"]", where);
			goto out;
		}
		if (build_merge(&b, a, strlen(a), c, strlen(c), where, err, err_len))
			goto out;
	}
	rc = build_finish(g, &b, path, err, err_len);
out:
	json_decref(root);
	build_free(&b);
	return rc;
}

/* ------------------------------------------------------------ encoding */

/* The ids of one piece (len <= GPT2BPE_PIECE_MAX bytes): GPT-2's bpe(). */
static size_t encode_piece(const struct gpt2bpe *g, const unsigned char *p, size_t len,
			   uint16_t *dst)
{
	const struct gpt2bpe_pairs *m = g->pairs;
	size_t n = len;

	for (size_t i = 0; i < len; i++)
		dst[i] = g->byte_id[p[i]];
	while (n > 1) {
		uint32_t best = UINT32_MAX, a = 0, b = 0;
		uint16_t merged = 0;
		size_t j = 0;

		for (size_t i = 0; i + 1 < n; i++) {
			size_t h = pair_slot(m, (uint32_t)dst[i] << 16 | dst[i + 1]);

			if (m->rank[h] && m->rank[h] < best) {
				best = m->rank[h];
				a = dst[i];
				b = dst[i + 1];
				merged = m->merged[h];
			}
		}
		if (best == UINT32_MAX)
			break;
		/* every occurrence of the pair, left to right */
		for (size_t i = 0; i < n;) {
			if (i + 1 < n && dst[i] == a && dst[i + 1] == b) {
				dst[j++] = merged;
				i += 2;
			} else {
				dst[j++] = dst[i++];
			}
		}
		n = j;
	}
	return n;
}

/* The last character boundary at or before max bytes of s (valid UTF-8). */
static size_t char_cut(const unsigned char *s, size_t max)
{
	while (max > 0 && (s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

/* Cut valid UTF-8 s (len bytes) into pieces and encode them; open: more valid text
 * may follow. Returns the bytes consumed (the rest is an unfinished piece). */
static size_t encode_valid(const struct gpt2bpe *g, pcre2_match_data *md,
			   const unsigned char *s, size_t len, bool open, uint16_t *dst,
			   size_t *n_out)
{
	const uint32_t opts = PCRE2_NO_UTF_CHECK | (open ? PCRE2_PARTIAL_HARD : 0);
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	size_t off = 0;

	while (off < len) {
		int rc = pcre2_match(g->code, s, len, off, opts, md, NULL);
		size_t end;

		if (rc == PCRE2_ERROR_PARTIAL) {
			/* the match may grow: keep it unless it is long enough to be cut */
			ENSURE(ov[0] == off);
			if (len - off < GPT2BPE_PIECE_MAX + 8)
				return off;
			end = off + GPT2BPE_PIECE_MAX;
		} else {
			/* every character matches one of the alternatives */
			if (rc < 0)
				FATAL("pcre2_match: error %d at byte %zu of a valid UTF-8 text", rc, off);
			ENSURE(ov[0] == off && ov[1] > off);
			end = ov[1];
		}
		if (end - off > GPT2BPE_PIECE_MAX)
			end = off + char_cut(s + off, GPT2BPE_PIECE_MAX);
		*n_out += encode_piece(g, s + off, end - off, dst + *n_out);
		off = end;
	}
	return off;
}

void gpt2bpe_encoder_init(struct gpt2bpe_encoder *e, const struct gpt2bpe *g)
{
	memset(e, 0, sizeof(*e));
	e->g = g;
}

size_t gpt2bpe_encode(struct gpt2bpe_encoder *e, const unsigned char *src, size_t n,
		      bool final, uint16_t *dst, uint64_t *bytes)
{
	const size_t len = e->fill + n;
	unsigned char *buf = xmalloc(len ? len : 1);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(e->g->code, NULL);
	size_t pos = 0, out = 0;

	CHECK_PTR(md);
	memcpy(buf, e->hold, e->fill);
	if (n)
		memcpy(buf + e->fill, src, n);
	while (pos < len) {
		size_t end = pos, c = 0, used;
		bool more = false, open;

		while (end < len && (c = utf8_len(buf + end, len - end, &more)) > 0)
			end += c;
		/* more text may extend the run: it reaches the end, or an unfinished
		 * character there */
		open = !final && (end == len || more);
		used = end > pos ? encode_valid(e->g, md, buf + pos, end - pos, open, dst, &out) : 0;
		pos += used;
		if (pos < end || end == len || (more && !final))
			break;
		/* not part of a valid character: a piece of its own */
		out += encode_piece(e->g, buf + pos, 1, dst + out);
		pos++;
	}
	pcre2_match_data_free(md);
	ENSURE(len - pos <= GPT2BPE_HOLD_MAX);
	memcpy(e->hold, buf + pos, len - pos);
	*bytes = pos;	/* the held bytes of earlier calls included */
	e->fill = len - pos;
	free(buf);
	return out;
}
