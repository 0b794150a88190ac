/*
 * shard: the token shard file, written atomically and opened with every field
 * checked.
 *
 * A shard is one little-endian file: a 128-byte header, for a BPE tokenizer its
 * merge table, for a GPT-2 tokenizer its table (data/gpt2bpe.h), then the tokens
 * as uint16 (vocabularies of at most 65536 ids). Version 1 (the byte tokenizer)
 * has no table; version 2 (BPE) a merge table; version 3 (GPT-2) a GPT-2 table:
 *
 *   offset size  field
 *        0    8  magic "RNSHARD\0"
 *        8    4  version (1: no table, 2: a merge table, 3: a GPT-2 table)
 *       12    4  header size in bytes: 128 + 4 x merges, or 128 + table bytes t
 *                (the payload starts here)
 *       16   32  tokenizer id, NUL padded (data/tokenizer.h)
 *       48    4  vocabulary size (every token is < vocab)
 *       52    4  bytes per token (2: uint16 tokens)
 *       56    8  token count n
 *       64    8  source bytes: raw text bytes the tokens came from (bits per byte)
 *       72    8  payload checksum: zlib crc32 of the 2n payload bytes (low 32 bits)
 *       80    4  merges m (version 2; vocab = 256 + m), else 0
 *       84    4  table checksum: zlib crc32 of the 4m merge bytes (version 2) or of
 *                the t table bytes (version 3), else 0
 *       88    4  end-of-document id + 1 (0: the tokenizer has none; files written
 *                before the field have 0 there)
 *       92    4  GPT-2 table bytes t (version 3), else 0
 *       96   28  reserved, zero
 *      124    4  header checksum: zlib crc32 of bytes [0, 124)
 *      128   4m  merge table: m pairs of uint16 ids (data/tokenizer.h), or
 *      128    t  GPT-2 table (data/gpt2bpe.h)
 *   128+4m   2n  tokens (128 + t for version 3)
 *
 * An end-of-document id in the tokens (retnet-prep --append-eod) ends a
 * document: the trainer reads it from the header (struct tokenizer eod_id).
 *
 * Writing goes to "<path>.tmp.<pid>", is fsynced, then published under <path>
 * (link() when overwriting is not allowed, so an existing file is never replaced
 * even by a race; rename() when it is), and the directory is fsynced: a reader
 * sees the old file or the complete new one, never a torn one. A crash can leave
 * a stale "*.tmp.<pid>" file, never a partial <path>.
 *
 * Opening maps the file read-only and checks magic, version, header size, header
 * checksum, tokenizer id, vocabulary, bytes per token, for version 2 the merge
 * table (its checksum, that each merge uses only earlier ids, and that the id is
 * the one tokenizer_init_bpe gives that table), for version 3 the GPT-2 table
 * (its checksum, gpt2bpe_table_check, and that it gives the id), that the
 * end-of-document id is the tokenizer's, that the file size is exactly
 * header + n * 2 (computed with overflow checks), the payload checksum, and that
 * every token is < vocab. Every failure is one line "<path>: <rule>"
 * in the caller's err buffer (print it with log_error("%s", err) and exit 2).
 *
 * Does not: tokenize text, split a corpus, or choose windows (data/loader.h).
 * Assumes a little-endian host (checked at compile time) so the payload is used
 * in place.
 */
#ifndef RN_SHARD_H
#define RN_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

#define SHARD_MAGIC "RNSHARD\0"	/* 8 bytes, the NUL included */
#define SHARD_VERSION 1u		/* byte tokenizer */
#define SHARD_VERSION_MERGES 2u		/* BPE: a merge table follows the header */
#define SHARD_VERSION_TABLE 3u		/* GPT-2: its table follows the header */
#define SHARD_HEADER_SIZE 128u		/* without the merge table */
#define SHARD_MAX_VOCAB 65536u	/* uint16 tokens */
/* A comfortable size for err buffers: a path plus a rule. */
#define SHARD_ERR_LEN 1024

