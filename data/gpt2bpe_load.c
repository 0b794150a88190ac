#include "data/gpt2bpe_load.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "data/gpt2bpe_internal.h"

#define NO_CP 0xffffu

/* ------------------------------------------------------------ byte-level map */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
 * other 68 bytes for U+0100 onwards, so that every byte is a visible character. */
static void byte_level_maps(uint16_t byte_cp[256], uint16_t cp_byte[324])
{
	int n = 0;

	for (int i = 0; i < 324; i++)
		cp_byte[i] = NO_CP;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) ||
				 (b >= 0xae && b <= 0xff);

		byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
		cp_byte[byte_cp[b]] = (uint16_t)b;
	}
}

/* Decode a NUL-terminated UTF-8 string (valid: from a JSON parser). A token of
 * the byte-level alphabet gives its bytes; any other (a special token) its own
 * UTF-8 bytes. dst holds strlen(s) bytes; returns the length. */
static size_t token_bytes_of(unsigned char *dst, const char *s, const uint16_t cp_byte[324])
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), k = 0;
	bool more;

	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(p + i, n - i, &more);
		uint32_t cp;

		if (len == 0)
			goto raw;
		cp = len == 1 ? p[i] : len == 2 ? (p[i] & 0x1fu) << 6 | (p[i + 1] & 0x3fu)
			: len == 3 ? (p[i] & 0x0fu) << 12 | (p[i + 1] & 0x3fu) << 6 |
				     (p[i + 2] & 0x3fu)
			: 0x110000;
		if (cp >= 324 || cp_byte[cp] == NO_CP)
			goto raw;
		dst[k++] = (unsigned char)cp_byte[cp];
		i += len;
	}
	return k;
raw:
	memcpy(dst, s, n);
	return n;
}

/* ------------------------------------------------------------ loading files */

/* A vocabulary being read: each id's bytes, and the merges as id pairs. */
struct build {
	uint32_t n;			/* ids 0..n-1 */
	unsigned char **bytes;		/* (n) owned, NULL: not yet given */
	uint16_t *len;			/* (n) */
	uint16_t *merges;		/* (cap_m, 2) */
	uint32_t n_merges, cap_m;
	struct bytes_map map;		/* filled once every id is known */
	uint32_t *offset;		/* (n) for the map: into a joined text */
	unsigned char *text;
	uint16_t byte_cp[256], cp_byte[324];
};

static void build_free(struct build *b)
{
	for (uint32_t i = 0; b->bytes && i < b->n; i++)
		free(b->bytes[i]);
	free(b->bytes);
	free(b->len);
	free(b->merges);
	free(b->map.slot);
	free(b->offset);
	free(b->text);
}

/* Id `id` is the token of JSON string s. */
static int build_set(struct build *b, json_int_t id, const char *s, const char *what,
		     char *err, size_t err_len)
{
	size_t n = strlen(s);

	if (id < 0 || (uint64_t)id >= b->n) {
		snprintf(err, err_len, "%s: token id %lld of \"%.40s\" is beyond the vocabulary "
			 "of %u ids (ids must be 0 to N-1, each once)", what, (long long)id, s,
			 b->n);
		return -EINVAL;
	}
	if (n == 0 || n > 65535) {
		snprintf(err, err_len, "%s: token id %lld has %zu bytes (1 to 65535)", what,
			 (long long)id, n);
		return -EINVAL;
	}
	if (b->bytes[id]) {
		snprintf(err, err_len, "%s: token id %lld is given twice (ids must be 0 to N-1, "
			 "each once)", what, (long long)id);
		return -EINVAL;
	}
	b->bytes[id] = xmalloc(n);
	b->len[id] = (uint16_t)token_bytes_of(b->bytes[id], s, b->cp_byte);
	return 0;
}

