#include "tests/ref/retention_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Each form is written for one head: the pointers are at the head's first column
 * of its sequence's first row, rows are d->ld* apart, tokens are 0..seq_len-1.
 */

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

/* The decay mask with document resets, straight from its definition: gamma^(n-m)
 * for m <= n, 0 when a document starts in (m, n] (st: the row's starts, or NULL). */
static double decay(double gamma, const uint8_t *st, int64_t n, int64_t m)
{
	if (m > n)
		return 0.0;
	for (int64_t j = m + 1; st && j <= n; j++)
		if (st[j])
			return 0.0;
	return pow(gamma, (double)(n - m));
}

/* The starts of batch row b, or NULL. */
static const uint8_t *row_starts(const struct retention_dims *d, int64_t b)
{
	return d->starts ? d->starts + b * d->seq_len : NULL;
}

/* O[n] = sum_{m <= n} D[n, m] (Q[n] . K[m]) V[m] */
static void head_parallel(double *o, const double *q, const double *k, const double *v,
			  double gamma, const uint8_t *st, const struct retention_dims *d)
{
	for (int64_t n = 0; n < d->seq_len; n++) {
		double *on = o + n * d->ldo;

		for (int64_t j = 0; j < d->dv; j++)
			on[j] = 0.0;
		for (int64_t m = 0; m <= n; m++) {
			const double *vm = v + m * d->ldv;
			double a = decay(gamma, st, n, m) *
				   ddot(q + n * d->ldq, k + m * d->ldk, d->dk);

			for (int64_t j = 0; j < d->dv; j++)
				on[j] += a * vm[j];
		}
	}
}

/* S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n; S_{n-1} = 0 where a document
 * starts at n. */
static void head_recurrent(double *o, double *s, const double *q, const double *k,
			   const double *v, double gamma, const uint8_t *st,
			   const struct retention_dims *d)
{
	for (int64_t n = 0; n < d->seq_len; n++) {
		const double *qn = q + n * d->ldq, *kn = k + n * d->ldk, *vn = v + n * d->ldv;
		double *on = o + n * d->ldo;
		double g = st && st[n] ? 0.0 : gamma;

		for (int64_t i = 0; i < d->dk; i++)
			for (int64_t j = 0; j < d->dv; j++)
				s[i * d->dv + j] = g * s[i * d->dv + j] + kn[i] * vn[j];
		for (int64_t j = 0; j < d->dv; j++) {
			on[j] = 0.0;
			for (int64_t i = 0; i < d->dk; i++)
				on[j] += qn[i] * s[i * d->dv + j];
		}
	}
}

/*
 * Chunk c (rows cC .. cC+C-1, i, j inside it), from S_0 = s:
 *   O_c     = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c,   xi[i] = gamma^(i+1)
 *   S_{c+1} = gamma^C S_c + K_c^T diag(zeta) V_c,          zeta[j] = gamma^(C-1-j)
 * s receives the final state; next is dk x dv scratch.
 */
static void head_chunkwise(double *o, double *s, double *next, const double *q,
			   const double *k, const double *v, double gamma,
			   const struct retention_dims *d)
{
	int64_t cs = d->chunk, sdim = d->dk * d->dv;

	for (int64_t r0 = 0; r0 < d->seq_len; r0 += cs) {
		for (int64_t i = 0; i < cs; i++) {
			const double *qi = q + (r0 + i) * d->ldq;
			double *oi = o + (r0 + i) * d->ldo;
			double xi = pow(gamma, (double)(i + 1));

			for (int64_t jv = 0; jv < d->dv; jv++) {
				oi[jv] = 0.0;
				for (int64_t p = 0; p < d->dk; p++)
					oi[jv] += xi * qi[p] * s[p * d->dv + jv];
			}
			for (int64_t j = 0; j <= i; j++) {
				const double *vj = v + (r0 + j) * d->ldv;
				double a = pow(gamma, (double)(i - j)) *
					   ddot(qi, k + (r0 + j) * d->ldk, d->dk);

				for (int64_t jv = 0; jv < d->dv; jv++)
					oi[jv] += a * vj[jv];
			}
		}
		for (int64_t i = 0; i < sdim; i++)
			next[i] = pow(gamma, (double)cs) * s[i];
		for (int64_t j = 0; j < cs; j++) {
			const double *kj = k + (r0 + j) * d->ldk, *vj = v + (r0 + j) * d->ldv;
			double zeta = pow(gamma, (double)(cs - 1 - j));

			for (int64_t p = 0; p < d->dk; p++)
				for (int64_t jv = 0; jv < d->dv; jv++)
					next[p * d->dv + jv] += kj[p] * zeta * vj[jv];
		}
		memcpy(s, next, sizeof(double) * (size_t)sdim);
	}
}

/*
 * L = sum_n dO[n] . O[n] with O[n] = sum_{m<=n} g^(n-m) (Q[n] . K[m]) V[m]:
 *   dQ[n] = sum_{m<=n} g^(n-m) (dO[n] . V[m]) K[m]
 *   dK[m] = sum_{n>=m} g^(n-m) (dO[n] . V[m]) Q[n]
 *   dV[m] = sum_{n>=m} g^(n-m) (Q[n] . K[m]) dO[n]
 */
