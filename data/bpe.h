/*
 * bpe: the byte-pair tokenizer: learning its merges from text, encoding text into
 * ids and decoding ids into bytes. data/tokenizer.h names it and checks identity.
 *
 * Pieces. Text is first cut into pieces and merges never cross a piece boundary
 * (as GPT-2's tokenizer does, in a simpler, ASCII-centred form). A byte is a
 * letter (A-Z, a-z, or >= 0x80, so UTF-8 sequences stay together), a digit, a
 * space (' ', \t, \n, \v, \f, \r) or other (punctuation and control bytes). A
 * piece is an optional ' ' followed by 1 to 63 bytes of one class other than
 * space, or else one space byte. In Python, the pieces of text t are exactly
 *   re.findall(rb" ?[A-Za-z\x80-\xff]{1,63}| ?[0-9]{1,63}"
 *              rb"| ?[^\sA-Za-z0-9\x80-\xff]{1,63}|\s", t)
 * (tests/ref/bpe_reference.py is that reference). So a piece is at most
 * BPE_PIECE_MAX bytes: that bounds both the cost of encoding one and a token's
 * length, and every byte sequence is covered (decode(encode(t)) == t).
 *
 * Learning (classic BPE over piece counts): start from the distinct pieces of the
 * training text as byte sequences, weighted by how often they occur; repeatedly
 * merge the adjacent pair with the highest count (ties: the smaller first id, then
 * the smaller second id) into a new id, left to right within each piece, until the
 * vocabulary is full. Cost: merges x (symbols in the distinct pieces).
 *
 * Encoding a piece: repeatedly merge the adjacent pair whose merge came first
 * (ties: the leftmost), until no adjacent pair has a merge.
 *
 * Does not: touch files (retnet-prep stores the merges in the shards), add special
 * tokens, or normalise text.
 */
#ifndef RN_BPE_H
#define RN_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

#define BPE_PIECE_MAX TOKENIZER_MAX_TOKEN_BYTES	/* bytes: ' ' + 63 of one class */
#define BPE_SPLIT_BUF ((size_t)1 << 16)	/* bytes a splitter buffers */

/*
 * Length of the piece that starts at s, of the n >= 1 bytes there. 0 when the
 * piece reaches the end of the n bytes and more text could extend it (unless
 * at_end: no more text follows).
 */
size_t bpe_piece_len(const unsigned char *s, size_t n, bool at_end);

/* Cuts a text that arrives in parts into whole pieces (calls fn once per piece). */
typedef void (*bpe_piece_fn)(void *ctx, const unsigned char *piece, size_t len);
struct bpe_splitter {
	unsigned char buf[BPE_SPLIT_BUF];
	size_t fill;		/* bytes held: an unfinished piece, < BPE_PIECE_MAX */
};

/*
 * Feed n more bytes; final = these are the last ones (the rest is then flushed).
 * Returns the number of text bytes whose pieces went to fn in this call.
 */
uint64_t bpe_split(struct bpe_splitter *sp, const unsigned char *src, size_t n, bool final,
		   bpe_piece_fn fn, void *ctx);

/*
 * Learn a vocabulary of `vocab` ids (257 .. 65536) from the pieces counted with
 * bpe_learner_feed. On success *merges is a malloc'd (vocab - 256, 2) table.
 * -EINVAL with "<what>: <rule>" in err when the text has too few repeated pairs
 * for that many merges.
 */
struct bpe_learner;
struct bpe_learner *bpe_learner_new(void);
void bpe_learner_feed(struct bpe_learner *l, const unsigned char *src, size_t n, bool final);
int bpe_learner_merges(struct bpe_learner *l, uint32_t vocab, uint16_t **merges,
		       const char *what, char *err, size_t err_len);
void bpe_learner_free(struct bpe_learner *l);

/* Encoder and decoder of one merge table (copied in). */
struct bpe {
	struct tokenizer tok;		/* tok.merges points at merges */
	uint16_t *merges;		/* (n_merges, 2) */
	uint32_t *rank;			/* open-addressed: pair key -> merge index + 1 */
	uint32_t *rank_key;		/* (rank_cap) pair keys (a << 16 | b) */
	size_t rank_cap;		/* power of two */
	uint8_t *len;			/* (vocab) bytes of each id, 1..BPE_PIECE_MAX */
	uint32_t *offset;		/* (vocab) start of each id's bytes in text */
	unsigned char *text;		/* every id's bytes, concatenated */
};

/* A tokenizer with merges, as tokenizer_init_bpe or a shard made it (checked). */
void bpe_init(struct bpe *b, const struct tokenizer *tok);
void bpe_free(struct bpe *b);

/* Ids of one piece (len <= BPE_PIECE_MAX bytes); returns how many (<= len). */
size_t bpe_encode_piece(const struct bpe *b, const unsigned char *piece, size_t len,
			uint16_t *dst /* (len) */);

/* Encodes a text that arrives in parts; the tokens of whole pieces go to dst. */
struct bpe_encoder {
	const struct bpe *b;
	struct bpe_splitter split;
	uint16_t *dst;			/* the current call's output */
	size_t n_out;
};

void bpe_encoder_init(struct bpe_encoder *e, const struct bpe *b);
/*
 * Encode n more bytes (final: the last ones). dst must hold n + BPE_PIECE_MAX ids.
 * Returns the number of ids written; *bytes = the text bytes they encode (bytes
 * held back as an unfinished piece are encoded by a later call).
 */
size_t bpe_encode(struct bpe_encoder *e, const unsigned char *src, size_t n, bool final,
		  uint16_t *dst, uint64_t *bytes);

/* The bytes of id (< vocab): *len of them at the returned pointer. */
const unsigned char *bpe_token_bytes(const struct bpe *b, uint32_t id, size_t *len);

#endif
