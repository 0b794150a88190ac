#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "data/gpt2bpe.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard.c uses the little-endian uint16 payload in place: port the payload I/O first"
#endif

/* Header offsets (see the table in shard.h). */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_HEADER_SIZE = 12,
	OFF_TOKENIZER = 16,
	OFF_VOCAB = 48,
	OFF_BYTES_PER_TOKEN = 52,
	OFF_N_TOKENS = 56,
	OFF_SOURCE_BYTES = 64,
	OFF_CHECKSUM = 72,
	OFF_N_MERGES = 80,
	OFF_MERGES_CHECKSUM = 84,
	OFF_EOD = 88,
	OFF_TABLE_BYTES = 92,
	OFF_HEADER_CHECKSUM = 124,
};

#define BYTES_PER_TOKEN 2u
/* zlib's crc32() takes a uInt length: feed it in slices of this many bytes. */
#define CRC_SLICE ((size_t)1 << 30)
/* Tokens checksummed and range-checked per slice of the validation pass (2 MiB). */
#define SCAN_TOKENS ((size_t)1 << 20)

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t bytes)
{
	const unsigned char *p = data;

	while (bytes > 0) {
		size_t n = bytes < CRC_SLICE ? bytes : CRC_SLICE;

		crc = (uint32_t)crc32(crc, p, (uInt)n);
		p += n;
		bytes -= n;
	}
	return crc;
}

uint64_t shard_checksum(const void *payload, size_t bytes)
{
	return crc_update((uint32_t)crc32(0L, Z_NULL, 0), payload, bytes);
}

void shard_header_pack(unsigned char dst[SHARD_HEADER_SIZE], const struct shard_header *h)
{
	memset(dst, 0, SHARD_HEADER_SIZE);
	memcpy(dst + OFF_MAGIC, SHARD_MAGIC, 8);
	put_u32(dst + OFF_VERSION, h->version);
	put_u32(dst + OFF_HEADER_SIZE, h->header_size);
	memcpy(dst + OFF_TOKENIZER, h->tokenizer_id, TOKENIZER_ID_LEN);
	put_u32(dst + OFF_VOCAB, h->vocab);
	put_u32(dst + OFF_BYTES_PER_TOKEN, h->bytes_per_token);
	put_u64(dst + OFF_N_TOKENS, h->n_tokens);
	put_u64(dst + OFF_SOURCE_BYTES, h->source_bytes);
	put_u64(dst + OFF_CHECKSUM, h->checksum);
	put_u32(dst + OFF_N_MERGES, h->n_merges);
	put_u32(dst + OFF_MERGES_CHECKSUM, h->merges_checksum);
	put_u32(dst + OFF_EOD, h->eod_plus1);
	put_u32(dst + OFF_TABLE_BYTES, h->table_bytes);
	put_u32(dst + OFF_HEADER_CHECKSUM,
		(uint32_t)shard_checksum(dst, OFF_HEADER_CHECKSUM));
}

void shard_header_unpack(struct shard_header *h, const unsigned char src[SHARD_HEADER_SIZE])
{
	h->version = get_u32(src + OFF_VERSION);
	h->header_size = get_u32(src + OFF_HEADER_SIZE);
	memcpy(h->tokenizer_id, src + OFF_TOKENIZER, TOKENIZER_ID_LEN);
	h->vocab = get_u32(src + OFF_VOCAB);
	h->bytes_per_token = get_u32(src + OFF_BYTES_PER_TOKEN);
	h->n_tokens = get_u64(src + OFF_N_TOKENS);
	h->source_bytes = get_u64(src + OFF_SOURCE_BYTES);
	h->checksum = get_u64(src + OFF_CHECKSUM);
	h->n_merges = get_u32(src + OFF_N_MERGES);
	h->merges_checksum = get_u32(src + OFF_MERGES_CHECKSUM);
	h->eod_plus1 = get_u32(src + OFF_EOD);
	h->table_bytes = get_u32(src + OFF_TABLE_BYTES);
	h->header_checksum = get_u32(src + OFF_HEADER_CHECKSUM);
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);

	memcpy(p, s, n);
	return p;
}

/* ------------------------------------------------------------------ writing */

