#include "tests/ref/retention_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Row index of token t of sequence b. */
#define ROW(d, b, t) ((b) * (d)->seq_len + (t))

double ref_retention_gamma(int64_t global_head)
{
	return 1.0 - pow(2.0, (double)(-5 - global_head));
}

static double ddot(const double *x, const double *y, int64_t n)
{
	double s = 0.0;

	for (int64_t i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

static double *ref_calloc(size_t n)
{
	double *p = calloc(n, sizeof(double));

	if (!p) {
		fprintf(stderr, "retention_ref: out of memory\n");
		abort();
	}
	return p;
}

void ref_retention_parallel(double *o, const double *q, const double *k, const double *v,
			    const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double gamma = ref_retention_gamma(d->head_offset + h);

			for (int64_t n = 0; n < d->seq_len; n++) {
				const double *qn = q + ROW(d, b, n) * d->ldq + h * d->dk;
				double *on = o + ROW(d, b, n) * d->ldo + h * d->dv;

				for (int64_t j = 0; j < d->dv; j++)
					on[j] = 0.0;
				for (int64_t m = 0; m <= n; m++) {
					const double *km = k + ROW(d, b, m) * d->ldk + h * d->dk;
					const double *vm = v + ROW(d, b, m) * d->ldv + h * d->dv;
					double a = pow(gamma, (double)(n - m)) * ddot(qn, km, d->dk);

					for (int64_t j = 0; j < d->dv; j++)
						on[j] += a * vm[j];
				}
			}
		}
}

void ref_retention_recurrent(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double gamma = ref_retention_gamma(d->head_offset + h);
			double *s = state + (b * d->heads + h) * d->dk * d->dv;

			for (int64_t n = 0; n < d->seq_len; n++) {
				const double *qn = q + ROW(d, b, n) * d->ldq + h * d->dk;
				const double *kn = k + ROW(d, b, n) * d->ldk + h * d->dk;
				const double *vn = v + ROW(d, b, n) * d->ldv + h * d->dv;
				double *on = o + ROW(d, b, n) * d->ldo + h * d->dv;

				/* S_n = gamma S_{n-1} + K[n]^T V[n] */
				for (int64_t i = 0; i < d->dk; i++)
					for (int64_t j = 0; j < d->dv; j++)
						s[i * d->dv + j] = gamma * s[i * d->dv + j] +
								   kn[i] * vn[j];
				/* O[n] = Q[n] S_n */
				for (int64_t j = 0; j < d->dv; j++) {
					double acc = 0.0;

					for (int64_t i = 0; i < d->dk; i++)
						acc += qn[i] * s[i * d->dv + j];
					on[j] = acc;
				}
			}
		}
}

