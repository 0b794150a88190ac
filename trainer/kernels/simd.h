/*
 * simd: one macro for the elementwise loops that must vectorise wider than the
 * x86-64 baseline (SSE2) without requiring more of the CPU, and the length of the
 * pieces those loops cut a row into.
 *
 * RN_SIMD_CLONES on a function compiles it twice, for x86-64-v4 (AVX-512) and for the
 * baseline, and the dynamic loader picks one at start-up (GCC/Clang function
 * multiversioning). OpenMP-outlined bodies do not inherit the clones, so the cloned
 * function is the per-thread block, called from inside the parallel loop. Clone only
 * static functions: clang names the dispatcher of an exported clone apart from the
 * function, so a call from another file does not link; export a plain wrapper.
 * Elsewhere the macro is empty and the plain loop is all there is.
 *
 * A -march=native build (RETNET_NATIVE, which defines RN_NATIVE) has no clones: the
 * whole build already targets the CPU, and GCC does not inline a native-compiled
 * helper (exp_clamped) into an x86-64-v4 clone, whose ISA is not a superset of the
 * native one; the clones would then call it per element and not vectorise.
 */
#ifndef RN_SIMD_H
#define RN_SIMD_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(RN_NATIVE)
#define RN_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define RN_SIMD_CLONES
#endif

/* The length of the piece that starts at `at` when `end` values are cut into pieces of
 * `piece` (the last one may be shorter): the kernels' loops work through a row in
 * pieces that stay in L1 (bf16 copies, exponentials). */
static inline int64_t piece_len(int64_t at, int64_t end, int64_t piece)
{
	return end - at < piece ? end - at : piece;
}

#endif
