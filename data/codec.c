#include "data/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "data/textfile.h"

int codec_init(struct codec *c, const struct tokenizer *tok, const char *what, char *err,
	       size_t err_len)
{
	struct tokenizer check;

	memset(c, 0, sizeof(*c));
	for (int i = 0; i < 256; i++)
		c->byte_text[i] = (unsigned char)i;
	if (gpt2bpe_is(tok)) {
		if (gpt2bpe_init(&c->gpt2, tok, what, err, err_len))
			return -EINVAL;
		c->tok = c->gpt2.tok;
		c->is_gpt2 = true;
		return 0;
	}
	if (!tokenizer_is_bpe(tok)) {
		struct tokenizer bytes;

		tokenizer_init_bytes(&bytes);
		if (!tokenizer_equal(tok, &bytes)) {
			snprintf(err, err_len, "%s: tokenizer \"%.*s\" (vocab %u) is not one this "
				 "build knows (bytes-v1, bpe-v1-... or gpt2bpe-...)", what, TOKENIZER_ID_LEN,
				 tok->id, tok->vocab);
			return -EINVAL;
		}
		c->tok = bytes;
		return 0;
	}
	if (!tok->merges || tok->n_merges == 0) {
		snprintf(err, err_len, "%s: tokenizer \"%.*s\" has no merge table here", what,
			 TOKENIZER_ID_LEN, tok->id);
		return -EINVAL;
	}
	/* Whoever read the table checked it; a table that is not its id's is refused
	 * here too rather than trusted. */
	if (tokenizer_init_bpe(&check, tok->merges, tok->n_merges, what, err, err_len))
		return -EINVAL;
	if (!tokenizer_equal(&check, tok)) {
		snprintf(err, err_len, "%s: the merge table gives tokenizer \"%s\", not \"%.*s\"",
			 what, check.id, TOKENIZER_ID_LEN, tok->id);
		return -EINVAL;
	}
	bpe_init(&c->bpe, &check);
	c->tok = c->bpe.tok;
	c->is_bpe = true;
	return 0;
}

void codec_free(struct codec *c)
{
	if (c->is_bpe)
		bpe_free(&c->bpe);
	if (c->is_gpt2)
		gpt2bpe_free(&c->gpt2);
	memset(c, 0, sizeof(*c));
}

const unsigned char *codec_token_bytes(const struct codec *c, uint32_t id, size_t *len)
{
	ENSURE(id < c->tok.vocab);
	if (c->is_gpt2)
		return gpt2bpe_token_bytes(&c->gpt2, id, len);
	if (c->is_bpe)
		return bpe_token_bytes(&c->bpe, id, len);
	*len = 1;
	return &c->byte_text[id];
}

void codec_stream_init(struct codec_stream *s, const struct codec *c)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	if (c->is_bpe)
		bpe_encoder_init(&s->bpe, &c->bpe);
	if (c->is_gpt2)
		gpt2bpe_encoder_init(&s->gpt2, &c->gpt2);
}

size_t codec_stream_encode(struct codec_stream *s, const unsigned char *src, size_t n,
			   bool final, uint16_t *dst, uint64_t *bytes)
{
	if (s->c->is_gpt2)
		return gpt2bpe_encode(&s->gpt2, src, n, final, dst, bytes);
	if (s->c->is_bpe)
		return bpe_encode(&s->bpe, src, n, final, dst, bytes);
	*bytes = n;
	return n ? tokenizer_encode(dst, &s->c->tok, src, n) : 0;
}

/* ---- a whole corpus ------------------------------------------------------- */

struct gather_ids {
	struct codec_stream stream;
	bool first;		/* the next chunk is a file's first */
	uint16_t *ids;		/* (cap) */
	uint64_t n, cap, bytes, max_bytes;
	const char *path;	/* the file being read */
	char *err;
	size_t err_len;
};

/* Room for n more text bytes' ids. */
static int reserve_ids(struct gather_ids *g, size_t n)
{
	uint64_t need = g->n + n + CODEC_HOLD_MAX;

	if (need <= g->cap)
		return 0;
	while (g->cap < need)
		g->cap = g->cap ? 2 * g->cap : (uint64_t)1 << 20;
	g->ids = realloc(g->ids, size_mul_checked((size_t)g->cap, sizeof(*g->ids), "corpus"));
	if (!g->ids) {
		snprintf(g->err, g->err_len, "%s: out of memory for %llu tokens", g->path,
			 (unsigned long long)g->cap);
		return -1;
	}
	return 0;
}

static int gather_chunk(void *ctx, const unsigned char *buf, size_t n)
{
	struct gather_ids *g = ctx;
	uint64_t done;

	if (g->first && textfile_is_shard(buf, n)) {
		snprintf(g->err, g->err_len, "%s: a token shard, not text (give shards as files "
			 "of their own, not in a directory)", g->path);
		return -1;
	}
	g->first = false;
	if (n > g->max_bytes - g->bytes) {
		snprintf(g->err, g->err_len, "%s: more than %llu bytes of text in the corpus",
			 g->path, (unsigned long long)g->max_bytes);
		return -1;
	}
	g->bytes += n;
	if (reserve_ids(g, n))
		return -1;
	g->n += codec_stream_encode(&g->stream, buf, n, false, g->ids + g->n, &done);
	return 0;
}

int codec_encode_inputs(const struct codec *c, const char *const *paths, int npaths,
			uint64_t max_bytes, uint16_t **tokens, uint64_t *n_tokens,
			uint64_t *bytes, char *err, size_t err_len)
{
	struct text_inputs in = {0};
	struct gather_ids g = {.max_bytes = max_bytes, .err = err, .err_len = err_len};
	unsigned char *buf = NULL;
	uint64_t done;
	int rc = -1;

	codec_stream_init(&g.stream, c);
	if (textfile_expand(&in, paths, npaths, err, err_len))
		goto out;
	buf = xmalloc(TEXTFILE_CHUNK_BYTES);
	for (int i = 0; i < in.n; i++) {
		g.path = in.v[i].path;
		g.first = true;
		if (textfile_read(in.v[i].path, buf, gather_chunk, &g, &in.v[i].bytes,
				  &in.v[i].gzip, err, err_len))
			goto out;
		if (in.v[i].bytes == 0) {
			snprintf(err, err_len, "%s: empty file (no text)%s", in.v[i].path,
				 in.v[i].gzip ? " after decompression" : "");
			goto out;
		}
	}
	if (reserve_ids(&g, 0))
		goto out;
	g.n += codec_stream_encode(&g.stream, NULL, 0, true, g.ids + g.n, &done);
	*tokens = g.ids;
	*n_tokens = g.n;
	*bytes = g.bytes;
	g.ids = NULL;
	rc = 0;
out:
	free(g.ids);
	free(buf);
	textfile_inputs_free(&in);
	return rc;
}