static int write_all(int fd, const void *buf, size_t bytes)
{
	const unsigned char *p = buf;

	while (bytes > 0) {
		ssize_t n = write(fd, p, bytes);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		bytes -= (size_t)n;
	}
	return 0;
}

/* fsync the directory holding path, so a rename or link in it is durable. */
static int fsync_parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, rc = 0;

	if (!slash) {
		dir = xstrdup(".");
	} else {
		size_t n = slash == path ? 1 : (size_t)(slash - path);

		dir = xmalloc(n + 1);
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
	} else {
		/* Some file systems cannot fsync a directory (EINVAL): nothing to do. */
		if (fsync(fd) != 0 && errno != EINVAL)
			rc = -errno;
		close(fd);
	}
	free(dir);
	return rc;
}

static void writer_release(struct shard_writer *w)
{
	free(w->path);
	free(w->tmp_path);
	w->path = NULL;
	w->tmp_path = NULL;
	w->fd = -1;
}

void shard_writer_abort(struct shard_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_path)
		unlink(w->tmp_path);
	writer_release(w);
}

int shard_writer_open(struct shard_writer *w, const char *path, const struct tokenizer *tok,
		      unsigned flags, char *err, size_t err_len)
{
	unsigned char zero[SHARD_HEADER_SIZE] = { 0 };
	struct stat st;
	size_t tmp_len;
	int rc;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	if (tok->vocab == 0 || tok->vocab > SHARD_MAX_VOCAB) {
		snprintf(err, err_len, "%s: vocabulary %u does not fit shards (uint16 tokens, "
			 "at most %u ids)", path, tok->vocab, SHARD_MAX_VOCAB);
		return -EINVAL;
	}
	ENSURE(tok->n_merges == 0 || tok->vocab == TOKENIZER_BYTES_VOCAB + tok->n_merges);
	/* Refuse early, before any work; commit refuses again atomically. */
	if (!(flags & SHARD_OVERWRITE) && lstat(path, &st) == 0) {
		snprintf(err, err_len, "%s: already exists (refusing to overwrite)", path);
		return -EEXIST;
	}
	w->path = xstrdup(path);
	tmp_len = strlen(path) + 32;
	w->tmp_path = xmalloc(tmp_len);
	snprintf(w->tmp_path, tmp_len, "%s.tmp.%ld", path, (long)getpid());
	w->flags = flags;
	ENSURE(!tok->table || (tok->n_merges == 0 && tok->table_bytes % 4 == 0 &&
			       tok->table_bytes <= UINT32_MAX - SHARD_HEADER_SIZE));
	ENSURE(tok->eod_id >= -1 && (tok->eod_id < 0 || (uint32_t)tok->eod_id < tok->vocab));
	w->hdr.version = tok->table ? SHARD_VERSION_TABLE
			 : tok->n_merges ? SHARD_VERSION_MERGES : SHARD_VERSION;
	w->hdr.header_size = SHARD_HEADER_SIZE + 4 * tok->n_merges +
			     (tok->table ? tok->table_bytes : 0);
	w->hdr.n_merges = tok->n_merges;
	w->hdr.merges_checksum = tok->n_merges ? (uint32_t)shard_checksum(tok->merges,
									 4 * (size_t)tok->n_merges) : 0;
	if (tok->table) {
		w->hdr.table_bytes = tok->table_bytes;
		w->hdr.merges_checksum = (uint32_t)shard_checksum(tok->table, tok->table_bytes);
	}
	w->hdr.eod_plus1 = (uint32_t)(tok->eod_id + 1);
	memcpy(w->hdr.tokenizer_id, tok->id, TOKENIZER_ID_LEN);
	w->hdr.vocab = tok->vocab;
	w->hdr.bytes_per_token = BYTES_PER_TOKEN;
	w->crc = (uint32_t)crc32(0L, Z_NULL, 0);

	w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (w->fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: cannot create temporary file %s: %s", path,
			 w->tmp_path, strerror(-rc));
		/* Not ours to unlink: it may be another writer's. */
		free(w->tmp_path);
		w->tmp_path = NULL;
		writer_release(w);
		return rc;
	}
	/* A zero placeholder: the real header is written by commit. */
	rc = write_all(w->fd, zero, sizeof(zero));
	if (!rc && tok->n_merges)
		rc = write_all(w->fd, tok->merges, 4 * (size_t)tok->n_merges);
	if (!rc && tok->table)
		rc = write_all(w->fd, tok->table, tok->table_bytes);
	if (rc) {
		snprintf(err, err_len, "%s: cannot write %s: %s", path, w->tmp_path,
			 strerror(-rc));
		shard_writer_abort(w);
	}
	return rc;
}

