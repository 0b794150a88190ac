/* A reference for float32 -> bfloat16 rounding, by arithmetic on the value rather
 * than on its bits (trainer/kernels/bf16.c works on the bits). Tests only. */
#ifndef RN_BF16_REF_H
#define RN_BF16_REF_H

#include <stdint.h>

/*
 * The bfloat16 bits nearest to x, ties to the even one; overflow to +-Inf as IEEE
 * narrowing does; denormals rounded like any other value (no flush). A NaN, which
 * has no "nearest", gives the project's rule: its top half with the quiet bit set.
 */
uint16_t ref_bf16_round(float x);
/* The value of bfloat16 bits h, in double. */
double ref_bf16_value(uint16_t h);
/* The first i < n where copy[i] is not ref_bf16_round(src[i]), or -1: a kernel's
 * bf16 copy of its own float32 output checked value by value. */
int64_t ref_bf16_copy_mismatch(const uint16_t *copy, const float *src, int64_t n);

#endif
