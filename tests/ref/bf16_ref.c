#include "tests/ref/bf16_ref.h"

#include <math.h>
#include <string.h>

uint16_t ref_bf16_round(float x)
{
	const uint16_t sign = signbit(x) ? 0x8000 : 0;
	double ax = fabs((double)x), ulp, q, lo, frac, n, r;
	int e;
	uint32_t u;
	float rf;

	if (isnan(x)) {
		memcpy(&u, &x, sizeof(u));
		return (uint16_t)((u >> 16) | 0x40);
	}
	if (isinf(x))
		return sign | 0x7f80;
	if (ax == 0.0)
		return sign;
	/* bf16 keeps 8 significant bits: in [2^e, 2^(e+1)) its spacing is 2^(e-7), and
	 * below the smallest normal 2^-126 the spacing stays 2^-133. */
	frexp(ax, &e); /* ax = f 2^e with f in [0.5, 1): ax in [2^(e-1), 2^e) */
	e -= 1;
	if (e < -126)
		e = -126;
	ulp = ldexp(1.0, e - 7);
	q = ax / ulp; /* exact: a power-of-two scaling of a 24-bit value */
	lo = floor(q);
	frac = q - lo;
	if (frac > 0.5 || (frac == 0.5 && fmod(lo, 2.0) != 0.0))
		n = lo + 1.0;
	else
		n = lo;
	r = n * ulp;
	/* Anything that rounds to 2^128 or beyond is out of range: Inf. */
	if (r >= ldexp(1.0, 128))
		return sign | 0x7f80;
	rf = (float)r; /* exact: r has at most 8 significant bits and is in range */
	memcpy(&u, &rf, sizeof(u));
	return sign | (uint16_t)(u >> 16);
}

double ref_bf16_value(uint16_t h)
{
	int exp = (h >> 7) & 0xff, man = h & 0x7f;
	double v;

	if (exp == 0xff)
		v = man ? NAN : INFINITY;
	else if (exp == 0)
		v = ldexp((double)man, -133);
	else
		v = ldexp((double)(man | 0x80), exp - 134);
	return (h & 0x8000) ? -v : v;
}

int64_t ref_bf16_copy_mismatch(const uint16_t *copy, const float *src, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (copy[i] != ref_bf16_round(src[i]))
			return i;
	return -1;
}
