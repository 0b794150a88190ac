#include "data/textfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/alloc.h"

int textfile_read(const char *path, unsigned char *buf, textfile_chunk_fn fn, void *ctx,
		  uint64_t *bytes, bool *gzip, char *err, size_t errlen)
{
	gzFile gz;
	int n, errnum, rc = 0;
	const char *msg;

	*bytes = 0;
	errno = 0;
	gz = gzopen(path, "rb");
	if (!gz) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 errno ? strerror(errno) : "out of memory");
		return -1;
	}
	gzbuffer(gz, 1u << 17);
	while ((n = gzread(gz, buf, (unsigned)TEXTFILE_CHUNK_BYTES)) > 0) {
		*bytes += (uint64_t)n;
		if (fn && (rc = fn(ctx, buf, (size_t)n)) != 0)
			goto out_close;
	}
	msg = gzerror(gz, &errnum);
	/* zlib prefixes its message with the path, which err already starts with. */
	if (strncmp(msg, path, strlen(path)) == 0 && strncmp(msg + strlen(path), ": ", 2) == 0)
		msg += strlen(path) + 2;
	if (n < 0 || errnum != Z_OK) {
		if (errnum == Z_ERRNO)
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		else if (errnum == Z_BUF_ERROR)
			snprintf(err, errlen, "%s: truncated gzip data (%s)", path, msg);
		else
			snprintf(err, errlen, "%s: invalid gzip data (%s)", path, msg);
		rc = -1;
		goto out_close;
	}
	*gzip = !gzdirect(gz);
out_close:
	errnum = gzclose(gz);
	if (rc == 0 && errnum != Z_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 errnum == Z_BUF_ERROR ? "truncated gzip data (unexpected end of file)"
					       : "cannot close");
		rc = -1;
	}
	return rc;
}

struct gather {
	unsigned char *data;
	size_t n, cap, max;
	const char *path;
	char *err;
	size_t errlen;
};

static int gather_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct gather *g = ctx;

	if (n > g->max - g->n) {
		snprintf(g->err, g->errlen, "%s: more than %zu bytes of text", g->path, g->max);
		return -1;
	}
	if (g->n + n > g->cap) {
		size_t cap = g->cap ? g->cap : ((size_t)1 << 20);

		while (cap < g->n + n)
			cap *= 2;
		g->data = realloc(g->data, cap);
		if (!g->data) {
			snprintf(g->err, g->errlen, "%s: out of memory for %zu bytes", g->path, cap);
			return -1;
		}
		g->cap = cap;
	}
	memcpy(g->data + g->n, buf, n);
	g->n += n;
	return 0;
}

int textfile_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *n,
		      char *err, size_t errlen)
{
	struct gather g = {NULL, 0, 0, max_bytes, path, err, errlen};
	unsigned char *buf = xmalloc(TEXTFILE_CHUNK_BYTES);
	uint64_t bytes;
	bool gzip;
	int rc = textfile_read(path, buf, gather_chunk, &g, &bytes, &gzip, err, errlen);

	free(buf);
	if (rc) {
		free(g.data);
		return -1;
	}
	*out = g.data ? g.data : xmalloc(1);
	*n = g.n;
	return 0;
}
