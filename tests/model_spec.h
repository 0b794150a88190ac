/*
 * The run specification of a test model: its eight model rows in the fixtures'
 * "config" order (vocab, hidden, layers, heads, ffn, chunk, seq_length,
 * micro_batch), everything else at retnet-train's defaults. Header-only, for the
 * tests that build a model.
 */
#ifndef RN_TEST_MODEL_SPEC_H
#define RN_TEST_MODEL_SPEC_H

#include <stdint.h>

#include "trainer/spec.h"

/* test_model's tiny configuration, the one tests/fixtures/tiny_model.bin holds. */
static const int32_t test_tiny_config[8] = {256, 64, 2, 4, 128, 8, 32, 2};

static inline struct run_spec test_model_spec(const int32_t c[8], int64_t seed)
{
	struct run_spec s;

	spec_defaults(&s, SPEC_TRAIN);
	s.vocab_size = c[0];
	s.hidden_size = c[1];
	s.num_layers = c[2];
	s.num_heads = c[3];
	s.ffn_hidden_size = c[4];
	s.chunk_size = c[5];
	s.seq_length = c[6];
	s.micro_batch_size = c[7];
	s.seed = seed;
	return s;
}

#endif