int shard_writer_append(struct shard_writer *w, const uint16_t *tokens, size_t n,
			uint64_t source_bytes, char *err, size_t err_len)
{
	size_t bytes;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (tokens[i] >= w->hdr.vocab) {
			snprintf(err, err_len, "%s: token %u at index %llu is >= vocab %u",
				 w->path, tokens[i],
				 (unsigned long long)(w->hdr.n_tokens + i), w->hdr.vocab);
			shard_writer_abort(w);
			return -ERANGE;
		}
	}
	if (!size_mul_ok(n, BYTES_PER_TOKEN, &bytes) ||
	    w->hdr.n_tokens + n < w->hdr.n_tokens ||
	    w->hdr.source_bytes + source_bytes < w->hdr.source_bytes) {
		snprintf(err, err_len, "%s: token or byte count overflows", w->path);
		shard_writer_abort(w);
		return -EOVERFLOW;
	}
	rc = write_all(w->fd, tokens, bytes);
	if (rc) {
		snprintf(err, err_len, "%s: cannot write %s: %s", w->path, w->tmp_path,
			 strerror(-rc));
		shard_writer_abort(w);
		return rc;
	}
	w->crc = crc_update(w->crc, tokens, bytes);
	w->hdr.n_tokens += n;
	w->hdr.source_bytes += source_bytes;
	return 0;
}

/* Publish tmp under path: link() refuses an existing path atomically. */
static int publish(struct shard_writer *w, char *err, size_t err_len)
{
	struct stat st;

	if (w->flags & SHARD_OVERWRITE)
		goto do_rename;
	if (link(w->tmp_path, w->path) == 0) {
		unlink(w->tmp_path);
		return 0;
	}
	if (errno == EEXIST)
		goto exists;
	/* No hard links on this file system: check, then rename (a small race). */
	if (lstat(w->path, &st) == 0)
		goto exists;
do_rename:
	if (rename(w->tmp_path, w->path) != 0) {
		int rc = -errno;

		snprintf(err, err_len, "%s: cannot rename %s to it: %s", w->path, w->tmp_path,
			 strerror(-rc));
		return rc;
	}
	return 0;
exists:
	snprintf(err, err_len, "%s: already exists (refusing to overwrite)", w->path);
	return -EEXIST;
}

int shard_writer_commit(struct shard_writer *w, char *err, size_t err_len)
{
	unsigned char hdr[SHARD_HEADER_SIZE];
	ssize_t n;
	int rc;

	w->hdr.checksum = w->crc;
	shard_header_pack(hdr, &w->hdr);
	n = pwrite(w->fd, hdr, sizeof(hdr), 0);
	if (n != (ssize_t)sizeof(hdr)) {
		rc = n < 0 ? -errno : -EIO;
		snprintf(err, err_len, "%s: cannot write the header of %s: %s", w->path,
			 w->tmp_path, strerror(-rc));
		goto out_abort;
	}
	if (fsync(w->fd) != 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: cannot fsync %s: %s", w->path, w->tmp_path,
			 strerror(-rc));
		goto out_abort;
	}
	if (close(w->fd) != 0) {
		w->fd = -1;
		rc = -errno;
		snprintf(err, err_len, "%s: cannot close %s: %s", w->path, w->tmp_path,
			 strerror(-rc));
		goto out_abort;
	}
	w->fd = -1;
	rc = publish(w, err, err_len);
	if (rc)
		goto out_abort;
	rc = fsync_parent_dir(w->path);
	if (rc) {
		/* The file is complete and in place; only its durability is in doubt. */
		snprintf(err, err_len, "%s: cannot fsync its directory: %s", w->path,
			 strerror(-rc));
		writer_release(w);
		return rc;
	}
	writer_release(w);
	return 0;

out_abort:
	shard_writer_abort(w);
	return rc;
}

