/*
 * rng: a counter-based generator (Philox4x32-10, Salmon et al., SC'11).
 *
 * A value is a pure function of (seed, stream, index): no state is carried from one
 * draw to the next. Parameter initialisation uses stream = rng_stream_of(tensor name)
 * and index = the element's GLOBAL row-major index, so a rank that owns a slice of a
 * tensor makes exactly the values the single-rank run makes for that slice, whatever
 * the parallel layout. Not a cryptographic generator.
 */
#ifndef RN_RNG_H
#define RN_RNG_H

#include <stdint.h>

/* FNV-1a 64-bit hash of a string: the stream id of a named tensor. */
uint64_t rng_stream_of(const char *name);
/* Four 32-bit words for (seed, stream, index). */
void rng_philox(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]);
/* Uniform in the open interval (0, 1), 24 random bits. */
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on the first two words). */
double rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

#endif
