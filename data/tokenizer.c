#include "data/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"

void tokenizer_init_bytes(struct tokenizer *tok)
{
	memset(tok, 0, sizeof(*tok));
	tok->eod_id = -1;
	memcpy(tok->id, TOKENIZER_BYTES_ID, sizeof(TOKENIZER_BYTES_ID));
	tok->vocab = TOKENIZER_BYTES_VOCAB;
	tok->eod_id = -1;
}

#define BPE_ID_PREFIX "bpe-v1-"

/* 64-bit FNV-1a over the merge table as little-endian uint16 pairs. */
static uint64_t merges_hash(const uint16_t *merges, uint32_t n_merges)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < 2 * (size_t)n_merges; i++) {
		h = (h ^ (merges[i] & 0xffu)) * 0x100000001b3ull;
		h = (h ^ (uint64_t)(merges[i] >> 8)) * 0x100000001b3ull;
	}
	return h;
}

int tokenizer_init_bpe(struct tokenizer *tok, const uint16_t *merges, uint32_t n_merges,
		       const char *what, char *err, size_t err_len)
{
	if (n_merges == 0 || n_merges > TOKENIZER_MAX_VOCAB - TOKENIZER_BYTES_VOCAB) {
		snprintf(err, err_len, "%s: %u BPE merges: must be 1 to %d", what, n_merges,
			 TOKENIZER_MAX_VOCAB - TOKENIZER_BYTES_VOCAB);
		return -EINVAL;
	}
	uint8_t *len = xmalloc(TOKENIZER_BYTES_VOCAB + (size_t)n_merges);

	memset(len, 1, TOKENIZER_BYTES_VOCAB);
	for (uint32_t i = 0; i < n_merges; i++) {
		uint32_t limit = TOKENIZER_BYTES_VOCAB + i;
		unsigned joined;

		if (merges[2 * i] >= limit || merges[2 * i + 1] >= limit) {
			snprintf(err, err_len, "%s: BPE merge %u (%u, %u) uses an id that is not "
				 "defined before it (ids below %u)", what, i, merges[2 * i],
				 merges[2 * i + 1], limit);
			free(len);
			return -EINVAL;
		}
		joined = (unsigned)len[merges[2 * i]] + len[merges[2 * i + 1]];
		if (joined > TOKENIZER_MAX_TOKEN_BYTES) {
			snprintf(err, err_len, "%s: BPE merge %u makes an id of %u bytes, more "
				 "than a piece holds (%d)", what, i, joined,
				 TOKENIZER_MAX_TOKEN_BYTES);
			free(len);
			return -EINVAL;
		}
		len[limit] = (uint8_t)joined;
	}
	free(len);
	memset(tok, 0, sizeof(*tok));
	tok->eod_id = -1;
	tok->vocab = TOKENIZER_BYTES_VOCAB + n_merges;
	snprintf(tok->id, sizeof(tok->id), BPE_ID_PREFIX "%u-%016llx", tok->vocab,
		 (unsigned long long)merges_hash(merges, n_merges));
	tok->n_merges = n_merges;
	tok->merges = merges;
	tok->eod_id = -1;
	return 0;
}

bool tokenizer_is_bpe(const struct tokenizer *tok)
{
	return strncmp(tok->id, BPE_ID_PREFIX, strlen(BPE_ID_PREFIX)) == 0;
}

int tokenizer_from_header(struct tokenizer *tok, const char id[TOKENIZER_ID_LEN],
			  uint32_t vocab, const char *what, char *err, size_t err_len)
{
	const char *nul = memchr(id, '\0', TOKENIZER_ID_LEN);

	if (!nul || nul == id) {
		snprintf(err, err_len, "%s: tokenizer id is not a NUL-terminated string of "
			 "1 to %d characters", what, TOKENIZER_ID_LEN - 1);
		return -EINVAL;
	}
	if (vocab == 0) {
		snprintf(err, err_len, "%s: tokenizer vocabulary size is 0", what);
		return -EINVAL;
	}
	/* Copy only up to the NUL: whatever follows it is not part of the id. */
	memset(tok, 0, sizeof(*tok));
	tok->eod_id = -1; /* the caller sets a recorded one */
	memcpy(tok->id, id, (size_t)(nul - id));
	tok->vocab = vocab;
	tok->eod_id = -1;
	return 0;
}

bool tokenizer_equal(const struct tokenizer *a, const struct tokenizer *b)
{
	return a->vocab == b->vocab && strncmp(a->id, b->id, TOKENIZER_ID_LEN) == 0;
}

int tokenizer_check_same(const struct tokenizer *got, const char *got_what,
			 const struct tokenizer *want, const char *want_what, char *err,
			 size_t err_len)
{
	if (tokenizer_equal(got, want))
		return 0;
	snprintf(err, err_len,
		 "%s: tokenizer \"%.*s\" (vocab %u) does not match \"%.*s\" (vocab %u) of %s",
		 got_what, TOKENIZER_ID_LEN, got->id, got->vocab, TOKENIZER_ID_LEN, want->id,
		 want->vocab, want_what);
	return -EINVAL;
}

size_t tokenizer_encode(uint16_t *dst, const struct tokenizer *tok, const unsigned char *src,
			size_t n)
{
	/* Only the byte tokenizer exists; anything else is a caller bug. */
	ENSURE(tok->vocab == TOKENIZER_BYTES_VOCAB &&
	       strcmp(tok->id, TOKENIZER_BYTES_ID) == 0);
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
	return n;
}

int tokenizer_decode(unsigned char *dst, const struct tokenizer *tok, const int32_t *tokens,
		     size_t n)
{
	ENSURE(tok->vocab == TOKENIZER_BYTES_VOCAB &&
	       strcmp(tok->id, TOKENIZER_BYTES_ID) == 0);
	for (size_t i = 0; i < n; i++) {
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= tok->vocab)
			return -ERANGE;
		dst[i] = (unsigned char)tokens[i];
	}
	return 0;
}