int shard_write_atomic(const char *path, const uint16_t *tokens, uint64_t n_tokens,
		       uint64_t source_bytes, const struct tokenizer *tok, unsigned flags,
		       char *err, size_t err_len)
{
	struct shard_writer w;
	int rc;

	if (n_tokens > SIZE_MAX) {
		snprintf(err, err_len, "%s: %llu tokens do not fit in memory", path,
			 (unsigned long long)n_tokens);
		return -EOVERFLOW;
	}
	rc = shard_writer_open(&w, path, tok, flags, err, err_len);
	if (rc)
		return rc;
	rc = shard_writer_append(&w, tokens, (size_t)n_tokens, source_bytes, err, err_len);
	if (rc)
		return rc;
	return shard_writer_commit(&w, err, err_len);
}

/* ------------------------------------------------------------------ reading */

/* A version 2 header's merge table: size, checksum, and that it names the id. */
static int validate_merges(struct shard *sh, const char *path, char *err, size_t err_len)
{
	const struct shard_header *h = &sh->hdr;
	const unsigned char *p = sh->map;
	struct tokenizer bpe;
	uint32_t crc;

	if (h->n_merges == 0 || h->n_merges > SHARD_MAX_VOCAB - TOKENIZER_BYTES_VOCAB ||
	    h->vocab != TOKENIZER_BYTES_VOCAB + h->n_merges) {
		snprintf(err, err_len, "%s: %u merges do not make vocab %u (it must be 256 + "
			 "merges, at most %u)", path, h->n_merges, h->vocab, SHARD_MAX_VOCAB);
		return -EINVAL;
	}
	if (h->header_size != SHARD_HEADER_SIZE + 4 * h->n_merges) {
		snprintf(err, err_len, "%s: header size %u is not %u, the size of a version %u "
			 "header with %u merges", path, h->header_size,
			 SHARD_HEADER_SIZE + 4 * h->n_merges, SHARD_VERSION_MERGES, h->n_merges);
		return -EINVAL;
	}
	if (sh->map_len < h->header_size) {
		snprintf(err, err_len, "%s: truncated merge table (%zu of %u header bytes)", path,
			 sh->map_len, h->header_size);
		return -EINVAL;
	}
	crc = (uint32_t)shard_checksum(p + SHARD_HEADER_SIZE, 4 * (size_t)h->n_merges);
	if (crc != h->merges_checksum) {
		snprintf(err, err_len, "%s: merge table checksum mismatch (stored 0x%08x, "
			 "computed 0x%08x): the merges are corrupt", path, h->merges_checksum, crc);
		return -EINVAL;
	}
	if (tokenizer_init_bpe(&bpe, (const uint16_t *)(p + SHARD_HEADER_SIZE), h->n_merges,
			       path, err, err_len))
		return -EINVAL;
	if (!tokenizer_equal(&bpe, &sh->tok)) {
		snprintf(err, err_len, "%s: tokenizer id \"%s\" is not that of its merge table "
			 "(\"%s\")", path, sh->tok.id, bpe.id);
		return -EINVAL;
	}
	sh->tok = bpe;
	return 0;
}

/* A version 3 header's GPT-2 table: size, checksum, and that it names the id. */
static int validate_table(struct shard *sh, const char *path, char *err, size_t err_len)
{
	const struct shard_header *h = &sh->hdr;
	const unsigned char *p = sh->map;
	struct tokenizer g;
	uint32_t crc;

	if (h->n_merges != 0 || h->table_bytes > UINT32_MAX - SHARD_HEADER_SIZE ||
	    h->header_size != SHARD_HEADER_SIZE + h->table_bytes) {
		snprintf(err, err_len, "%s: header size %u is not %u + the GPT-2 table's %u bytes "
			 "(and merges must be 0, not %u)", path, h->header_size, SHARD_HEADER_SIZE,
			 h->table_bytes, h->n_merges);
		return -EINVAL;
	}
	if (sh->map_len < h->header_size) {
		snprintf(err, err_len, "%s: truncated GPT-2 table (%zu of %u header bytes)", path,
			 sh->map_len, h->header_size);
		return -EINVAL;
	}
	crc = (uint32_t)shard_checksum(p + SHARD_HEADER_SIZE, h->table_bytes);
	if (crc != h->merges_checksum) {
		snprintf(err, err_len, "%s: GPT-2 table checksum mismatch (stored 0x%08x, "
			 "computed 0x%08x): the table is corrupt", path, h->merges_checksum, crc);
		return -EINVAL;
	}
	if (gpt2bpe_table_check(&g, p + SHARD_HEADER_SIZE, h->table_bytes, path, err, err_len))
		return -EINVAL;
	if (!tokenizer_equal(&g, &sh->tok)) {
		snprintf(err, err_len, "%s: tokenizer id \"%s\" is not that of its GPT-2 table "
			 "(\"%s\")", path, sh->tok.id, g.id);
		return -EINVAL;
	}
	sh->tok = g;
	return 0;
}

