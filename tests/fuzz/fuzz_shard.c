/*
 * fuzz_shard: the token shard reader (data/shard.c shard_open_checked) and the
 * loader that consumes what it accepts (data/loader.c).
 *
 * Input: the bytes of a shard file. Each input is opened twice: as it is, and
 * with its checksums recomputed (header crc over bytes [0, 124), payload crc over
 * the bytes after the header and, for version 2, the merge table's crc and the id
 * its merges hash to), since random bytes almost never pass a crc or a hash and
 * the checks behind them would otherwise be out of the fuzzer's reach. An
 * accepted shard must have the invariants the loader relies on (size = header +
 * 2n, every token < vocab, a NUL-terminated tokenizer id, a BPE merge table that
 * builds an encoder); then a loader over it (and
 * over it twice) with a seq_len and data-parallel split taken from the input reads
 * a few training batches and evaluation windows, checking every token it returns.
 */
#include <string.h>

#include <zlib.h>

#include "data/bpe.h"
#include "data/loader.h"
#include "data/shard.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ROWS 4
#define MAX_SEQ 64

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Recompute the checksums (and a version 2 shard's id) of a copy of the input. */
static void fix_checksums(uint8_t *p, size_t size)
{
	size_t header = SHARD_HEADER_SIZE;
	uint32_t crc, m;

	if (size < SHARD_HEADER_SIZE)
		return;
	m = get32(p + 80);
	if (get32(p + 8) == SHARD_VERSION_MERGES && m <= SHARD_MAX_VOCAB &&
	    SHARD_HEADER_SIZE + 4 * (size_t)m <= size) {
		uint16_t *merges = malloc(4 * (size_t)m + 2);
		struct tokenizer tok;
		char err[SHARD_ERR_LEN];

		header += 4 * (size_t)m;
		crc = (uint32_t)crc32(0L, p + SHARD_HEADER_SIZE, (uInt)(4 * m));
		for (int i = 0; i < 4; i++)
			p[84 + i] = (uint8_t)(crc >> (8 * i));
		memcpy(merges, p + SHARD_HEADER_SIZE, 4 * (size_t)m);
		if (m && tokenizer_init_bpe(&tok, merges, m, "fuzz", err, sizeof(err)) == 0)
			memcpy(p + 16, tok.id, TOKENIZER_ID_LEN);
		free(merges);
	}
	crc = (uint32_t)crc32(0L, p + header, (uInt)(size - header));
	for (int i = 0; i < 8; i++)
		p[72 + i] = i < 4 ? (uint8_t)(crc >> (8 * i)) : 0;
	crc = (uint32_t)crc32(0L, p, 124);
	for (int i = 0; i < 4; i++)
		p[124 + i] = (uint8_t)(crc >> (8 * i));
}

static void check_rows(const struct loader *ld, const int32_t *in, const int32_t *tg, int rows)
{
	FUZZ_ASSERT(rows >= 0 && rows <= MAX_ROWS);
	for (int64_t i = 0; i < (int64_t)rows * ld->seq_len; i++)
		FUZZ_ASSERT(in[i] >= 0 && (uint32_t)in[i] < ld->tok.vocab && tg[i] >= 0 &&
			    (uint32_t)tg[i] < ld->tok.vocab);
}

/* A loader over the shard (once, or twice in a row) reads a few batches. */
static void exercise_loader(const char *path, const uint8_t *data, size_t size)
{
	static int32_t in[MAX_ROWS * MAX_SEQ], tg[MAX_ROWS * MAX_SEQ];
	const char *paths[2] = {path, path};
	uint8_t knobs = size > 80 ? data[80] : 0; /* a reserved header byte */
	int seq = 1 + knobs % MAX_SEQ, dp_size = 1 + (knobs >> 6), npaths = 1 + (knobs & 1);
	int batch = 1 + (int)((knobs >> 3) % MAX_ROWS);
	struct loader ld;
	struct loader_state st;
	char err[SHARD_ERR_LEN];

	if (batch < dp_size)
		batch = dp_size;
	if ((batch + dp_size - 1) / dp_size > MAX_ROWS)
		return;
	for (int rank = 0; rank < dp_size; rank++) {
		err[0] = '\0';
		if (loader_init(&ld, paths, npaths, seq, rank, dp_size, knobs, err, sizeof(err))) {
			FUZZ_ASSERT(err[0]);
			continue;
		}
		FUZZ_ASSERT(ld.n_windows >= 1 && ld.n_windows * (uint64_t)seq + 1 <= ld.n_tokens);
		for (int k = 0; k < 3; k++)
			check_rows(&ld, in, tg, loader_next_batch(&ld, in, tg, batch));
		loader_state_get(&ld, &st);
		FUZZ_ASSERT(loader_state_set(&ld, &st, err, sizeof(err)) == 0);
		for (int k = 0, rows; k < 3 && (rows = loader_seq_next(&ld, in, tg, MAX_ROWS)); k++)
			check_rows(&ld, in, tg, rows);
		FUZZ_ASSERT(loader_remainder_tokens(&ld) < (uint64_t)seq);
		loader_free(&ld);
	}
}

static void open_one(const uint8_t *data, size_t size)
{
	char path[1024], err[SHARD_ERR_LEN];
	struct shard sh;

	snprintf(path, sizeof(path), "%s", fuzz_write_file("fuzz.bin", data, size));
	err[0] = '\0';
	if (shard_open_checked(&sh, path, err, sizeof(err)) != 0) {
		FUZZ_ASSERT(err[0] && !strchr(err, '\n'));
		FUZZ_ASSERT(sh.map == NULL && sh.path == NULL);
		return;
	}
	FUZZ_ASSERT(sh.map_len == size && size == sh.hdr.header_size + 2 * sh.hdr.n_tokens);
	FUZZ_ASSERT(sh.hdr.header_size == SHARD_HEADER_SIZE + 4 * sh.tok.n_merges);
	if (sh.tok.n_merges) {
		struct bpe b;
		size_t len;

		FUZZ_ASSERT(sh.tok.vocab == 256 + sh.tok.n_merges && tokenizer_is_bpe(&sh.tok));
		bpe_init(&b, &sh.tok);
		for (uint64_t i = 0; i < sh.hdr.n_tokens; i++)
			FUZZ_ASSERT(bpe_token_bytes(&b, sh.tokens[i], &len) && len >= 1 &&
				    len <= BPE_PIECE_MAX);
		bpe_free(&b);
	}
	FUZZ_ASSERT(sh.tok.vocab >= 1 && sh.tok.vocab <= SHARD_MAX_VOCAB);
	FUZZ_ASSERT(memchr(sh.tok.id, '\0', sizeof(sh.tok.id)) && sh.tok.id[0]);
	for (uint64_t i = 0; i < sh.hdr.n_tokens; i++)
		FUZZ_ASSERT(sh.tokens[i] < sh.tok.vocab);
	shard_close(&sh);
	exercise_loader(path, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	open_one(data, size);
	if (size < SHARD_HEADER_SIZE)
		return 0;
	fixed = malloc(size);
	memcpy(fixed, data, size);
	fix_checksums(fixed, size);
	if (memcmp(fixed, data, size))
		open_one(fixed, size);
	free(fixed);
	return 0;
}
