/*
 * gpt2bpe_internal: what data/gpt2bpe.c (the table, encoding) and
 * data/gpt2bpe_load.c (reading vocab.json + merges.txt or tokenizer.json) share.
 * Included by those two files only: nothing here is an interface. It is a header
 * of its own rather than part of gpt2bpe.h because these are implementation
 * details (a hash map's probing, a UTF-8 rule, how a read vocabulary becomes a
 * table) that callers of the tokenizer must not come to depend on.
 *
 * The helpers are static inline, as they were static in the one file before the
 * split: utf8_len is on the encoder's per-byte path and bytes_find on the loop
 * that checks every token of a table, and inlining keeps them as fast as they were.
 */
#ifndef RN_GPT2BPE_INTERNAL_H
#define RN_GPT2BPE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/gpt2bpe.h"

/* Length of the valid UTF-8 character at s (n >= 1 bytes), as Python's strict
 * decoder accepts it; 0 if none. *more: the bytes are the start of a valid
 * character that continues past the n bytes. */
static inline size_t utf8_len(const unsigned char *s, size_t n, bool *more)
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

/* ------------------------------------------------------------ hash maps */

static inline uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h)
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

static inline size_t pow2_at_least(size_t n)
{
	size_t c = 16;

	while (c < n)
		c *= 2;
	return c;
}

/* The id with these bytes, or -1. */
static inline int32_t bytes_find(const struct bytes_map *m, const uint16_t *len,
				 const uint32_t *off, const unsigned char *text,
				 const unsigned char *p, size_t n)
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

/* ------------------------------------------------------------ the table */

/*
 * Serialize a vocabulary read by a loader into a table (the layout at the top of
 * gpt2bpe.h) and load it into g as gpt2bpe_init does, checking every rule of
 * gpt2bpe_table_check. n ids, id i's len[i] bytes in text (text_bytes in all, the
 * ids' bytes in id order), n_merges merges as id pairs in rank order, eod_id -1
 * for none. The table layout stays in gpt2bpe.c: the loaders never see it.
 * 0, or -EINVAL with "<what>: <rule>" in err.
 */
int gpt2bpe_init_vocab(struct gpt2bpe *g, uint32_t n, const uint16_t *len,
		       const unsigned char *text, uint64_t text_bytes, const uint16_t *merges,
		       uint32_t n_merges, int32_t eod_id, const char *what, char *err,
		       size_t err_len);

#endif