void ref_retention_chunkwise(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *d)
{
	int64_t cs = d->chunk, nchunks = d->seq_len / d->chunk, sdim = d->dk * d->dv;
	double *s = ref_calloc((size_t)sdim), *next = ref_calloc((size_t)sdim);

	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double gamma = ref_retention_gamma(d->head_offset + h);
			double *st = state ? state + (b * d->heads + h) * sdim : NULL;

			for (int64_t i = 0; i < sdim; i++)
				s[i] = st ? st[i] : 0.0; /* S_0 */
			for (int64_t c = 0; c < nchunks; c++) {
				int64_t r0 = ROW(d, b, c * cs);

				/* O_c = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c */
				for (int64_t i = 0; i < cs; i++) {
					const double *qi = q + (r0 + i) * d->ldq + h * d->dk;
					double *oi = o + (r0 + i) * d->ldo + h * d->dv;
					double xi = pow(gamma, (double)(i + 1));

					for (int64_t jv = 0; jv < d->dv; jv++) {
						double inter = 0.0;

						for (int64_t p = 0; p < d->dk; p++)
							inter += qi[p] * s[p * d->dv + jv];
						oi[jv] = xi * inter;
					}
					for (int64_t j = 0; j <= i; j++) {
						const double *kj = k + (r0 + j) * d->ldk + h * d->dk;
						const double *vj = v + (r0 + j) * d->ldv + h * d->dv;
						double a = pow(gamma, (double)(i - j)) *
							   ddot(qi, kj, d->dk);

						for (int64_t jv = 0; jv < d->dv; jv++)
							oi[jv] += a * vj[jv];
					}
				}
				/* S_{c+1} = gamma^C S_c + K_c^T diag(zeta) V_c */
				for (int64_t i = 0; i < sdim; i++)
					next[i] = pow(gamma, (double)cs) * s[i];
				for (int64_t j = 0; j < cs; j++) {
					const double *kj = k + (r0 + j) * d->ldk + h * d->dk;
					const double *vj = v + (r0 + j) * d->ldv + h * d->dv;
					double zeta = pow(gamma, (double)(cs - 1 - j));

					for (int64_t p = 0; p < d->dk; p++)
						for (int64_t jv = 0; jv < d->dv; jv++)
							next[p * d->dv + jv] += kj[p] * zeta * vj[jv];
				}
				memcpy(s, next, sizeof(double) * (size_t)sdim);
			}
			if (st)
				memcpy(st, s, sizeof(double) * (size_t)sdim);
		}
	free(s);
	free(next);
}

/*
 * L = sum_n dout[n] . O[n] with O[n] = sum_{m<=n} g^(n-m) (Q[n] . K[m]) V[m]:
 *   dQ[n] = sum_{m<=n} g^(n-m) (dout[n] . V[m]) K[m]
 *   dK[m] = sum_{n>=m} g^(n-m) (dout[n] . V[m]) Q[n]
 *   dV[m] = sum_{n>=m} g^(n-m) (Q[n] . K[m]) dout[n]
 */
void ref_retention_parallel_backward(double *dq, double *dk, double *dv, const double *dout,
				     const double *q, const double *k, const double *v,
				     const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double gamma = ref_retention_gamma(d->head_offset + h);

			for (int64_t n = 0; n < d->seq_len; n++) {
				const double *don = dout + ROW(d, b, n) * d->ldo + h * d->dv;
				double *dqn = dq + ROW(d, b, n) * d->ldq + h * d->dk;

				for (int64_t i = 0; i < d->dk; i++)
					dqn[i] = 0.0;
				for (int64_t m = 0; m <= n; m++) {
					const double *km = k + ROW(d, b, m) * d->ldk + h * d->dk;
					const double *vm = v + ROW(d, b, m) * d->ldv + h * d->dv;
					double w = pow(gamma, (double)(n - m)) * ddot(don, vm, d->dv);

					for (int64_t i = 0; i < d->dk; i++)
						dqn[i] += w * km[i];
				}
			}
			for (int64_t m = 0; m < d->seq_len; m++) {
				const double *km = k + ROW(d, b, m) * d->ldk + h * d->dk;
				const double *vm = v + ROW(d, b, m) * d->ldv + h * d->dv;
				double *dkm = dk + ROW(d, b, m) * d->ldk + h * d->dk;
				double *dvm = dv + ROW(d, b, m) * d->ldv + h * d->dv;

				for (int64_t i = 0; i < d->dk; i++)
					dkm[i] = 0.0;
				for (int64_t j = 0; j < d->dv; j++)
					dvm[j] = 0.0;
				for (int64_t n = m; n < d->seq_len; n++) {
					const double *qn = q + ROW(d, b, n) * d->ldq + h * d->dk;
					const double *don = dout + ROW(d, b, n) * d->ldo + h * d->dv;
					double g = pow(gamma, (double)(n - m));
					double wk = g * ddot(don, vm, d->dv);
					double wv = g * ddot(qn, km, d->dk);

					for (int64_t i = 0; i < d->dk; i++)
						dkm[i] += wk * qn[i];
					for (int64_t j = 0; j < d->dv; j++)
						dvm[j] += wv * don[j];
				}
			}
		}
}