static int build_vocab(struct build *b, json_t *vocab, uint32_t extra, const char *what,
		       char *err, size_t err_len)
{
	const char *key;
	json_t *v;

	if (!json_is_object(vocab)) {
		snprintf(err, err_len, "%s: the vocabulary is not a JSON object of token: id", what);
		return -EINVAL;
	}
	if (json_object_size(vocab) + extra > TOKENIZER_MAX_VOCAB) {
		snprintf(err, err_len, "%s: %zu tokens: more than %d (ids are stored as uint16)",
			 what, json_object_size(vocab) + extra, TOKENIZER_MAX_VOCAB);
		return -EINVAL;
	}
	b->n = (uint32_t)json_object_size(vocab) + extra;
	b->bytes = xcalloc(b->n ? b->n : 1, sizeof(*b->bytes));
	b->len = xcalloc(b->n ? b->n : 1, sizeof(*b->len));
	byte_level_maps(b->byte_cp, b->cp_byte);
	json_object_foreach(vocab, key, v) {
		if (!json_is_integer(v)) {
			snprintf(err, err_len, "%s: token \"%.40s\": its id is not an integer", what,
				 key);
			return -EINVAL;
		}
		if (build_set(b, json_integer_value(v), key, what, err, err_len))
			return -EINVAL;
	}
	return 0;
}

/* Every id known: the map from bytes to ids that merges are checked with. */
static int build_map(struct build *b, const char *what, char *err, size_t err_len)
{
	size_t total = 0;

	b->offset = xmalloc(sizeof(uint32_t) * (b->n ? b->n : 1));
	for (uint32_t i = 0; i < b->n; i++) {
		if (!b->bytes[i]) {
			snprintf(err, err_len, "%s: no token has id %u (ids must be 0 to %u, each "
				 "once)", what, i, b->n - 1);
			return -EINVAL;
		}
		b->offset[i] = (uint32_t)total;
		total += b->len[i];
	}
	b->text = xmalloc(total ? total : 1);
	for (uint32_t i = 0; i < b->n; i++)
		memcpy(b->text + b->offset[i], b->bytes[i], b->len[i]);
	b->map.cap = pow2_at_least(2 * (size_t)b->n);
	b->map.slot = xcalloc(b->map.cap, sizeof(uint32_t));
	for (uint32_t i = 0; i < b->n; i++) {
		const unsigned char *p = b->text + b->offset[i];
		size_t h;

		if (bytes_find(&b->map, b->len, b->offset, b->text, p, b->len[i]) >= 0)
			continue;	/* a duplicate: refused when the table is checked */
		for (h = fnv1a(p, b->len[i], FNV_START) & (b->map.cap - 1); b->map.slot[h];
		     h = (h + 1) & (b->map.cap - 1))
			;
		b->map.slot[h] = i + 1;
	}
	return 0;
}

/* One merge "a b" (where: "FILE:LINE" or "FILE: model.merges[i]"). */
static int build_merge(struct build *b, const char *a, size_t na, const char *c, size_t nc,
		       const char *where, char *err, size_t err_len)
{
	char *s = xmalloc(na + nc + 1);
	unsigned char *ab = xmalloc(na + nc + 1), *bb = xmalloc(nc + 1);
	size_t la, lb;
	int32_t ia, ib;
	int rc = -EINVAL;

	memcpy(s, a, na);
	s[na] = '\0';
	la = token_bytes_of(ab, s, b->cp_byte);
	ia = bytes_find(&b->map, b->len, b->offset, b->text, ab, la);
	memcpy(s, c, nc);
	s[nc] = '\0';
	lb = token_bytes_of(bb, s, b->cp_byte);
	ib = bytes_find(&b->map, b->len, b->offset, b->text, bb, lb);
	if (ia < 0 || ib < 0) {
		snprintf(err, err_len, "%s: merge \"%.*s %.*s\": \"%.*s\" is not a token of the "
			 "vocabulary (the pair disagree)", where, (int)na, a, (int)nc, c,
			 ia < 0 ? (int)na : (int)nc, ia < 0 ? a : c);
		goto out;
	}
	memcpy(ab + la, bb, lb);
	if (bytes_find(&b->map, b->len, b->offset, b->text, ab, la + lb) < 0) {
		snprintf(err, err_len, "%s: merge \"%.*s %.*s\" makes \"%.*s%.*s\", which is not a "
			 "token of the vocabulary (the pair disagree)", where, (int)na, a, (int)nc,
			 c, (int)na, a, (int)nc, c);
		goto out;
	}
	if (b->n_merges == b->cap_m) {
		b->cap_m = b->cap_m ? 2 * b->cap_m : 1024;
		b->merges = realloc(b->merges, size_mul_checked(b->cap_m, 4, "merges"));
		CHECK_PTR(b->merges);
	}
	if (b->n_merges >= TOKENIZER_MAX_VOCAB) {
		snprintf(err, err_len, "%s: more than %d merges", where, TOKENIZER_MAX_VOCAB);
		goto out;
	}
	b->merges[2 * b->n_merges] = (uint16_t)ia;
	b->merges[2 * b->n_merges + 1] = (uint16_t)ib;
	b->n_merges++;
	rc = 0;
out:
	free(s);
	free(ab);
	free(bb);
	return rc;
}

