#include "data/bpe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"

/* ------------------------------------------------------------------ pieces */

enum byte_class { CLASS_LETTER, CLASS_DIGIT, CLASS_SPACE, CLASS_OTHER };

static enum byte_class byte_class(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80)
		return CLASS_LETTER;
	if (c >= '0' && c <= '9')
		return CLASS_DIGIT;
	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return CLASS_SPACE;
	return CLASS_OTHER;
}

size_t bpe_piece_len(const unsigned char *s, size_t n, bool at_end)
{
	size_t start = 0, j;
	enum byte_class cls = byte_class(s[0]);

	if (s[0] == ' ') {
		/* A space joins the run after it; whether there is one decides. */
		if (n == 1)
			return at_end ? 1 : 0;
		if (byte_class(s[1]) == CLASS_SPACE)
			return 1;
		start = 1;
		cls = byte_class(s[1]);
	} else if (cls == CLASS_SPACE) {
		return 1;
	}
	for (j = start; j < n && j - start < BPE_PIECE_MAX - 1 && byte_class(s[j]) == cls; j++)
		;
	if (j == n && j - start < BPE_PIECE_MAX - 1 && !at_end)
		return 0;
	return j;
}

uint64_t bpe_split(struct bpe_splitter *sp, const unsigned char *src, size_t n, bool final,
		   bpe_piece_fn fn, void *ctx)
{
	uint64_t done = 0;

	do {
		size_t k = sizeof(sp->buf) - sp->fill, pos = 0;
		bool last;

		if (k > n)
			k = n;
		if (k)
			memcpy(sp->buf + sp->fill, src, k);
		sp->fill += k;
		src += k;
		n -= k;
		last = final && n == 0;
		while (pos < sp->fill) {
			size_t len = bpe_piece_len(sp->buf + pos, sp->fill - pos, last);

			if (len == 0)
				break;
			fn(ctx, sp->buf + pos, len);
			pos += len;
		}
		memmove(sp->buf, sp->buf + pos, sp->fill - pos);
		sp->fill -= pos;
		done += pos;
	} while (n > 0);
	return done;
}

/* ------------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_u32(uint32_t k)
{
	uint64_t h = (uint64_t)k * 0x9e3779b97f4a7c15ull;

	return h ^ (h >> 29);
}

/* ------------------------------------------------------------------ learning */

/* A distinct piece: its symbols (ids) in sym[off, off + len), and its count. */
struct word {
	size_t off;
	uint32_t len;
	uint64_t count;
};

/* Pair counts, open-addressed on key = a << 16 | b. */
struct pair_map {
	uint32_t *key;
	int64_t *count;
	size_t cap, used;
};

struct bpe_learner {
	struct bpe_splitter split;
	/* distinct pieces: bytes in piece_text, found through slot (index + 1) */
	unsigned char *piece_text;
	size_t text_len, text_cap;
	struct word *words;
	size_t n_words, words_cap;
	uint32_t *slot;
	size_t slot_cap;
};

