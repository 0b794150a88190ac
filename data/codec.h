/*
 * codec: a tokenizer as programs apply it to text, whichever kind it is (bytes,
 * the project's BPE or GPT-2's): encoding text that arrives in parts, one stream per piece of text (a part
 * of a corpus, a prompt), and the bytes of every id (decoding, and the bytes
 * behind scored tokens for bits per byte).
 *
 * A stream encodes its text exactly as retnet-prep encodes one part of a corpus:
 * the inputs' bytes concatenated, a BPE piece may run from one file into the next,
 * the last piece is flushed at the end. So a text encoded here and the same text
 * made a shard by retnet-prep give the same ids.
 *
 * Does not: learn merges (data/bpe.h), read shards (data/shard.h) or checkpoints,
 * or decide which tokenizer a program uses.
 */
#ifndef RN_CODEC_H
#define RN_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/bpe.h"
#include "data/gpt2bpe.h"
#include "data/tokenizer.h"

/* Ids one call of codec_stream_encode may write beyond its n bytes: the text a
 * stream held back from earlier calls (an unfinished piece). */
#define CODEC_HOLD_MAX (GPT2BPE_HOLD_MAX > BPE_PIECE_MAX ? GPT2BPE_HOLD_MAX : BPE_PIECE_MAX)

struct codec {
	struct tokenizer tok;		/* a BPE one's merges point into bpe, a GPT-2
					   one's table into gpt2 (owned) */
	bool is_bpe, is_gpt2;
	struct bpe bpe;			/* BPE only */
	struct gpt2bpe gpt2;		/* GPT-2 only */
	unsigned char byte_text[256];	/* bytes: id i is the byte i */
};

/*
 * The codec of tok (its merges or table are copied). -EINVAL with one line in err
 * when tok is BPE without its merge table (GPT-2: its table), or the table does
 * not give its id:
 *   <what>: tokenizer "bpe-v1-..." has no merge table here
 */
int codec_init(struct codec *c, const struct tokenizer *tok, const char *what, char *err,
	       size_t err_len);
void codec_free(struct codec *c);

/* The bytes of id (< vocab): *len of them at the returned pointer. */
const unsigned char *codec_token_bytes(const struct codec *c, uint32_t id, size_t *len);

/* One text being encoded, in parts. */
struct codec_stream {
	const struct codec *c;
	struct bpe_encoder bpe;
	struct gpt2bpe_encoder gpt2;
};

void codec_stream_init(struct codec_stream *s, const struct codec *c);
/*
 * Encode n more bytes (final: these are the last; src may then be NULL with n 0).
 * dst holds n + CODEC_HOLD_MAX ids. Returns the ids written; *bytes = the text bytes
 * they encode (a BPE piece not yet finished is encoded by a later call).
 */
size_t codec_stream_encode(struct codec_stream *s, const unsigned char *src, size_t n,
			   bool final, uint16_t *dst, uint64_t *bytes);

/*
 * A whole corpus in memory: the text of paths (files or directories, plain or gzip:
 * data/textfile.h), as one text, encoded. At most max_bytes of text. *tokens is
 * malloc'd (at least one element), *bytes the text bytes. 0, or -1 with one line
 * in err naming the file (missing, unreadable, an empty file, invalid gzip, a
 * directory without files, too large).
 */
int codec_encode_inputs(const struct codec *c, const char *const *paths /* (npaths) */,
			int npaths, uint64_t max_bytes, uint16_t **tokens, uint64_t *n_tokens,
			uint64_t *bytes, char *err, size_t err_len);

#endif