/* Every rule a mapped file must satisfy; fills sh->hdr, sh->tok and sh->tokens. */
static int validate(struct shard *sh, const char *path, char *err, size_t err_len)
{
	const unsigned char *p = sh->map;
	size_t size = sh->map_len, payload, total;
	struct shard_header *h = &sh->hdr;
	uint64_t have;
	uint64_t bad_index = UINT64_MAX;
	uint16_t bad_token = 0;
	uint32_t crc;

	if (size < 8) {
		snprintf(err, err_len, "%s: file of %zu bytes is too short to be a token shard",
			 path, size);
		return -EINVAL;
	}
	if (memcmp(p + OFF_MAGIC, SHARD_MAGIC, 8) != 0) {
		snprintf(err, err_len, "%s: bad magic (not a retnet token shard)", path);
		return -EINVAL;
	}
	if (size < OFF_HEADER_SIZE + 4) {
		snprintf(err, err_len, "%s: truncated header (%zu bytes)", path, size);
		return -EINVAL;
	}
	h->version = get_u32(p + OFF_VERSION);
	if (h->version != SHARD_VERSION && h->version != SHARD_VERSION_MERGES &&
	    h->version != SHARD_VERSION_TABLE) {
		snprintf(err, err_len, "%s: unsupported shard version %u (this build reads "
			 "versions %u to %u)", path, h->version, SHARD_VERSION,
			 SHARD_VERSION_TABLE);
		return -EINVAL;
	}
	h->header_size = get_u32(p + OFF_HEADER_SIZE);
	if (h->version == SHARD_VERSION && h->header_size != SHARD_HEADER_SIZE) {
		snprintf(err, err_len, "%s: header size %u is not %u, the size of a version %u "
			 "header", path, h->header_size, SHARD_HEADER_SIZE, SHARD_VERSION);
		return -EINVAL;
	}
	if (size < SHARD_HEADER_SIZE) {
		snprintf(err, err_len, "%s: truncated header (%zu of %u bytes)", path, size,
			 SHARD_HEADER_SIZE);
		return -EINVAL;
	}
	shard_header_unpack(h, p);
	crc = (uint32_t)shard_checksum(p, OFF_HEADER_CHECKSUM);
	if (crc != h->header_checksum) {
		snprintf(err, err_len, "%s: header checksum mismatch (stored 0x%08x, computed "
			 "0x%08x): the header is corrupt", path, h->header_checksum, crc);
		return -EINVAL;
	}
	if (tokenizer_from_header(&sh->tok, h->tokenizer_id, h->vocab, path, err, err_len))
		return -EINVAL;
	if (h->version == SHARD_VERSION_MERGES && validate_merges(sh, path, err, err_len))
		return -EINVAL;
	if (h->version == SHARD_VERSION_TABLE && validate_table(sh, path, err, err_len))
		return -EINVAL;
	/* the tokenizer names its end-of-document id (GPT-2's table) or has none */
	if (h->eod_plus1 != (uint32_t)(sh->tok.eod_id + 1)) {
		snprintf(err, err_len, "%s: end-of-document id field %lld is not the tokenizer's "
			 "(%d)", path, (long long)h->eod_plus1 - 1, sh->tok.eod_id);
		return -EINVAL;
	}
	if (h->vocab > SHARD_MAX_VOCAB) {
		snprintf(err, err_len, "%s: vocab %u exceeds %u, the most uint16 tokens hold",
			 path, h->vocab, SHARD_MAX_VOCAB);
		return -EINVAL;
	}
	if (h->bytes_per_token != BYTES_PER_TOKEN) {
		snprintf(err, err_len, "%s: %u bytes per token not supported (version %u "
			 "stores uint16 tokens)", path, h->bytes_per_token, SHARD_VERSION);
		return -EINVAL;
	}
	/* header + n * 2 must equal the file size, computed without overflow. */
	if (h->n_tokens > SIZE_MAX || !size_mul_ok((size_t)h->n_tokens, BYTES_PER_TOKEN, &payload) ||
	    payload > SIZE_MAX - h->header_size) {
		snprintf(err, err_len, "%s: token count %llu overflows the file size", path,
			 (unsigned long long)h->n_tokens);
		return -EINVAL;
	}
	total = h->header_size + payload;
	if (size != total) {
		have = size < h->header_size ? 0 : (size - h->header_size) / BYTES_PER_TOKEN;
		if (size < total)
			snprintf(err, err_len, "%s: truncated payload: the header says %llu tokens "
				 "(%zu bytes) but the file has %zu bytes (%llu tokens)", path,
				 (unsigned long long)h->n_tokens, total, size,
				 (unsigned long long)have);
		else
			snprintf(err, err_len, "%s: %zu trailing bytes after the %llu tokens the "
				 "header announces", path, size - total,
				 (unsigned long long)h->n_tokens);
		return -EINVAL;
	}

	sh->tokens = (const uint16_t *)(p + h->header_size);
	/* One pass: checksum slice by slice, noting the first out-of-range token. */
	crc = (uint32_t)crc32(0L, Z_NULL, 0);
	for (size_t off = 0; off < (size_t)h->n_tokens;) {
		size_t n = (size_t)h->n_tokens - off;

		if (n > SCAN_TOKENS)
			n = SCAN_TOKENS;
		crc = crc_update(crc, sh->tokens + off, n * BYTES_PER_TOKEN);
		if (bad_index == UINT64_MAX) {
			for (size_t i = 0; i < n; i++) {
				if (sh->tokens[off + i] >= h->vocab) {
					bad_index = off + i;
					bad_token = sh->tokens[off + i];
					break;
				}
			}
		}
		off += n;
	}
	if (crc != h->checksum) {
		snprintf(err, err_len, "%s: payload checksum mismatch (stored 0x%08llx, computed "
			 "0x%08x): the tokens are corrupt", path,
			 (unsigned long long)h->checksum, crc);
		return -EINVAL;
	}
	if (bad_index != UINT64_MAX) {
		snprintf(err, err_len, "%s: token %u at index %llu is >= vocab %u", path,
			 bad_token, (unsigned long long)bad_index, h->vocab);
		return -EINVAL;
	}
	return 0;
}