/* The table of a complete build, loaded into g. */
static int build_finish(struct gpt2bpe *g, struct build *b, const char *what, char *err,
			size_t err_len)
{
	const unsigned char eod[] = GPT2BPE_EOD_TOKEN;
	const uint64_t text = b->offset && b->n ? (uint64_t)b->offset[b->n - 1] + b->len[b->n - 1] : 0;
	int32_t eod_id = bytes_find(&b->map, b->len, b->offset, b->text, eod, sizeof(eod) - 1);

	return gpt2bpe_init_vocab(g, b->n, b->len, b->text, text, b->merges, b->n_merges, eod_id,
				  what, err, err_len);
}

static json_t *load_json(const char *path, char *err, size_t err_len)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		snprintf(err, err_len, "%s: not a JSON file: %s (line %d)", path, je.text, je.line);
	return j;
}

int gpt2bpe_load_pair(struct gpt2bpe *g, const char *vocab_path, const char *merges_path,
		      char *err, size_t err_len)
{
	struct build b = {0};
	json_t *vocab = load_json(vocab_path, err, err_len);
	char *text = NULL, where[1100];
	size_t n = 0, cap = 0, got;
	unsigned line = 0;
	FILE *f;
	int rc = -EINVAL;

	memset(g, 0, sizeof(*g));
	if (!vocab)
		return -EINVAL;
	if (build_vocab(&b, vocab, 0, vocab_path, err, err_len) ||
	    build_map(&b, vocab_path, err, err_len))
		goto out;
	f = fopen(merges_path, "rb");
	if (!f) {
		snprintf(err, err_len, "%s: cannot open: %s", merges_path, strerror(errno));
		goto out;
	}
	do {
		if (n + 65536 + 1 > cap) {
			cap = 2 * cap + 65536 + 1;
			text = realloc(text, cap);
			CHECK_PTR(text);
		}
		got = fread(text + n, 1, 65536, f);
		n += got;
	} while (got > 0);
	fclose(f);
	text[n] = '\0';
	for (char *p = text, *nl; p < text + n; p = nl + 1) {
		char *sp, *end;

		nl = memchr(p, '\n', (size_t)(text + n - p));
		if (!nl)
			nl = text + n;
		end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
		line++;
		if (end == p || (line == 1 && !strncmp(p, "#version", 8)))
			continue;
		snprintf(where, sizeof(where), "%s:%u", merges_path, line);
		sp = memchr(p, ' ', (size_t)(end - p));
		if (!sp || sp == p || sp + 1 == end || memchr(sp + 1, ' ', (size_t)(end - sp - 1))) {
			snprintf(err, err_len, "%s: not two tokens separated by one space", where);
			goto out;
		}
		if (build_merge(&b, p, (size_t)(sp - p), sp + 1, (size_t)(end - sp - 1), where, err,
				err_len))
			goto out;
	}
	rc = build_finish(g, &b, vocab_path, err, err_len);
out:
	free(text);
	json_decref(vocab);
	build_free(&b);
	return rc;
}

