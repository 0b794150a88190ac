/*
 * norm: LayerNorm (learned gain and bias) and the per-head GroupNorm of retention
 * (a LayerNorm over each head's dv lanes, no gain or bias) with the swish gate that
 * follows it, forward and backward, in float32 with OpenMP over rows. Forward saves
 * the per-row mean and 1/std for backward, as llm.c does. Knows nothing of MPI or of
 * the model's shapes.
 *
 * A kernel whose output a bf16 matmul reads next can also write that output's
 * bfloat16 copy (bf16.h, the same bits as bf16_from_f32 of the float32 output), row
 * by row while the row is in cache, so the matmul need not read the float32 output
 * again to convert it; NULL leaves it out.
 */
#ifndef RN_NORM_H
#define RN_NORM_H

#include <stdint.h>

#define NORM_EPS 1e-5f

/* dst = (src - mean) * rstd * gain + bias, per row over `width` values. dst NULL
 * writes the bf16 copy alone (for bf16 products, which read nothing else). */
void layernorm_forward(float *dst,        /* (rows, width), or NULL */
		       uint16_t *dst16,   /* (rows, width) bf16(dst), or NULL */
		       float *mean,       /* (rows) saved for backward */
		       float *rstd,       /* (rows) saved for backward */
		       const float *src,  /* (rows, width) */
		       const float *gain, /* (width) */
		       const float *bias, /* (width) */
		       int64_t rows, int64_t width);

/* ACCUMULATES: dsrc += ..., dgain += ..., dbias += ... */
void layernorm_backward(float *dsrc,        /* (rows, width) */
			uint16_t *dsrc16,   /* (rows, width) bf16(dsrc) after, or NULL */
			float *dgain,       /* (width) */
			float *dbias,       /* (width) */
			const float *ddst,  /* (rows, width) */
			const float *src,   /* (rows, width) the forward input */
			const float *gain,  /* (width) */
			const float *mean,  /* (rows) */
			const float *rstd,  /* (rows) */
			int64_t rows, int64_t width);

/*
 * Retention's gated GroupNorm: per row and group (head) g, over group_width lanes,
 *   n[g] = (src[g] - mean) * rstd   (a LayerNorm without gain or bias)
 *   dst  = swish(gate) * n,         swish(z) = z * sigmoid(z)
 * in one pass, n never stored: backward forms it again from src and the statistics,
 * which are kept in double so that it is the same bits as in forward. dst NULL writes
 * the bf16 copy alone (for bf16 products, which read nothing else).
 */
void gated_groupnorm_forward(float *dst,        /* (rows, groups * group_width), or NULL */
			     uint16_t *dst16,   /* bf16(dst), or NULL */
			     double *mean,      /* (rows, groups) saved for backward */
			     double *rstd,      /* (rows, groups) saved for backward */
			     const float *src,  /* (rows, groups * group_width) */
			     const float *gate, /* (rows, groups * group_width) */
			     int64_t rows, int64_t groups, int64_t group_width);

/* OVERWRITES dgate and dsrc. dgate or dsrc NULL writes its bf16 copy alone. */
void gated_groupnorm_backward(float *dgate,       /* (rows, groups * group_width), or NULL */
			      uint16_t *dgate16,  /* bf16(dgate), or NULL */
			      float *dsrc,        /* (rows, groups * group_width), or NULL */
			      uint16_t *dsrc16,   /* bf16(dsrc), or NULL */
			      const float *ddst,  /* (rows, groups * group_width) */
			      const float *src,   /* forward's src */
			      const float *gate,  /* forward's gate */
			      const double *mean, /* (rows, groups) */
			      const double *rstd, /* (rows, groups) */
			      int64_t rows, int64_t groups, int64_t group_width);

#endif
