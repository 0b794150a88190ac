/*
 * doc: the documents inside a window of tokens, from the tokenizer's end-of-document
 * id (the end-of-document token is the last token of its document).
 *
 * Knows nothing of the model or of MPI: it turns tokens into the per-position arrays
 * that the model takes (model.h, struct model_docs): where documents start
 * (--reset-attention-mask) and which targets count (--eod-mask-loss, Megatron-LM's
 * definition). Does not read shards or tokenizers: the caller passes the id.
 */
#ifndef RN_DOC_H
#define RN_DOC_H

#include <stdint.h>

/* starts[t] = 1 where a document starts in the window tokens[0, T): at t = 0 and
 * right after each eod_id token; 0 elsewhere. eod_id -1: only t = 0. */
void doc_starts_from_tokens(const int32_t *tokens /* (T) */, int64_t T, int32_t eod_id,
			    uint8_t *starts /* (T) */);

/* mask[t] = 0 where inputs[t] is eod_id (its target, the next document's first
 * token, is not counted), 1 elsewhere. Returns the number of counted targets. */
int64_t doc_loss_mask(const int32_t *inputs /* (n) */, int64_t n, int32_t eod_id,
		      uint8_t *mask /* (n) */);

#endif