/* tokenizer.json: the rules a GPT-2 byte-level BPE satisfies. */
static int check_json_kind(json_t *root, const char *path, char *err, size_t err_len)
{
	json_t *model = json_object_get(root, "model"), *pre, *norm, *v;
	const char *type = json_string_value(json_object_get(model, "type"));
	const char *pre_type;

	if (!json_is_object(model) || !type) {
		snprintf(err, err_len, "%s: no model.type: not a Hugging Face tokenizer.json",
			 path);
		return -EINVAL;
	}
	if (strcmp(type, "BPE")) {
		snprintf(err, err_len, "%s: model.type \"%.32s\" is not supported: only "
			 "byte-level BPE (GPT-2's kind)", path, type);
		return -EINVAL;
	}
	pre = json_object_get(root, "pre_tokenizer");
	pre_type = json_string_value(json_object_get(pre, "type"));
	if (!pre_type || strcmp(pre_type, "ByteLevel")) {
		snprintf(err, err_len, "%s: pre_tokenizer \"%.32s\" is not supported: GPT-2's "
			 "byte-level BPE needs the ByteLevel pre-tokenizer", path,
			 pre_type ? pre_type : "none");
		return -EINVAL;
	}
	if (json_is_true(json_object_get(pre, "add_prefix_space"))) {
		snprintf(err, err_len, "%s: pre_tokenizer.add_prefix_space true is not supported "
			 "(GPT-2 adds no space)", path);
		return -EINVAL;
	}
	v = json_object_get(pre, "use_regex");
	if (v && !json_is_true(v)) {
		snprintf(err, err_len, "%s: pre_tokenizer.use_regex false is not supported (GPT-2 "
			 "splits with its pattern)", path);
		return -EINVAL;
	}
	norm = json_object_get(root, "normalizer");
	if (norm && !json_is_null(norm)) {
		snprintf(err, err_len, "%s: a normalizer is not supported (GPT-2 has none)", path);
		return -EINVAL;
	}
	if (json_is_true(json_object_get(model, "byte_fallback"))) {
		snprintf(err, err_len, "%s: model.byte_fallback true is not supported (GPT-2's "
			 "vocabulary has every byte)", path);
		return -EINVAL;
	}
	return 0;
}

int gpt2bpe_load_json(struct gpt2bpe *g, const char *path, char *err, size_t err_len)
{
	struct build b = {0};
	json_t *root = load_json(path, err, err_len), *model, *merges, *added, *v;
	char what[1100], where[1150];
	uint32_t extra = 0;
	size_t i;
	int rc = -EINVAL;

	memset(g, 0, sizeof(*g));
	if (!root)
		return -EINVAL;
	if (check_json_kind(root, path, err, err_len))
		goto out;
	model = json_object_get(root, "model");
	added = json_object_get(root, "added_tokens");
	/* added tokens not in model.vocab take ids of their own */
	json_array_foreach(added, i, v) {
		const char *content = json_string_value(json_object_get(v, "content"));

		if (!content || !json_is_integer(json_object_get(v, "id"))) {
			snprintf(err, err_len, "%s: added_tokens[%zu]: needs a content string and "
				 "an integer id", path, i);
			goto out;
		}
		extra += !json_object_get(json_object_get(model, "vocab"), content);
	}
	snprintf(what, sizeof(what), "%s: model.vocab", path);
	if (build_vocab(&b, json_object_get(model, "vocab"), extra, what, err, err_len))
		goto out;
	snprintf(what, sizeof(what), "%s: added_tokens", path);
	json_array_foreach(added, i, v) {
		const char *content = json_string_value(json_object_get(v, "content"));
		json_int_t id = json_integer_value(json_object_get(v, "id"));
		json_t *in_vocab = json_object_get(json_object_get(model, "vocab"), content);

		if (in_vocab && json_integer_value(in_vocab) != id) {
			snprintf(err, err_len, "%s: \"%.40s\" has id %lld, but %lld in model.vocab",
				 what, content, (long long)id, (long long)json_integer_value(in_vocab));
			goto out;
		}
		if (!in_vocab && build_set(&b, id, content, what, err, err_len))
			goto out;
	}
	if (build_map(&b, path, err, err_len))
		goto out;
	merges = json_object_get(model, "merges");
	if (!json_is_array(merges)) {
		snprintf(err, err_len, "%s: model.merges is not an array", path);
		goto out;
	}
	json_array_foreach(merges, i, v) {
		const char *s = json_string_value(v), *a, *c, *sp;

		snprintf(where, sizeof(where), "%s: model.merges[%zu]", path, i);
		if (s) {	/* "a b" */
			sp = strchr(s, ' ');
			if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
				snprintf(err, err_len, "%s: not two tokens separated by one space",
					 where);
				goto out;
			}
			if (build_merge(&b, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), where, err,
					err_len))
				goto out;
			continue;
		}
		a = json_string_value(json_array_get(v, 0));	/* ["a", "b"] */
		c = json_string_value(json_array_get(v, 1));
		if (!a || !c || json_array_size(v) != 2) {
			snprintf(err, err_len, "%s: not \"a b\" or [\"a\", \"b\"]", where);
			goto out;
		}
		if (build_merge(&b, a, strlen(a), c, strlen(c), where, err, err_len))
			goto out;
	}
	rc = build_finish(g, &b, path, err, err_len);
out:
	json_decref(root);
	build_free(&b);
	return rc;
}
