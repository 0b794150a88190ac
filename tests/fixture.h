/*
 * fixture: reader for the binary reference fixtures written by
 * tests/fixtures/make_fixtures.py (float64 PyTorch reference of the model).
 * Header-only, for tests only; plain C11 and libc.
 *
 * File format (all integers little-endian):
 *   "RNFX"  uint32 version (= 1)  uint32 record_count
 *   record_count times:
 *     uint32 name_len, name bytes (no NUL),
 *     uint32 dtype (0 float32, 1 int32, 2 float64), uint32 ndim, uint64 dims[ndim],
 *     the data, row-major, little-endian.
 *
 * fixture_load() validates everything (magic, version, every size against the
 * bytes left, no trailing bytes, no duplicate names) and on any problem prints
 * a message naming the file and exits(1): a test cannot run without its fixture.
 * Data is decoded into native-endian, suitably aligned buffers.
 *
 *   struct fixture *fx = fixture_load_named("tiny_model.bin"); // $RN_FIXTURES or tests/fixtures
 *   const double *g = fixture_f64(fx, "grad/lm_head", 64 * 256);
 *   fixture_free(fx);
 */
#ifndef RN_TEST_FIXTURE_H
#define RN_TEST_FIXTURE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum fixture_dtype { FIXTURE_F32 = 0, FIXTURE_I32 = 1, FIXTURE_F64 = 2 };

#define FIXTURE_MAX_NDIM 8
#define FIXTURE_MAX_RECORDS 65536u
#define FIXTURE_MAX_NAME 4096u
#define FIXTURE_MAX_FILE_BYTES ((uint64_t)1 << 30) /* 1 GiB: anything larger is not ours */

struct fixture_record {
	char *name;		/* NUL-terminated */
	uint32_t dtype;		/* enum fixture_dtype */
	uint32_t ndim;
	uint64_t dims[FIXTURE_MAX_NDIM];
	size_t count;		/* number of elements (product of dims; 1 for ndim 0) */
	void *data;		/* count elements of float / int32_t / double */
};

struct fixture {
	char *path;
	uint32_t version;
	uint32_t count;
	struct fixture_record *records;
};

static inline void fixture_die(const char *path, const char *msg, const char *detail)
{
	fprintf(stderr, "fixture %s: %s%s%s\n", path ? path : "(null)", msg,
		detail ? ": " : "", detail ? detail : "");
	fprintf(stderr, "  (regenerate with: /usr/bin/python3 tests/fixtures/make_fixtures.py)\n");
	exit(1);
}

static inline size_t fixture_dtype_size(uint32_t dtype)
{
	switch (dtype) {
	case FIXTURE_F32: return 4;
	case FIXTURE_I32: return 4;
	case FIXTURE_F64: return 8;
	default: return 0;
	}
}

static inline const char *fixture_dtype_name(uint32_t dtype)
{
	switch (dtype) {
	case FIXTURE_F32: return "float32";
	case FIXTURE_I32: return "int32";
	case FIXTURE_F64: return "float64";
	default: return "unknown";
	}
}

static inline uint32_t fixture_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t fixture_le64(const unsigned char *p)
{
	return (uint64_t)fixture_le32(p) | (uint64_t)fixture_le32(p + 4) << 32;
}

/* Bounds-checked cursor over the file bytes. */
struct fixture_cursor {
	const char *path;
	const unsigned char *p;
	uint64_t left;
};

static inline const unsigned char *fixture_take(struct fixture_cursor *c, uint64_t n,
						const char *what)
{
	const unsigned char *r = c->p;

	if (n > c->left)
		fixture_die(c->path, "truncated file while reading", what);
	c->p += n;
	c->left -= n;
	return r;
}

static inline void fixture_free(struct fixture *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->count; i++) {
		free(f->records[i].name);
		free(f->records[i].data);
	}
	free(f->records);
	free(f->path);
	free(f);
}

static inline void *fixture_xmalloc(const char *path, size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		fixture_die(path, "out of memory", NULL);
	return p;
}