/* Flags of shard_write_atomic() and shard_writer_open(). */
#define SHARD_OVERWRITE 1u	/* replace an existing file (else refuse) */

struct shard_header {
	uint32_t version;
	uint32_t header_size;			/* bytes */
	char tokenizer_id[TOKENIZER_ID_LEN];	/* raw field, NUL padded */
	uint32_t vocab;
	uint32_t bytes_per_token;
	uint64_t n_tokens;
	uint64_t source_bytes;
	uint64_t checksum;			/* crc32 of the payload */
	uint32_t n_merges;			/* version 2 */
	uint32_t merges_checksum;		/* crc32 of the merge or GPT-2 table */
	uint32_t eod_plus1;			/* end-of-document id + 1, 0: none */
	uint32_t table_bytes;			/* version 3 */
	uint32_t header_checksum;		/* crc32 of header bytes [0, 124) */
};

/* An open, validated shard. Owns its mapping and its copy of the path. */
struct shard {
	char *path;
	struct shard_header hdr;
	struct tokenizer tok;		/* a BPE one's merges, a GPT-2 one's table
					   are in the mapping */
	const uint16_t *tokens;		/* (hdr.n_tokens), inside the mapping */
	void *map;			/* the whole file, read-only */
	size_t map_len;			/* bytes */
};

/* An in-progress atomic write; see shard_writer_open(). */
struct shard_writer {
	char *path;			/* final name */
	char *tmp_path;			/* "<path>.tmp.<pid>" */
	int fd;
	unsigned flags;
	struct shard_header hdr;	/* n_tokens, source_bytes grow with appends */
	uint32_t crc;			/* running crc32 of the payload */
};

/* --- format helpers (also used by tests to build damaged files) --- */

/* crc32 of a payload, zero-extended: the value stored in the checksum field. */
uint64_t shard_checksum(const void *payload, size_t bytes);
/* Serialize h (magic, fields, zero reserved bytes); computes the header checksum. */
void shard_header_pack(unsigned char dst[SHARD_HEADER_SIZE], const struct shard_header *h);
/* Parse the fields of a header without checking any of them. */
void shard_header_unpack(struct shard_header *h, const unsigned char src[SHARD_HEADER_SIZE]);

/* --- writing --- */

/*
 * Write a whole shard atomically (see the top of this file). source_bytes is the
 * number of text bytes the tokens encode. Refuses an existing path (-EEXIST)
 * unless flags has SHARD_OVERWRITE. Every token must be < tok->vocab (-ERANGE).
 * Returns 0, or a negative errno with "<path>: <rule>" in err; on failure no
 * file is left behind and an existing <path> is untouched.
 */
int shard_write_atomic(const char *path, const uint16_t *tokens /* (n_tokens) */,
		       uint64_t n_tokens, uint64_t source_bytes, const struct tokenizer *tok,
		       unsigned flags, char *err, size_t err_len);

/*
 * The same write, streamed: open creates the temporary file (and refuses an
 * existing path early), append adds tokens and the text bytes they came from,
 * commit writes the header and publishes the file, abort removes the
 * temporary file. After commit (successful or not) or abort the writer holds
 * nothing. All return 0 or a negative errno with "<path>: <rule>" in err; a
 * failed append or commit has already aborted.
 */
int shard_writer_open(struct shard_writer *w, const char *path, const struct tokenizer *tok,
		      unsigned flags, char *err, size_t err_len);
int shard_writer_append(struct shard_writer *w, const uint16_t *tokens /* (n) */, size_t n,
			uint64_t source_bytes, char *err, size_t err_len);
int shard_writer_commit(struct shard_writer *w, char *err, size_t err_len);
void shard_writer_abort(struct shard_writer *w);

/* --- reading --- */

/*
 * Map and validate a shard (every check listed at the top of this file).
 * Returns 0, or a negative errno (-EINVAL for a format violation, the open or
 * mmap errno otherwise) with "<path>: <rule>" in err; sh is then left empty.
 */
int shard_open_checked(struct shard *sh, const char *path, char *err, size_t err_len);
void shard_close(struct shard *sh);

#endif