static void head_parallel_backward(double *dq, double *dk, double *dv, const double *dout,
				   const double *q, const double *k, const double *v,
				   double gamma, const uint8_t *st, const struct retention_dims *d)
{
	for (int64_t n = 0; n < d->seq_len; n++) {
		double *dqn = dq + n * d->ldq;

		for (int64_t i = 0; i < d->dk; i++)
			dqn[i] = 0.0;
		for (int64_t m = 0; m <= n; m++) {
			const double *km = k + m * d->ldk;
			double w = decay(gamma, st, n, m) *
				   ddot(dout + n * d->ldo, v + m * d->ldv, d->dv);

			for (int64_t i = 0; i < d->dk; i++)
				dqn[i] += w * km[i];
		}
	}
	for (int64_t m = 0; m < d->seq_len; m++) {
		const double *km = k + m * d->ldk, *vm = v + m * d->ldv;
		double *dkm = dk + m * d->ldk, *dvm = dv + m * d->ldv;

		for (int64_t i = 0; i < d->dk; i++)
			dkm[i] = 0.0;
		for (int64_t j = 0; j < d->dv; j++)
			dvm[j] = 0.0;
		for (int64_t n = m; n < d->seq_len; n++) {
			const double *qn = q + n * d->ldq, *don = dout + n * d->ldo;
			double g = decay(gamma, st, n, m);
			double wk = g * ddot(don, vm, d->dv), wv = g * ddot(qn, km, d->dk);

			for (int64_t i = 0; i < d->dk; i++)
				dkm[i] += wk * qn[i];
			for (int64_t j = 0; j < d->dv; j++)
				dvm[j] += wv * don[j];
		}
	}
}

/* Offsets of pair (b, h): its sequence's first row, the head's first column. */
#define QK_AT(d, b, h, ld) ((b) * (d)->seq_len * (ld) + (h) * (d)->dk)
#define VO_AT(d, b, h, ld) ((b) * (d)->seq_len * (ld) + (h) * (d)->dv)

void ref_retention_parallel(double *o, const double *q, const double *k, const double *v,
			    const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++)
			head_parallel(o + VO_AT(d, b, h, d->ldo), q + QK_AT(d, b, h, d->ldq),
				      k + QK_AT(d, b, h, d->ldk), v + VO_AT(d, b, h, d->ldv),
				      ref_retention_gamma(d->head_offset + h), row_starts(d, b), d);
}

void ref_retention_recurrent(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++)
			head_recurrent(o + VO_AT(d, b, h, d->ldo),
				       state + (b * d->heads + h) * d->dk * d->dv,
				       q + QK_AT(d, b, h, d->ldq), k + QK_AT(d, b, h, d->ldk),
				       v + VO_AT(d, b, h, d->ldv),
				       ref_retention_gamma(d->head_offset + h), row_starts(d, b), d);
}

void ref_retention_chunkwise(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *d)
{
	size_t sdim = (size_t)(d->dk * d->dv);
	double *s = calloc(sdim, sizeof(double)), *next = calloc(sdim, sizeof(double));

	if (d->starts) {
		fprintf(stderr, "retention_ref: the chunkwise reference has no document "
			"resets: use the parallel or recurrent one\n");
		abort();
	}
	if (!s || !next) {
		fprintf(stderr, "retention_ref: out of memory\n");
		abort();
	}
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double *st = state ? state + (b * d->heads + h) * (int64_t)sdim : NULL;

			if (st)
				memcpy(s, st, sizeof(double) * sdim);
			else
				memset(s, 0, sizeof(double) * sdim);
			head_chunkwise(o + VO_AT(d, b, h, d->ldo), s, next,
				       q + QK_AT(d, b, h, d->ldq), k + QK_AT(d, b, h, d->ldk),
				       v + VO_AT(d, b, h, d->ldv),
				       ref_retention_gamma(d->head_offset + h), d);
			if (st)
				memcpy(st, s, sizeof(double) * sdim);
		}
	free(s);
	free(next);
}

void ref_retention_parallel_backward(double *dq, double *dk, double *dv, const double *dout,
				     const double *q, const double *k, const double *v,
				     const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++)
			head_parallel_backward(dq + QK_AT(d, b, h, d->ldq),
					       dk + QK_AT(d, b, h, d->ldk),
					       dv + VO_AT(d, b, h, d->ldv),
					       dout + VO_AT(d, b, h, d->ldo),
					       q + QK_AT(d, b, h, d->ldq),
					       k + QK_AT(d, b, h, d->ldk),
					       v + VO_AT(d, b, h, d->ldv),
					       ref_retention_gamma(d->head_offset + h),
					       row_starts(d, b), d);
}

void ref_retention_state_grad(double *ds, const double *dout, const double *q,
			      const struct retention_dims *d)
{
	for (int64_t b = 0; b < d->batch; b++)
		for (int64_t h = 0; h < d->heads; h++) {
			double gamma = ref_retention_gamma(d->head_offset + h);
			double *g = ds + (b * d->heads + h) * d->dk * d->dv;
			const double *qh = q + QK_AT(d, b, h, d->ldq);
			const double *doh = dout + VO_AT(d, b, h, d->ldo);

			for (int64_t i = 0; i < d->dk * d->dv; i++)
				g[i] = 0.0;
			const uint8_t *st = row_starts(d, b);

			/* a row at or after the first document start no longer reads it */
			for (int64_t n = 0; n < d->seq_len && !(st && st[n]); n++) {
				double w = pow(gamma, (double)(n + 1));

				for (int64_t i = 0; i < d->dk; i++)
					for (int64_t j = 0; j < d->dv; j++)
						g[i * d->dv + j] += w * qh[n * d->ldq + i] *
								    doh[n * d->ldo + j];
			}
		}
}