static inline struct fixture *fixture_load(const char *path)
{
	FILE *fp;
	long end;
	uint64_t size;
	unsigned char *buf;
	struct fixture_cursor cur;
	struct fixture *f;
	char msg[256];

	if (!path)
		fixture_die(path, "no path given", NULL);
	fp = fopen(path, "rb");
	if (!fp)
		fixture_die(path, "cannot open", strerror(errno));
	if (fseek(fp, 0, SEEK_END) != 0 || (end = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0)
		fixture_die(path, "cannot determine file size", NULL);
	size = (uint64_t)end;
	if (size > FIXTURE_MAX_FILE_BYTES)
		fixture_die(path, "file is absurdly large", NULL);
	if (size < 12)
		fixture_die(path, "file too short for the header", NULL);
	buf = fixture_xmalloc(path, (size_t)size);
	if (fread(buf, 1, (size_t)size, fp) != (size_t)size)
		fixture_die(path, "read error", NULL);
	fclose(fp);

	cur.path = path;
	cur.p = buf;
	cur.left = size;
	if (memcmp(fixture_take(&cur, 4, "magic"), "RNFX", 4) != 0)
		fixture_die(path, "bad magic (expected \"RNFX\")", NULL);

	f = fixture_xmalloc(path, sizeof(*f));
	memset(f, 0, sizeof(*f));
	f->path = fixture_xmalloc(path, strlen(path) + 1);
	memcpy(f->path, path, strlen(path) + 1);
	f->version = fixture_le32(fixture_take(&cur, 4, "version"));
	if (f->version != 1) {
		snprintf(msg, sizeof(msg), "%u (this reader knows 1)", (unsigned)f->version);
		fixture_die(path, "unsupported version", msg);
	}
	{
		uint32_t n = fixture_le32(fixture_take(&cur, 4, "record count"));

		if (n == 0 || n > FIXTURE_MAX_RECORDS) {
			snprintf(msg, sizeof(msg), "%u", (unsigned)n);
			fixture_die(path, "absurd record count", msg);
		}
		f->records = fixture_xmalloc(path, sizeof(*f->records) * n);
		memset(f->records, 0, sizeof(*f->records) * n);
		f->count = n;
	}

	for (uint32_t r = 0; r < f->count; r++) {
		struct fixture_record *rec = &f->records[r];
		uint32_t name_len = fixture_le32(fixture_take(&cur, 4, "name length"));
		const unsigned char *nm;
		uint64_t count = 1, nbytes;
		size_t esz;

		snprintf(msg, sizeof(msg), "record %u", (unsigned)r);
		if (name_len == 0 || name_len > FIXTURE_MAX_NAME)
			fixture_die(path, "absurd name length in", msg);
		nm = fixture_take(&cur, name_len, "record name");
		if (memchr(nm, '\0', name_len))
			fixture_die(path, "NUL byte inside a record name in", msg);
		rec->name = fixture_xmalloc(path, (size_t)name_len + 1);
		memcpy(rec->name, nm, name_len);
		rec->name[name_len] = '\0';
		for (uint32_t q = 0; q < r; q++)
			if (strcmp(f->records[q].name, rec->name) == 0)
				fixture_die(path, "duplicate record", rec->name);

		rec->dtype = fixture_le32(fixture_take(&cur, 4, "dtype"));
		esz = fixture_dtype_size(rec->dtype);
		if (!esz)
			fixture_die(path, "unknown dtype in record", rec->name);
		rec->ndim = fixture_le32(fixture_take(&cur, 4, "ndim"));
		if (rec->ndim > FIXTURE_MAX_NDIM)
			fixture_die(path, "too many dimensions in record", rec->name);
		for (uint32_t i = 0; i < rec->ndim; i++) {
			rec->dims[i] = fixture_le64(fixture_take(&cur, 8, "dims"));
			/* dims[i] <= file size keeps the running product far from overflow */
			if (rec->dims[i] > size)
				fixture_die(path, "absurd dimension in record", rec->name);
			count *= rec->dims[i];
			if (count > size)
				fixture_die(path, "data larger than the file in record", rec->name);
		}
		nbytes = count * esz;
		if (nbytes > cur.left)
			fixture_die(path, "truncated data in record", rec->name);
		rec->count = (size_t)count;
		{
			const unsigned char *src = fixture_take(&cur, nbytes, rec->name);

			rec->data = fixture_xmalloc(path, (size_t)nbytes);
			for (size_t i = 0; i < rec->count; i++) {
				if (esz == 4) {
					uint32_t u = fixture_le32(src + 4 * i);

					memcpy((unsigned char *)rec->data + 4 * i, &u, 4);
				} else {
					uint64_t u = fixture_le64(src + 8 * i);

					memcpy((unsigned char *)rec->data + 8 * i, &u, 8);
				}
			}
		}
	}
	if (cur.left != 0) {
		snprintf(msg, sizeof(msg), "%llu", (unsigned long long)cur.left);
		fixture_die(path, "trailing bytes after the last record", msg);
	}
	free(buf);
	return f;
}

/*
 * Loads <dir>/<file> with dir = $RN_FIXTURES (set by tests/CMakeLists.txt) or,
 * when unset, "tests/fixtures" relative to the working directory.
 */
static inline struct fixture *fixture_load_named(const char *file)
{
	const char *dir = getenv("RN_FIXTURES");
	char path[4096];
	int n;

	if (!dir || !*dir)
		dir = "tests/fixtures";
	n = snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (n < 0 || (size_t)n >= sizeof(path))
		fixture_die(file, "fixture path too long", dir);
	return fixture_load(path);
}

/* The record called name, or NULL. */
static inline const struct fixture_record *fixture_find(const struct fixture *f, const char *name)
{
	for (uint32_t i = 0; i < f->count; i++)
		if (strcmp(f->records[i].name, name) == 0)
			return &f->records[i];
	return NULL;
}

/*
 * The record called name, which must exist, have the given dtype and, unless
 * expect_count is 0, exactly expect_count elements; otherwise exits with a message.
 */
static inline const struct fixture_record *fixture_require(const struct fixture *f,
							   const char *name, uint32_t dtype,
							   size_t expect_count)
{
	const struct fixture_record *r = fixture_find(f, name);
	char msg[256];

	if (!r)
		fixture_die(f->path, "missing record", name);
	if (r->dtype != dtype) {
		snprintf(msg, sizeof(msg), "%s is %s, expected %s", name,
			 fixture_dtype_name(r->dtype), fixture_dtype_name(dtype));
		fixture_die(f->path, "wrong dtype", msg);
	}
	if (expect_count && r->count != expect_count) {
		snprintf(msg, sizeof(msg), "%s has %zu elements, expected %zu", name, r->count,
			 expect_count);
		fixture_die(f->path, "wrong size", msg);
	}
	return r;
}

/* Typed data of a required record (expect_count 0: any size). */
static inline const float *fixture_f32(const struct fixture *f, const char *name,
				       size_t expect_count)
{
	return (const float *)fixture_require(f, name, FIXTURE_F32, expect_count)->data;
}

static inline const double *fixture_f64(const struct fixture *f, const char *name,
					size_t expect_count)
{
	return (const double *)fixture_require(f, name, FIXTURE_F64, expect_count)->data;
}

static inline const int32_t *fixture_i32(const struct fixture *f, const char *name,
					 size_t expect_count)
{
	return (const int32_t *)fixture_require(f, name, FIXTURE_I32, expect_count)->data;
}

#endif
