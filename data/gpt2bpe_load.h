/*
 * gpt2bpe_load: GPT-2's tokenizer (data/gpt2bpe.h) read from the files users
 * already have: a vocab.json + merges.txt pair (GPT-2's, Megatron-LM's
 * --vocab-file/--merge-file) or a Hugging Face tokenizer.json of the same kind.
 * Both give the same struct gpt2bpe, table and tokenizer id as gpt2bpe_init does
 * from a table.
 *
 * A module of its own because it is the only part of the tokenizer that reads
 * JSON: jansson is included in gpt2bpe_load.c and nowhere else, and the table,
 * encoder and decoder (gpt2bpe.c) read without the parsing beside them.
 *
 * Does not: write files, or accept any other kind of tokenizer.json (WordPiece,
 * Unigram, another pre-tokenizer, a normalizer).
 */
#ifndef RN_GPT2BPE_LOAD_H
#define RN_GPT2BPE_LOAD_H

#include <stddef.h>

#include "data/gpt2bpe.h"

/*
 * Load a GPT-2 vocab.json + merges.txt pair. Returns 0, or -EINVAL with one line
 * "<file>: <rule>" in err: unreadable or not JSON, an id that is not 0..N-1 each
 * once ("beyond the vocabulary"), a byte without a token, two ids with the same
 * bytes, a merge line that is not two tokens of the vocabulary or whose result is
 * not in it (the pair disagree), more than TOKENIZER_MAX_VOCAB ids.
 */
int gpt2bpe_load_pair(struct gpt2bpe *g, const char *vocab_path, const char *merges_path,
		      char *err, size_t err_len);

/*
 * Load a Hugging Face tokenizer.json whose model.type is "BPE" with a ByteLevel
 * pre-tokenizer (add_prefix_space false), no normalizer, merges as "a b" strings
 * or [a, b] pairs; added_tokens join the vocabulary by their ids. Anything else
 * (WordPiece, Unigram, another pre-tokenizer) is one line naming the file and the
 * rule, -EINVAL.
 */
int gpt2bpe_load_json(struct gpt2bpe *g, const char *path, char *err, size_t err_len);

#endif
