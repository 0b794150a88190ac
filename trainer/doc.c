#include "trainer/doc.h"

void doc_starts_from_tokens(const int32_t *tokens, int64_t T, int32_t eod_id, uint8_t *starts)
{
	for (int64_t t = 0; t < T; t++)
		starts[t] = t == 0 || (eod_id >= 0 && tokens[t - 1] == eod_id);
}

int64_t doc_loss_mask(const int32_t *inputs, int64_t n, int32_t eod_id, uint8_t *mask)
{
	int64_t counted = 0;

	for (int64_t t = 0; t < n; t++) {
		mask[t] = !(eod_id >= 0 && inputs[t] == eod_id);
		counted += mask[t];
	}
	return counted;
}
