/*
 * gpt2bpe: GPT-2's byte-level BPE tokenizer, read from the files users already
 * have, and applied exactly as GPT-2's encoder.py (Megatron-LM's
 * GPT2BPETokenizer) applies it: encoding bytes into ids, decoding ids into bytes,
 * and the table that carries it in shards and checkpoints. Reading it from a
 * vocab.json + merges.txt pair or a Hugging Face tokenizer.json of that kind is
 * data/gpt2bpe_load.h.
 *
 * Encoding. The text is cut into pieces, BPE runs inside each piece, and the ids
 * of the pieces are concatenated:
 *  - valid UTF-8 is cut by GPT-2's pattern (PCRE2, UTF mode)
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    matched from the start of each maximal run of valid UTF-8, one match after
 *    the other;
 *  - a byte that is not part of a valid UTF-8 character (as Python's strict
 *    decoder judges: no overlongs, no surrogates, nothing above U+10FFFF) is a
 *    piece of its own, so any byte string is encoded losslessly and never
 *    rejected; GPT-2 itself would have to decode such text first;
 *  - a match longer than GPT2BPE_PIECE_MAX bytes is cut at the last character
 *    boundary within that many bytes and matching starts again there (GPT-2 has
 *    no limit; this bounds the quadratic merge loop and the bytes a stream holds
 *    back; no real word is that long, and tests/ref/gpt2bpe_reference.py does the
 *    same).
 * A piece's bytes become GPT-2's byte-to-unicode symbols (one token each), then
 * repeatedly the adjacent pair whose merge has the lowest rank is merged, every
 * occurrence of it left to right, until no pair has a merge: GPT-2's bpe().
 * Special tokens ("<|endoftext|>") in the text are not recognised: they are
 * ordinary characters, as in encoder.py; the end-of-document id is added by the
 * caller (retnet-prep --append-eod).
 *
 * The table (what shards and checkpoints carry; little-endian, a multiple of 4
 * bytes, zero padded):
 *   u32 vocab n | u32 merges m | u32 eod id + 1 (0: none) | u32 token bytes B |
 *   u16 len[n] (bytes of each id) | u16 merges[m][2] (id pairs, in rank order) |
 *   u8 bytes[B] (every id's bytes, concatenated)
 * The tokenizer id is "gpt2bpe-<n>-<16 hex digits>", the hex a 64-bit FNV-1a of
 * the table: equal ids mean (but for a collision) equal vocabularies, merges and
 * end-of-document ids.
 *
 * Does not: learn merges, recognise special tokens in text, normalise text, or
 * write files.
 */
#ifndef RN_GPT2BPE_H
#define RN_GPT2BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

#define GPT2BPE_ID_PREFIX "gpt2bpe-"
#define GPT2BPE_EOD_TOKEN "<|endoftext|>"
#define GPT2BPE_PIECE_MAX 1024		/* bytes of one piece (see above) */
/* Bytes a stream may hold back between calls: an unfinished piece (< PIECE_MAX +
 * 8 bytes) and an unfinished UTF-8 character (< 4). */
#define GPT2BPE_HOLD_MAX (GPT2BPE_PIECE_MAX + 16)

struct gpt2bpe_pairs;

/* A loaded tokenizer: the table, and what encoding and decoding need from it. */
struct gpt2bpe {
	struct tokenizer tok;		/* tok.table points at table */
	unsigned char *table;		/* (table_bytes), owned */
	uint32_t table_bytes;
	uint32_t n_merges;
	const uint16_t *len;		/* (vocab) bytes of each id, into table */
	const uint16_t *merges;		/* (n_merges, 2), into table */
	const unsigned char *text;	/* every id's bytes, into table */
	uint32_t *offset;		/* (vocab) start of each id's bytes in text */
	uint16_t byte_id[256];		/* the id of each single byte */
	struct gpt2bpe_pairs *pairs;	/* (a, b) -> rank, merged id */
	void *code;			/* pcre2_code_8 *, GPT-2's pattern */
};

/*
 * The tokenizer of a table read from a file (a shard, a checkpoint): its id,
 * vocabulary and end-of-document id into tok (tok->table points at table, not
 * copied). Checks the table's layout, that merges use ids below the vocabulary
 * and make a token of it, and that every byte has a token. 0, or -EINVAL with
 * "<what>: <rule>".
 */
int gpt2bpe_table_check(struct tokenizer *tok, const unsigned char *table, uint32_t bytes,
			const char *what, char *err, size_t err_len);

/* A loader for tok (a table checked by gpt2bpe_table_check; copied). 0 or -EINVAL. */
int gpt2bpe_init(struct gpt2bpe *g, const struct tokenizer *tok, const char *what, char *err,
		 size_t err_len);
void gpt2bpe_free(struct gpt2bpe *g);

/* True for a GPT-2 id ("gpt2bpe-..."), whether or not its table is at hand. */
bool gpt2bpe_is(const struct tokenizer *tok);

/* The bytes of id (< vocab): *len of them at the returned pointer. */
const unsigned char *gpt2bpe_token_bytes(const struct gpt2bpe *g, uint32_t id, size_t *len);

/* Encodes a text that arrives in parts (see the top of this file). */
struct gpt2bpe_encoder {
	const struct gpt2bpe *g;
	unsigned char hold[GPT2BPE_HOLD_MAX];	/* text not yet cut into pieces */
	size_t fill;
};

void gpt2bpe_encoder_init(struct gpt2bpe_encoder *e, const struct gpt2bpe *g);
/*
 * Encode n more bytes (final: the last ones; src may be NULL with n 0). dst holds
 * n + GPT2BPE_HOLD_MAX ids. Returns the ids written; *bytes = the text bytes they
 * encode (an unfinished piece is held back for a later call).
 */
size_t gpt2bpe_encode(struct gpt2bpe_encoder *e, const unsigned char *src, size_t n,
		      bool final, uint16_t *dst, uint64_t *bytes);

#endif
