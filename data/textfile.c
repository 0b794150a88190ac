#include "data/textfile.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "data/shard.h"

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

/* ---- inputs ---------------------------------------------------------------- */

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);

	memcpy(p, s, n);
	return p;
}

static void inputs_add(struct text_inputs *l, const char *path)
{
	if (l->n == l->cap) {
		struct text_input *v;

		l->cap = l->cap ? 2 * l->cap : 16;
		CHECK_PTR(v = realloc(l->v, sizeof(*v) * (size_t)l->cap));
		l->v = v;
	}
	memset(&l->v[l->n], 0, sizeof(l->v[0]));
	l->v[l->n++].path = dup_str(path);
}

void textfile_inputs_free(struct text_inputs *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name)
{
	size_t nd = strlen(dir), nn = strlen(name);
	bool slash = nd > 0 && dir[nd - 1] != '/';
	char *p = xmalloc(nd + slash + nn + 1);

	memcpy(p, dir, nd);
	if (slash)
		p[nd] = '/';
	memcpy(p + nd + slash, name, nn + 1);
	return p;
}

/* The regular files of a directory, in strcmp order; 0 or -1 with err set. */
static int expand_dir(struct text_inputs *l, const char *dir, char *err, size_t errlen)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int added = 0, rc = 0;
	DIR *d = opendir(dir);

	if (!d) {
		snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
		return -1;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **v;

			cap = cap ? 2 * cap : 64;
			CHECK_PTR(v = realloc(names, sizeof(*v) * cap));
			names = v;
		}
		names[n++] = dup_str(de->d_name);
	}
	if (errno) {
		snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(errno));
		rc = -1;
		goto out;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char *p = join_path(dir, names[i]);
		struct stat st;

		/* stat, not lstat: a symlink to a regular file counts. */
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			inputs_add(l, p);
			added++;
		}
		free(p);
	}
	if (added == 0) {
		snprintf(err, errlen, "%s: directory has no regular files", dir);
		rc = -1;
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

int textfile_expand(struct text_inputs *l, const char *const *args, int nargs, char *err,
		    size_t errlen)
{
	for (int i = 0; i < nargs; i++) {
		struct stat st;

		if (stat(args[i], &st) != 0) {
			snprintf(err, errlen, "%s: cannot open: %s", args[i], strerror(errno));
			return -1;
		}
		if (S_ISDIR(st.st_mode)) {
			if (expand_dir(l, args[i], err, errlen))
				return -1;
		} else if (S_ISREG(st.st_mode)) {
			inputs_add(l, args[i]);
		} else {
			snprintf(err, errlen, "%s: not a regular file or directory", args[i]);
			return -1;
		}
	}
	return 0;
}

bool textfile_is_shard(const unsigned char *first, size_t n)
{
	const size_t len = sizeof(SHARD_MAGIC) - 1; /* 8: the literal's own NUL is not in it */

	return n >= len && memcmp(first, SHARD_MAGIC, len) == 0;
}

/* The caller's chunk function, after a look at each file's first chunk. */
struct check {
	textfile_chunk_fn fn;
	void *ctx;
	bool first, shard;
};

static int check_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct check *c = ctx;

	if (c->first && textfile_is_shard(buf, n)) {
		c->shard = true;
		return -1;
	}
	c->first = false;
	return c->fn ? c->fn(c->ctx, buf, n) : 0;
}

int textfile_check(struct text_inputs *l, unsigned char *buf, textfile_chunk_fn fn, void *ctx,
		   char *err, size_t errlen)
{
	for (int i = 0; i < l->n; i++) {
		struct text_input *in = &l->v[i];
		struct check c = {fn, ctx, true, false};

		if (textfile_read(in->path, buf, check_chunk, &c, &in->bytes, &in->gzip, err,
				  errlen)) {
			if (c.shard)
				snprintf(err, errlen, "%s: a token shard, not text", in->path);
			return -1;
		}
		if (in->bytes == 0) {
			snprintf(err, errlen, "%s: empty file (no text)%s", in->path,
				 in->gzip ? " after decompression" : "");
			return -1;
		}
	}
	return 0;
}

uint64_t textfile_total(const struct text_inputs *l)
{
	uint64_t b = 0;

	for (int i = 0; i < l->n; i++)
		b += l->v[i].bytes;
	return b;
}
