#include "data/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/rng.h"

#define FEISTEL_ROUNDS 6

/* floor(total * r / d) without forming total * r (total = q*d + m). */
static uint64_t split_point(uint64_t total, int r, int d)
{
	uint64_t q = total / (uint64_t)d, m = total % (uint64_t)d;

	return q * (uint64_t)r + m * (uint64_t)r / (uint64_t)d;
}

/* "a.bin, b.bin" (cut short by snprintf if long): the files named in a corpus error. */
static void join_paths(char *dst, size_t len, const char *const *paths, int npaths)
{
	size_t used = 0;

	dst[0] = '\0';
	for (int i = 0; i < npaths && used < len; i++) {
		int n = snprintf(dst + used, len - used, "%s%s", i ? ", " : "", paths[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static unsigned half_bits_for(uint64_t n)
{
	unsigned bits = 0;

	/* Smallest b with 2^b >= n, then half of it rounded up (at least 1). */
	while (bits < 64 && (n - 1) >> bits)
		bits++;
	return bits < 2 ? 1 : (bits + 1) / 2;
}

int loader_init(struct loader *ld, const char *const *paths, int npaths, int seq_len,
		int dp_rank, int dp_size, uint64_t seed, char *err, size_t err_len)
{
	int rc = -EINVAL;

	memset(ld, 0, sizeof(*ld));
	if (npaths < 1) {
		snprintf(err, err_len, "corpus: no token shard given");
		return -EINVAL;
	}
	if (seq_len < 1) {
		snprintf(err, err_len, "seq_len: %d must be >= 1", seq_len);
		return -EINVAL;
	}
	if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size) {
		snprintf(err, err_len, "data-parallel rank %d of %d: need 0 <= rank < size",
			 dp_rank, dp_size);
		return -EINVAL;
	}
	ld->shards = xcalloc((size_t)npaths, sizeof(*ld->shards));
	ld->starts = xcalloc((size_t)npaths + 1, sizeof(*ld->starts));
	for (int i = 0; i < npaths; i++) {
		struct shard *sh = &ld->shards[i];

		rc = shard_open_checked(sh, paths[i], err, err_len);
		if (rc)
			goto out_free;
		ld->nshards = i + 1;
		if (i > 0) {
			rc = tokenizer_check_same(&sh->tok, paths[i], &ld->shards[0].tok, paths[0],
						  err, err_len);
			if (rc)
				goto out_free;
		}
		ld->starts[i] = ld->n_tokens;
		if (ld->n_tokens + sh->hdr.n_tokens < ld->n_tokens ||
		    ld->source_bytes + sh->hdr.source_bytes < ld->source_bytes) {
			snprintf(err, err_len, "%s: the corpus token or byte count overflows",
				 paths[i]);
			rc = -EOVERFLOW;
			goto out_free;
		}
		ld->n_tokens += sh->hdr.n_tokens;
		ld->source_bytes += sh->hdr.source_bytes;
	}
	ld->starts[npaths] = ld->n_tokens;
	ld->tok = ld->shards[0].tok;

	if (ld->n_tokens < (uint64_t)seq_len + 1) {
		char names[512];

		join_paths(names, sizeof(names), paths, npaths);
		snprintf(err, err_len, "%s: corpus of %llu tokens is shorter than one window "
			 "of seq_len + 1 = %llu tokens", names, (unsigned long long)ld->n_tokens,
			 (unsigned long long)seq_len + 1);
		rc = -EINVAL;
		goto out_free;
	}
	ld->seq_len = seq_len;
	ld->dp_rank = dp_rank;
	ld->dp_size = dp_size;
	ld->seed = seed;
	ld->n_windows = (ld->n_tokens - 1) / (uint64_t)seq_len;
	ld->half_bits = half_bits_for(ld->n_windows);
	ld->seq_begin = split_point(ld->n_windows, dp_rank, dp_size);
	ld->seq_end = split_point(ld->n_windows, dp_rank + 1, dp_size);
	ld->seq_next = ld->seq_begin;
	return 0;

out_free:
	loader_free(ld);
	return rc;
}

void loader_free(struct loader *ld)
{
	for (int i = 0; i < ld->nshards; i++)
		shard_close(&ld->shards[i]);
	free(ld->shards);
	free(ld->starts);
	memset(ld, 0, sizeof(*ld));
}

/* ------------------------------------------------------------------ windows */

/* One Feistel pass over 2h-bit values; a bijection of [0, 2^(2h)) for any key. */
static uint64_t feistel(const struct loader *ld, uint64_t stream, uint64_t x)
{
	unsigned h = ld->half_bits;
	uint64_t mask = ((uint64_t)1 << h) - 1;
	uint64_t l = x >> h, r = x & mask;

	for (uint64_t round = 0; round < FEISTEL_ROUNDS; round++) {
		uint32_t w[4];
		uint64_t f, t;

		rng_philox(ld->seed, stream, (round << 32) | r, w);
		f = (((uint64_t)w[1] << 32) | w[0]) & mask;
		t = l ^ f;
		l = r;
		r = t;
	}
	return (l << h) | r;
}

uint64_t loader_permute(const struct loader *ld, uint64_t epoch, uint64_t i)
{
	uint64_t stream = rng_stream_of("data.loader.epoch") + epoch;
	uint64_t x = i;

	ENSURE(i < ld->n_windows);
	/*
	 * Cycle walking: apply the permutation of [0, 2^(2h)) until the value falls in
	 * [0, W). Restricted to [0, W) this is still a bijection, and since
	 * 2^(2h) < 4W the expected number of passes is below 4.
	 */
	do
		x = feistel(ld, stream, x);
	while (x >= ld->n_windows);
	return x;
}

/* n tokens of the stream from offset off, widened to int32. */
static void copy_tokens(const struct loader *ld, int32_t *dst, uint64_t off, size_t n)
{
	int lo = 0, hi = ld->nshards - 1;

	/* The last shard starting at or before off (empty shards are skipped below). */
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;

		if (ld->starts[mid] <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	for (int s = lo; n > 0; s++) {
		uint64_t end = ld->starts[s + 1];
		const uint16_t *src;
		size_t take;

		ENSURE(s < ld->nshards);
		if (off >= end)
			continue;
		take = end - off < n ? (size_t)(end - off) : n;
		src = ld->shards[s].tokens + (off - ld->starts[s]);
		for (size_t i = 0; i < take; i++)
			dst[i] = src[i];
		dst += take;
		off += take;
		n -= take;
	}
}

void loader_read_window(const struct loader *ld, uint64_t w, int32_t *inputs, int32_t *targets)
{
	uint64_t off = w * (uint64_t)ld->seq_len;

	ENSURE(w < ld->n_windows);
	copy_tokens(ld, inputs, off, (size_t)ld->seq_len);
	copy_tokens(ld, targets, off + 1, (size_t)ld->seq_len);
}

/* ------------------------------------------------------------------ training */

int loader_local_rows(const struct loader *ld, int global_batch)
{
	ENSURE(global_batch >= 1);
	return (int)(split_point((uint64_t)global_batch, ld->dp_rank + 1, ld->dp_size) -
		     split_point((uint64_t)global_batch, ld->dp_rank, ld->dp_size));
}

int loader_next_batch(struct loader *ld, int32_t *inputs, int32_t *targets, int global_batch)
{
	uint64_t lo, hi, T = (uint64_t)ld->seq_len, W = ld->n_windows;

	ENSURE(global_batch >= 1);
	lo = split_point((uint64_t)global_batch, ld->dp_rank, ld->dp_size);
	hi = split_point((uint64_t)global_batch, ld->dp_rank + 1, ld->dp_size);
	for (uint64_t k = lo; k < hi; k++) {
		/* Global window k of this step, possibly in a later epoch. */
		uint64_t pos = ld->position + k;
		uint64_t epoch = ld->epoch + pos / W;
		uint64_t w = loader_permute(ld, epoch, pos % W);

		loader_read_window(ld, w, inputs + (k - lo) * T, targets + (k - lo) * T);
	}
	/* Every rank advances by the whole global batch. */
	ld->position += (uint64_t)global_batch;
	ld->epoch += ld->position / W;
	ld->position %= W;
	return (int)(hi - lo);
}

void loader_state_get(const struct loader *ld, struct loader_state *st)
{
	memset(st, 0, sizeof(*st));
	st->epoch = ld->epoch;
	st->position = ld->position;
	st->n_windows = ld->n_windows;
	st->seq_len = (uint64_t)ld->seq_len;
	st->seed = ld->seed;
}

int loader_state_set(struct loader *ld, const struct loader_state *st, char *err, size_t err_len)
{
	if (st->n_windows != ld->n_windows || st->seq_len != (uint64_t)ld->seq_len ||
	    st->seed != ld->seed) {
		snprintf(err, err_len, "data loader state: saved for %llu windows of %llu tokens "
			 "with seed %llu, but this run has %llu windows of %d tokens with seed "
			 "%llu", (unsigned long long)st->n_windows,
			 (unsigned long long)st->seq_len, (unsigned long long)st->seed,
			 (unsigned long long)ld->n_windows, ld->seq_len,
			 (unsigned long long)ld->seed);
		return -EINVAL;
	}
	if (st->position >= ld->n_windows) {
		snprintf(err, err_len, "data loader state: position %llu is not below the %llu "
			 "windows of the corpus", (unsigned long long)st->position,
			 (unsigned long long)ld->n_windows);
		return -EINVAL;
	}
	ld->epoch = st->epoch;
	ld->position = st->position;
	return 0;
}

/* ------------------------------------------------------------------ evaluation */

void loader_seq_rewind(struct loader *ld)
{
	ld->seq_next = ld->seq_begin;
}

int loader_seq_next(struct loader *ld, int32_t *inputs, int32_t *targets, int max_rows)
{
	uint64_t T = (uint64_t)ld->seq_len;
	int rows = 0;

	while (rows < max_rows && ld->seq_next < ld->seq_end) {
		loader_read_window(ld, ld->seq_next, inputs + (uint64_t)rows * T,
				   targets + (uint64_t)rows * T);
		ld->seq_next++;
		rows++;
	}
	return rows;
}

uint64_t loader_seq_windows(const struct loader *ld)
{
	return ld->seq_end - ld->seq_begin;
}

uint64_t loader_remainder_tokens(const struct loader *ld)
{
	return ld->n_tokens - 1 - ld->n_windows * (uint64_t)ld->seq_len;
}
