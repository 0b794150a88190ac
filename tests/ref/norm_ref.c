/*
 * The backward multiplies by the Jacobian of xhat written out entry by entry,
 *   d xhat_j / d x_k = rstd * (delta_jk - 1/N - xhat_j xhat_k / N),
 * an O(N^2) loop per row rather than the kernel's folded O(N) formula, so the two
 * do not share a derivation.
 */
#include "tests/ref/norm_ref.h"

#include <math.h>
#include <stddef.h>

static void row_stats(const double *x, int64_t n, double *mean, double *rstd)
{
	double m = 0.0, v = 0.0;

	for (int64_t j = 0; j < n; j++)
		m += x[j];
	m /= (double)n;
	for (int64_t j = 0; j < n; j++)
		v += (x[j] - m) * (x[j] - m);
	v /= (double)n;
	*mean = m;
	*rstd = 1.0 / sqrt(v + REF_NORM_EPS);
}

void ref_layernorm_forward(double *dst, double *mean, double *rstd, const double *src,
			   const double *gain, const double *bias, int64_t rows,
			   int64_t width)
{
	for (int64_t r = 0; r < rows; r++) {
		const double *x = src + r * width;
		double m, rs;

		row_stats(x, width, &m, &rs);
		for (int64_t j = 0; j < width; j++) {
			double y = (x[j] - m) * rs;

			if (gain)
				y *= gain[j];
			if (bias)
				y += bias[j];
			dst[r * width + j] = y;
		}
		if (mean)
			mean[r] = m;
		if (rstd)
			rstd[r] = rs;
	}
}

void ref_layernorm_backward(double *dsrc, double *dgain, double *dbias, const double *ddst,
			    const double *src, const double *gain, int64_t rows,
			    int64_t width)
{
	const double n = (double)width;

	for (int64_t j = 0; j < width; j++) {
		if (dgain)
			dgain[j] = 0.0;
		if (dbias)
			dbias[j] = 0.0;
	}
	for (int64_t r = 0; r < rows; r++) {
		const double *x = src + r * width, *dy = ddst + r * width;
		double m, rs;

		row_stats(x, width, &m, &rs);
		for (int64_t k = 0; k < width; k++) {
			double xk = (x[k] - m) * rs, s = 0.0;

			for (int64_t j = 0; j < width; j++) {
				double xj = (x[j] - m) * rs;
				double dxhat = dy[j] * (gain ? gain[j] : 1.0);
				double jac = rs * ((j == k ? 1.0 : 0.0) - 1.0 / n - xj * xk / n);

				s += dxhat * jac;
			}
			dsrc[r * width + k] = s;
			if (dgain)
				dgain[k] += dy[k] * xk;
			if (dbias)
				dbias[k] += dy[k];
		}
	}
}

void ref_groupnorm_forward(double *dst, double *mean, double *rstd, const double *src,
			   int64_t rows, int64_t groups, int64_t group_width)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t g = 0; g < groups; g++) {
			int64_t off = (r * groups + g) * group_width;

			ref_layernorm_forward(dst + off, mean ? mean + r * groups + g : NULL,
					      rstd ? rstd + r * groups + g : NULL, src + off,
					      NULL, NULL, 1, group_width);
		}
}

void ref_groupnorm_backward(double *dsrc, const double *ddst, const double *src,
			    int64_t rows, int64_t groups, int64_t group_width)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t g = 0; g < groups; g++) {
			int64_t off = (r * groups + g) * group_width;

			ref_layernorm_backward(dsrc + off, NULL, NULL, ddst + off, src + off,
					       NULL, 1, group_width);
		}
}
