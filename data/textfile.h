/*
 * textfile: reading a text file, plain or gzip (zlib tells them apart), in chunks
 * or whole, with one-line errors naming the file: cannot open, cannot read,
 * invalid or truncated gzip data; and the inputs a user names: files, or
 * directories whose regular files are taken (not recursive, names starting with
 * '.' skipped) in byte-wise sorted name order, as one text in that order. Does
 * not tokenize or split.
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

/* The text files a user named, in order, each read once by textfile_check. */
struct text_input {
	char *path;
	uint64_t bytes;		/* text bytes after decompression */
	bool gzip;
};

struct text_inputs {
	struct text_input *v;	/* (n) */
	int n, cap;
};

/*
 * Appends the files of args: a regular file as given, a directory's regular files
 * (symlinks to them included) in strcmp order. 0, or -1 with one line in err:
 * "<path>: cannot open: <why>", "<path>: not a regular file or directory",
 * "<dir>: directory has no regular files".
 */
int textfile_expand(struct text_inputs *l, const char *const *args /* (nargs) */, int nargs,
		    char *err, size_t errlen);
/*
 * Reads every input to its end (fn, if not NULL, gets each chunk: buf holds
 * TEXTFILE_CHUNK_BYTES), setting its bytes and gzip flag. 0, or -1 with err set: a
 * read error, "<path>: empty file (no text)[ after decompression]", or "<path>: a
 * token shard, not text".
 */
int textfile_check(struct text_inputs *l, unsigned char *buf, textfile_chunk_fn fn, void *ctx,
		   char *err, size_t errlen);
/* Does a text's first chunk start like a retnet token shard (its magic)? Text
 * readers refuse such a file: its bytes would be tokenized as text. */
bool textfile_is_shard(const unsigned char *first, size_t n);

/* Sum of the inputs' bytes (after textfile_check). */
uint64_t textfile_total(const struct text_inputs *l);
void textfile_inputs_free(struct text_inputs *l);

#endif
