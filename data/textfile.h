/*
 * textfile: reading a text file, plain or gzip (zlib tells them apart), in chunks
 * or whole, with one-line errors naming the file: cannot open, cannot read,
 * invalid or truncated gzip data. Does not tokenize or split.
 */
#ifndef RN_TEXTFILE_H
#define RN_TEXTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEXTFILE_CHUNK_BYTES ((size_t)1 << 20)

/* Called with each chunk; a non-zero return stops the read with that status. */
typedef int (*textfile_chunk_fn)(void *ctx, const unsigned char *buf, size_t n);

/*
 * Reads path to its end, handing each chunk (at most TEXTFILE_CHUNK_BYTES, in buf,
 * which the caller provides with that size) to fn (NULL: just count). 0 with
 * *bytes and *gzip set, or -1 with err set ("<path>: <rule>").
 */
int textfile_read(const char *path, unsigned char *buf, textfile_chunk_fn fn, void *ctx,
		  uint64_t *bytes, bool *gzip, char *err, size_t errlen);

/* The whole decompressed text in a malloc'd buffer (*out, *n bytes), at most
 * max_bytes (more is an error). 0, or -1 with err set. */
int textfile_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *n,
		      char *err, size_t errlen);

#endif