static size_t pair_find(const struct pair_map *m, uint32_t key)
{
	size_t i = (size_t)hash_u32(key) & (m->cap - 1);

	while (m->count[i] != INT64_MIN && m->key[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void pair_alloc(struct pair_map *m, size_t cap)
{
	m->cap = cap;
	m->used = 0;
	m->key = xcalloc(cap, sizeof(*m->key));
	m->count = xmalloc(cap * sizeof(*m->count));
	for (size_t i = 0; i < cap; i++)
		m->count[i] = INT64_MIN;	/* empty */
}

static void pair_add(struct pair_map *m, uint32_t key, int64_t delta)
{
	size_t i;

	if (2 * (m->used + 1) > m->cap) {
		struct pair_map old = *m;

		pair_alloc(m, 2 * old.cap);
		for (size_t j = 0; j < old.cap; j++)
			if (old.count[j] != INT64_MIN) {
				size_t k = pair_find(m, old.key[j]);

				m->key[k] = old.key[j];
				m->count[k] = old.count[j];
				m->used++;
			}
		free(old.key);
		free(old.count);
	}
	i = pair_find(m, key);
	if (m->count[i] == INT64_MIN) {
		m->key[i] = key;
		m->count[i] = 0;
		m->used++;
	}
	m->count[i] += delta;
}

static uint32_t pair_key(uint16_t a, uint16_t b)
{
	return (uint32_t)a << 16 | b;
}

static void learner_grow_slots(struct bpe_learner *l)
{
	size_t cap = l->slot_cap ? 2 * l->slot_cap : 1 << 12;
	uint32_t *slot = xcalloc(cap, sizeof(*slot));

	for (size_t w = 0; w < l->n_words; w++) {
		const struct word *wd = &l->words[w];
		size_t i = (size_t)hash_bytes(l->piece_text + wd->off, wd->len) & (cap - 1);

		while (slot[i])
			i = (i + 1) & (cap - 1);
		slot[i] = (uint32_t)w + 1;
	}
	free(l->slot);
	l->slot = slot;
	l->slot_cap = cap;
}

static void learner_count_piece(void *ctx, const unsigned char *p, size_t len)
{
	struct bpe_learner *l = ctx;
	size_t i;

	if (2 * (l->n_words + 1) > l->slot_cap)
		learner_grow_slots(l);
	i = (size_t)hash_bytes(p, len) & (l->slot_cap - 1);
	for (; l->slot[i]; i = (i + 1) & (l->slot_cap - 1)) {
		struct word *w = &l->words[l->slot[i] - 1];

		if (w->len == len && memcmp(l->piece_text + w->off, p, len) == 0) {
			w->count++;
			return;
		}
	}
	ENSURE(l->n_words < UINT32_MAX - 1);
	if (l->n_words == l->words_cap) {
		l->words_cap = l->words_cap ? 2 * l->words_cap : 1024;
		CHECK_PTR(l->words = realloc(l->words, l->words_cap * sizeof(*l->words)));
	}
	if (l->text_len + len > l->text_cap) {
		l->text_cap = 2 * (l->text_cap + len);
		CHECK_PTR(l->piece_text = realloc(l->piece_text, l->text_cap));
	}
	memcpy(l->piece_text + l->text_len, p, len);
	l->words[l->n_words] = (struct word){ .off = l->text_len, .len = (uint32_t)len, .count = 1 };
	l->text_len += len;
	l->slot[i] = (uint32_t)++l->n_words;
}

struct bpe_learner *bpe_learner_new(void)
{
	return xcalloc(1, sizeof(struct bpe_learner));
}

void bpe_learner_feed(struct bpe_learner *l, const unsigned char *src, size_t n, bool final)
{
	bpe_split(&l->split, src, n, final, learner_count_piece, l);
}

void bpe_learner_free(struct bpe_learner *l)
{
	if (!l)
		return;
	free(l->piece_text);
	free(l->words);
	free(l->slot);
	free(l);
}

/* Merge every (a, b) of one word, left to right, keeping the pair counts exact. */
static void merge_word(struct pair_map *pairs, uint16_t *s, uint32_t *len, int64_t f,
		       uint16_t a, uint16_t b, uint16_t id)
{
	uint32_t n = *len;

	for (uint32_t j = 0; j + 1 < n; j++) {
		if (s[j] != a || s[j + 1] != b)
			continue;
		if (j > 0) {
			pair_add(pairs, pair_key(s[j - 1], a), -f);
			pair_add(pairs, pair_key(s[j - 1], id), f);
		}
		if (j + 2 < n) {
			pair_add(pairs, pair_key(b, s[j + 2]), -f);
			pair_add(pairs, pair_key(id, s[j + 2]), f);
		}
		pair_add(pairs, pair_key(a, b), -f);
		s[j] = id;
		memmove(s + j + 1, s + j + 2, (n - j - 2) * sizeof(*s));
		n--;
	}
	*len = n;
}

int bpe_learner_merges(struct bpe_learner *l, uint32_t vocab, uint16_t **merges_out,
		       const char *what, char *err, size_t err_len)
{
	uint32_t n_merges = vocab - TOKENIZER_BYTES_VOCAB;
	uint16_t *merges, *sym;
	struct pair_map pairs;
	int rc = 0;

	ENSURE(vocab > TOKENIZER_BYTES_VOCAB && vocab <= TOKENIZER_MAX_VOCAB);
	bpe_learner_feed(l, NULL, 0, true);
	merges = xmalloc(2 * (size_t)n_merges * sizeof(*merges));
	sym = xmalloc((l->text_len ? l->text_len : 1) * sizeof(*sym));
	pair_alloc(&pairs, 1 << 12);
	for (size_t w = 0; w < l->n_words; w++) {
		const struct word *wd = &l->words[w];

		for (uint32_t j = 0; j < wd->len; j++)
			sym[wd->off + j] = l->piece_text[wd->off + j];
		for (uint32_t j = 0; j + 1 < wd->len; j++)
			pair_add(&pairs, pair_key(sym[wd->off + j], sym[wd->off + j + 1]),
				 (int64_t)wd->count);
	}
	for (uint32_t m = 0; m < n_merges; m++) {
		int64_t best = 1;
		uint32_t best_key = 0;

		/* Highest count, ties to the smallest key: (a, b) in lexical order. */
		for (size_t i = 0; i < pairs.cap; i++)
			if (pairs.count[i] > best ||
			    (pairs.count[i] == best && best > 1 && pairs.key[i] < best_key)) {
				best = pairs.count[i];
				best_key = pairs.key[i];
			}
		if (best < 2) {
			snprintf(err, err_len, "%s: the text has only %u pairs that occur twice or "
				 "more, too few for a vocabulary of %u (at most %u)", what, m,
				 vocab, TOKENIZER_BYTES_VOCAB + m);
			rc = -EINVAL;
			break;
		}
		merges[2 * m] = (uint16_t)(best_key >> 16);
		merges[2 * m + 1] = (uint16_t)(best_key & 0xffffu);
		for (size_t w = 0; w < l->n_words; w++)
			merge_word(&pairs, sym + l->words[w].off, &l->words[w].len,
				   (int64_t)l->words[w].count, merges[2 * m], merges[2 * m + 1],
				   (uint16_t)(TOKENIZER_BYTES_VOCAB + m));
	}
	free(pairs.key);
	free(pairs.count);
	free(sym);
	if (rc) {
		free(merges);
		return rc;
	}
	*merges_out = merges;
	return 0;
}

/* ------------------------------------------------------------------ encoding */

static size_t rank_find(const struct bpe *b, uint32_t key)
{
	size_t i = (size_t)hash_u32(key) & (b->rank_cap - 1);

	while (b->rank[i] && b->rank_key[i] != key)
		i = (i + 1) & (b->rank_cap - 1);
	return i;
}

void bpe_init(struct bpe *b, const struct tokenizer *tok)
{
	uint32_t n = tok->n_merges, vocab = TOKENIZER_BYTES_VOCAB + n;
	size_t total = TOKENIZER_BYTES_VOCAB;

	ENSURE(n > 0 && tok->merges && tok->vocab == vocab);
	memset(b, 0, sizeof(*b));
	b->len = xmalloc(vocab);
	for (uint32_t i = 0; i < TOKENIZER_BYTES_VOCAB; i++)
		b->len[i] = 1;
	for (uint32_t i = 0; i < n; i++) {
		size_t l = (size_t)b->len[tok->merges[2 * i]] + b->len[tok->merges[2 * i + 1]];

		ENSURE(l <= BPE_PIECE_MAX);	/* tokenizer_init_bpe checked it */
		b->len[TOKENIZER_BYTES_VOCAB + i] = (uint8_t)l;
		total += l;
	}
	b->merges = xmalloc(2 * (size_t)n * sizeof(*b->merges));
	memcpy(b->merges, tok->merges, 2 * (size_t)n * sizeof(*b->merges));
	b->tok = *tok;
	b->tok.merges = b->merges;

	b->offset = xmalloc(vocab * sizeof(*b->offset));
	b->text = xmalloc(total);
	for (uint32_t i = 0, off = 0; i < vocab; i++) {
		b->offset[i] = off;
		if (i < TOKENIZER_BYTES_VOCAB) {
			b->text[off] = (unsigned char)i;
		} else {
			uint16_t x = b->merges[2 * (i - TOKENIZER_BYTES_VOCAB)];
			uint16_t y = b->merges[2 * (i - TOKENIZER_BYTES_VOCAB) + 1];

			memcpy(b->text + off, b->text + b->offset[x], b->len[x]);
			memcpy(b->text + off + b->len[x], b->text + b->offset[y], b->len[y]);
		}
		off += b->len[i];
	}

	for (b->rank_cap = 16; b->rank_cap < 2 * (size_t)n; b->rank_cap *= 2)
		;
	b->rank = xcalloc(b->rank_cap, sizeof(*b->rank));
	b->rank_key = xcalloc(b->rank_cap, sizeof(*b->rank_key));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t key = pair_key(b->merges[2 * i], b->merges[2 * i + 1]);
		size_t s = rank_find(b, key);

		/* A repeated pair: the first merge is the one encoding applies. */
		if (!b->rank[s]) {
			b->rank_key[s] = key;
			b->rank[s] = i + 1;
		}
	}
}

void bpe_free(struct bpe *b)
{
	free(b->merges);
	free(b->rank);
	free(b->rank_key);
	free(b->len);
	free(b->offset);
	free(b->text);
	memset(b, 0, sizeof(*b));
}

size_t bpe_encode_piece(const struct bpe *b, const unsigned char *piece, size_t len,
			uint16_t *dst)
{
	ENSURE(len <= BPE_PIECE_MAX);
	for (size_t i = 0; i < len; i++)
		dst[i] = piece[i];
	while (len > 1) {
		uint32_t best = UINT32_MAX;
		size_t at = 0;

		for (size_t i = 0; i + 1 < len; i++) {
			uint32_t r = b->rank[rank_find(b, pair_key(dst[i], dst[i + 1]))];

			if (r && r - 1 < best) {
				best = r - 1;
				at = i;
			}
		}
		if (best == UINT32_MAX)
			break;
		dst[at] = (uint16_t)(TOKENIZER_BYTES_VOCAB + best);
		memmove(dst + at + 1, dst + at + 2, (len - at - 2) * sizeof(*dst));
		len--;
	}
	return len;
}

static void encoder_piece(void *ctx, const unsigned char *piece, size_t len)
{
	struct bpe_encoder *e = ctx;

	e->n_out += bpe_encode_piece(e->b, piece, len, e->dst + e->n_out);
}

void bpe_encoder_init(struct bpe_encoder *e, const struct bpe *b)
{
	memset(e, 0, sizeof(*e));
	e->b = b;
}

size_t bpe_encode(struct bpe_encoder *e, const unsigned char *src, size_t n, bool final,
		  uint16_t *dst, uint64_t *bytes)
{
	e->dst = dst;
	e->n_out = 0;
	*bytes = bpe_split(&e->split, src, n, final, encoder_piece, e);
	e->dst = NULL;
	return e->n_out;
}

const unsigned char *bpe_token_bytes(const struct bpe *b, uint32_t id, size_t *len)
{
	ENSURE(id < b->tok.vocab);
	*len = b->len[id];
	return b->text + b->offset[id];
}
