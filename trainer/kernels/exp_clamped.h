/*
 * exp_clamped: exp(clamp(x, EXP_MIN, EXP_MAX)) with no call and no branch, so that
 * the loops that use it vectorise (a call to libm's expf keeps a loop scalar, and
 * -ffast-math, which would let GCC call a vector libm, is never used here). Inline in
 * this header so that each of the AVX-512 and baseline clones of a kernel
 * (simd.h) gets its own copy.
 *
 * exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2
 * split in two so that n * LN2_HI is exact), exp(r) by the Cephes expf polynomial
 * (within 2 ulp; tests/test_activation.c and tests/test_xent.c hold the kernels to
 * their float64 references), and 2^n built in the exponent bits. Rounding adds and
 * subtracts 1.5 * 2^23, which leaves the nearest integer for |v| < 2^22 (IEEE
 * round-to-nearest).
 *
 * The range: below -87 exp is under 1.7e-38, next to the smallest normal float, and
 * clamping there keeps 2^n a normal number. Above 80 (exp(80) ~ 5.5e34, far from
 * float overflow) gelu's and the swish gate's sigmoid s = 1 / (1 + e) is below 2e-35
 * either way, and an infinite e would turn their e s into inf * 0 = NaN.
 */
#ifndef RN_EXP_CLAMPED_H
#define RN_EXP_CLAMPED_H

#include <stdint.h>
#include <string.h>

#define EXP_MAX 80.0f
#define EXP_MIN -87.0f

static inline float exp_clamped(float x)
{
	const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f,
		    ln2_lo = -2.12194440e-4f, round_magic = 12582912.0f;
	float n, r, p, scale;
	int32_t bits;

	x = x < EXP_MIN ? EXP_MIN : x;
	x = x > EXP_MAX ? EXP_MAX : x;
	n = (x * log2e + round_magic) - round_magic;
	r = (x - n * ln2_hi) - n * ln2_lo;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	bits = ((int32_t)n + 127) << 23; /* n in [-126, 116]: a normal 2^n */
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

#endif