int shard_open_checked(struct shard *sh, const char *path, char *err, size_t err_len)
{
	struct stat st;
	int fd, rc;

	memset(sh, 0, sizeof(*sh));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: cannot stat: %s", path, strerror(-rc));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		rc = -EINVAL;
		goto out_close;
	}
	if ((uintmax_t)st.st_size > SIZE_MAX) {
		snprintf(err, err_len, "%s: file too large to map", path);
		rc = -EFBIG;
		goto out_close;
	}
	sh->map_len = (size_t)st.st_size;
	if (sh->map_len == 0) {
		snprintf(err, err_len, "%s: empty file (not a token shard)", path);
		rc = -EINVAL;
		goto out_close;
	}
	sh->map = mmap(NULL, sh->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (sh->map == MAP_FAILED) {
		rc = -errno;
		sh->map = NULL;
		snprintf(err, err_len, "%s: cannot mmap: %s", path, strerror(-rc));
		goto out_close;
	}
	close(fd);
	rc = validate(sh, path, err, err_len);
	if (rc) {
		shard_close(sh);
		return rc;
	}
	sh->path = xstrdup(path);
	return 0;

out_close:
	close(fd);
	memset(sh, 0, sizeof(*sh));
	return rc;
}

void shard_close(struct shard *sh)
{
	if (sh->map)
		CHECK_SYS(munmap(sh->map, sh->map_len));
	free(sh->path);
	memset(sh, 0, sizeof(*sh));
}
