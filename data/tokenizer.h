/*
 * tokenizer: which tokenizer made a token stream, and the byte-level one.
 *
 * Two kinds exist. The byte tokenizer ("bytes-v1", vocabulary 256): a token is a
 * byte value, so bits per token equal bits per byte. The byte-pair tokenizer
 * (data/bpe.h): ids 0..255 are the bytes and id 256 + i is the concatenation of the
 * two ids of merge i; its id string is "bpe-v1-<vocab>-<16 hex digits>", the hex
 * being a 64-bit FNV-1a hash of the merge table, so two BPE tokenizers with equal
 * ids have (but for a hash collision) the same merges.
 *
 * The id and the vocabulary size are recorded in every token shard header
 * (data/shard.h; a BPE shard also holds its merge table) and in checkpoints, so
 * that a corpus and a checkpoint made with different tokenizers are refused with
 * one clear line rather than trained on: tokenizer_check_same() makes that
 * comparison.
 *
 * Does not: learn or apply merges (data/bpe.h), add BOS/EOS or any special token,
 * or touch files.
 */
#ifndef RN_TOKENIZER_H
#define RN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the id field in shard and checkpoint headers, NUL padded. */
#define TOKENIZER_ID_LEN 32
#define TOKENIZER_BYTES_ID "bytes-v1"
#define TOKENIZER_BYTES_VOCAB 256
#define TOKENIZER_MAX_VOCAB 65536	/* ids are stored as uint16 */
#define TOKENIZER_MAX_TOKEN_BYTES 64	/* a BPE id never spans more than a piece */

struct tokenizer {
	char id[TOKENIZER_ID_LEN];	/* NUL terminated and NUL padded */
	uint32_t vocab;			/* token ids are in [0, vocab) */
	/* BPE only, else 0 and NULL: merge i makes id 256 + i from the ids
	 * merges[2i], merges[2i+1]; vocab = 256 + n_merges. Not owned (a shard's
	 * mapping or a struct bpe holds it). Not needed to compare tokenizers. */
	uint32_t n_merges;
	const uint16_t *merges;		/* (n_merges, 2) */
	int32_t eod_id; /* end-of-document id, -1: none */
};

/* The byte tokenizer: id "bytes-v1", vocab 256. */
void tokenizer_init_bytes(struct tokenizer *tok);

/*
 * The BPE tokenizer of a merge table (not copied: it must outlive tok). Returns 0,
 * or -EINVAL with "<what>: <rule>" in err when n_merges is 0 or too large for
 * uint16 ids, or a merge names an id that is not yet defined (merge i may only use
 * ids below 256 + i), or an id would decode to more than TOKENIZER_MAX_TOKEN_BYTES.
 */
int tokenizer_init_bpe(struct tokenizer *tok, const uint16_t *merges /* (n_merges, 2) */,
		       uint32_t n_merges, const char *what, char *err, size_t err_len);

/* True for a BPE id ("bpe-v1-..."), whether or not its merges are at hand. */
bool tokenizer_is_bpe(const struct tokenizer *tok);

/*
 * Fill tok from an id and vocabulary read from a file (a shard or checkpoint
 * header). Returns 0, or -EINVAL with "<what>: <rule>" in err when the id is not
 * a NUL-terminated string of 1..31 characters or the vocabulary is 0. An id this
 * build does not know is accepted here: tokenizer_check_same() is what refuses
 * a mismatch against the tokenizer a run uses.
 */
int tokenizer_from_header(struct tokenizer *tok, const char id[TOKENIZER_ID_LEN],
			  uint32_t vocab, const char *what, char *err, size_t err_len);

/* True when both the id and the vocabulary are equal. */
bool tokenizer_equal(const struct tokenizer *a, const struct tokenizer *b);

/*
 * Compare the tokenizer of `got_what` (a file) against the one of `want_what`.
 * Returns 0 when equal, else -EINVAL with one line in err:
 *   <got_what>: tokenizer "x" (vocab 512) does not match "bytes-v1" (vocab 256) of <want_what>
 */
int tokenizer_check_same(const struct tokenizer *got, const char *got_what,
			 const struct tokenizer *want, const char *want_what, char *err,
			 size_t err_len);

/*
 * Byte tokenizer only (BPE text goes through data/bpe.h).
 * Encode n bytes of text: dst[i] = src[i]. Returns the number of tokens written
 * (n: one token per byte). dst holds n tokens.
 */
size_t tokenizer_encode(uint16_t *dst /* (n) */, const struct tokenizer *tok,
			const unsigned char *src /* (n) */, size_t n);

/*
 * Decode n tokens into n bytes (for generation). Returns 0, or -ERANGE when a
 * token is outside [0, vocab) (dst is then filled up to that token only).
 */
int tokenizer_decode(unsigned char *dst /* (n) */, const struct tokenizer *tok,
		     const int32_t *tokens /* (n) */, size_t n);

#endif
