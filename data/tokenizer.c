#include "data/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/check.h"

void tokenizer_init_bytes(struct tokenizer *tok)
{
	memset(tok, 0, sizeof(*tok));
	memcpy(tok->id, TOKENIZER_BYTES_ID, sizeof(TOKENIZER_BYTES_ID));
	tok->vocab = TOKENIZER_BYTES_VOCAB;
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
	memcpy(tok->id, id, (size_t)(nul - id));
	tok->vocab = vocab;
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
