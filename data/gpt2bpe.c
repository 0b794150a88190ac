#include "data/gpt2bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "data/gpt2bpe_internal.h"

/* GPT-2's pre-tokenizer pattern (encoder.py), verbatim. */
static const char gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define TABLE_HEAD 16u

/* ------------------------------------------------------------ hash maps */

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

/* The loaders' last step (data/gpt2bpe_load.c): the table layout stays in this file. */
int gpt2bpe_init_vocab(struct gpt2bpe *g, uint32_t n, const uint16_t *len,
		       const unsigned char *text, uint64_t text_bytes, const uint16_t *merges,
		       uint32_t n_merges, int32_t eod_id, const char *what, char *err,
		       size_t err_len)
{
	const uint64_t size = table_size(n, n_merges, text_bytes);
	unsigned char *t;
	int rc;

	if (size > UINT32_MAX) {
		snprintf(err, err_len, "%s: the vocabulary's %llu bytes are too many", what,
			 (unsigned long long)text_bytes);
		return -EINVAL;
	}
	t = xcalloc(1, (size_t)size);
	put_u32(t, n);
	put_u32(t + 4, n_merges);
	put_u32(t + 8, (uint32_t)(eod_id + 1));
	put_u32(t + 12, (uint32_t)text_bytes);
	memcpy(t + TABLE_HEAD, len, 2 * (size_t)n);
	memcpy(t + TABLE_HEAD + 2 * (size_t)n, merges, 4 * (size_t)n_merges);
	memcpy(t + TABLE_HEAD + 2 * (size_t)n + 4 * (size_t)n_merges, text, text_bytes);
	rc = init_table(g, t, (uint32_t)size, what, err, err_len);
	free(t);
	return rc;
}

const unsigned char *gpt2bpe_token_bytes(const struct gpt2bpe *g, uint32_t id, size_t *len)
{
	ENSURE(id < g->tok.vocab);
	*len = g->len[id];
	return g->text + g->offset[id];
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
