#include "common/rng.h"

#include <math.h>

#define RNG_TWO_PI 6.283185307179586476925286766559

uint64_t rng_stream_of(const char *name)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *name; name++) {
		h ^= (unsigned char)*name;
		h *= 1099511628211ULL;
	}
	return h;
}

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
	uint64_t p = (uint64_t)a * b;

	*hi = (uint32_t)(p >> 32);
	return (uint32_t)p;
}

void rng_philox(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4])
{
	/* counter = (index, stream), key = seed: distinct streams never share a counter. */
	uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32);
	uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
	uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);

	for (int round = 0; round < 10; round++) {
		uint32_t hi0, hi1;
		uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
		uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
		uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;

		c0 = n0;
		c1 = n1;
		c2 = n2;
		c3 = n3;
		k0 += 0x9E3779B9u;
		k1 += 0xBB67AE85u;
	}
	out[0] = c0;
	out[1] = c1;
	out[2] = c2;
	out[3] = c3;
}

static inline double to_open_unit(uint32_t w)
{
	return ((double)(w >> 8) + 0.5) * (1.0 / 16777216.0);
}

double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
	uint32_t w[4];

	rng_philox(seed, stream, index, w);
	return to_open_unit(w[0]);
}

double rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
	uint32_t w[4];
	double u1, u2;

	rng_philox(seed, stream, index, w);
	u1 = ((double)w[0] + 0.5) * (1.0 / 4294967296.0);
	u2 = ((double)w[1] + 0.5) * (1.0 / 4294967296.0);
	return sqrt(-2.0 * log(u1)) * cos(RNG_TWO_PI * u2);
}
