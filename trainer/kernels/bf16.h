/*
 * bf16: float32 -> bfloat16 conversion for the bf16 matmul path (kernels_ctx_set_bf16).
 *
 * A bfloat16 is the top half of an IEEE float32: sign, the same 8-bit exponent, 7
 * mantissa bits; stored as uint16_t. Narrowing rounds to nearest, ties to even, on
 * the bit pattern, exactly as an IEEE conversion would:
 *   - finite values round like any other value; those at or above the midpoint
 *     between the largest bf16 (0x7f7f, 3.39e38) and 2^128 become +-Inf;
 *   - denormals stay denormal (no flush to zero; the AVX512-BF16 instruction
 *     VCVTNEPS2BF16 would flush them, which is why this is plain C);
 *   - +-Inf stay +-Inf; a NaN stays a NaN: sign and top payload bits kept, quiet
 *     bit set (so a signalling NaN whose payload sits in the low half stays a NaN).
 * Plain C that the compiler vectorises; on x86-64 an AVX-512 clone is picked at load
 * time where the CPU has it (it is not required). Widening is exact (bf16 -> float32
 * appends 16 zero bits).
 *
 * Does not allocate, does not know oneDNN or the matmul shapes beyond "a strided
 * block of rows".
 */
#ifndef RN_BF16_H
#define RN_BF16_H

#include <stdint.h>

/* Values a kernel that writes an output's bf16 copy alone computes at a time: the
 * float32 values go through a buffer of this many in L1 on their way to the copy. */
enum { BF16_COPY_PIECE = 1024 };

/* One value (the definition; the array functions compute the same bits). */
uint16_t bf16_from_f32_one(float x);
float bf16_to_f32_one(uint16_t h);

/* dst[i] = bf16(src[i]) for i < n, in the calling thread. */
void bf16_from_f32(uint16_t *dst, const float *src, int64_t n);
/* dst[i] = float(src[i]) for i < n, in the calling thread (tests, debugging). */
void bf16_to_f32(float *dst, const uint16_t *src, int64_t n);

/*
 * Packs `batch` blocks of rows x cols float32 values into dense bfloat16:
 *   dst[(b * rows + r) * cols + c] = bf16(src[b * batch_stride + r * ld + c])
 * (batch_stride is unused when batch == 1). Large blocks are split over the OpenMP
 * threads when called outside a parallel region; inside one (the retention kernels
 * call matmuls from their own threads) the calling thread does it all.
 */
void bf16_pack(uint16_t *dst, const float *src, int64_t batch, int64_t batch_stride,
	       int64_t rows, int64_t cols, int64_t ld);

/* dst[r * cols + c] = src[r * ld + c]: a block of bf16 rows made dense, in the calling
 * thread (a retention chunk of an operand held as bf16). */
void bf16_copy_rows(uint16_t *dst, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld);

#endif
