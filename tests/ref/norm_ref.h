/* float64 plain-C references for LayerNorm and the per-head GroupNorm. Tests only. */
#ifndef RN_NORM_REF_H
#define RN_NORM_REF_H

#include <stdint.h>

#define REF_NORM_EPS 1e-5

/* dst = (src - mean) / sqrt(var + eps) * gain + bias per row; var is the biased one.
 * gain and bias may be NULL (no affine). mean and rstd may be NULL. */
void ref_layernorm_forward(double *dst,        /* (rows, width) */
			   double *mean,       /* (rows) or NULL */
			   double *rstd,       /* (rows) or NULL */
			   const double *src,  /* (rows, width) */
			   const double *gain, /* (width) or NULL */
			   const double *bias, /* (width) or NULL */
			   int64_t rows, int64_t width);

/* OVERWRITES dsrc, dgain, dbias (the latter two skipped when NULL). */
void ref_layernorm_backward(double *dsrc,       /* (rows, width) */
			    double *dgain,      /* (width) or NULL */
			    double *dbias,      /* (width) or NULL */
			    const double *ddst, /* (rows, width) */
			    const double *src,  /* (rows, width) */
			    const double *gain, /* (width) or NULL */
			    int64_t rows, int64_t width);

/* Per row and group: LayerNorm without affine over group_width lanes. */
void ref_groupnorm_forward(double *dst, double *mean, double *rstd, const double *src,
			   int64_t rows, int64_t groups, int64_t group_width);
/* OVERWRITES dsrc. */
void ref_groupnorm_backward(double *dsrc, const double *ddst, const double *src,
			    int64_t rows, int64_t groups, int64_t group_width);

#endif
