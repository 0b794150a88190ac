#include "trainer/kernels/retention_forms.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/retention.h"

/* These forms read V and dO in float32 only (plain loops; no bf16 products). */
static void check_float_dims(const struct retention_dims *d)
{
	retention_check_dims(d);
	ENSURE(!d->v16 && !d->dout16);
}

/*
 * Work is split over (batch, head) pairs, as in retention.c: each pair touches only
 * its own columns of Q, K, V, O and its own state, so pairs run in parallel without
 * synchronisation. Plain loops, no oneDNN: these forms are the readable statement
 * of what the chunkwise kernels compute.
 */

/* ---------------------------------------------------------------------------------
 * Recurrent form: S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n.
 *
 * The state is carried in double through the tokens of a call and rounded to float
 * once at its end. A float state multiplied by gamma at every token cannot decay a
 * head whose 1 - gamma is below half a float ulp: gamma rounds to 1.0f from global
 * head 20 on (1 - 2^-25), and even an exact gamma times S rounds back to S. A
 * double resolves 2^-53: the decay 2^-(5+h) of every head a model can have.
 *
 * Row i of S depends only on row i of the earlier S, so each row (in blocks of
 * REC_BLOCK columns, a double copy on the stack) is swept over all tokens, and O[n]
 * gets its terms q[n, i] S_n[i, :] in the order i = 0, 1, ..., as a dot product
 * would add them. Nothing is allocated.
 */
enum { REC_BLOCK = 64 };

static void recurrent_pair(float *o, float *st, const float *q, const float *k,
			   const float *v, const struct retention_dims *d, int64_t b, int64_t h)
{
	const double gamma = retention_gamma(d->head_offset + h);
	int64_t row0 = b * d->seq_len;
	const uint8_t *docs = d->starts ? d->starts + row0 : NULL;
	double s[REC_BLOCK];

	for (int64_t t = 0; t < d->seq_len; t++)
		memset(o + (row0 + t) * d->ldo + h * d->dv, 0, sizeof(float) * d->dv);
	for (int64_t i = 0; i < d->dk; i++)
		for (int64_t j0 = 0; j0 < d->dv; j0 += REC_BLOCK) {
			int64_t nb = d->dv - j0 < REC_BLOCK ? d->dv - j0 : REC_BLOCK;
			float *srow = st + i * d->dv + j0;

			for (int64_t j = 0; j < nb; j++)
				s[j] = srow[j];
			for (int64_t t = 0; t < d->seq_len; t++) {
				int64_t row = row0 + t;
				double ki = k[row * d->ldk + h * d->dk + i];
				double qi = q[row * d->ldq + h * d->dk + i];
				const float *vr = v + row * d->ldv + h * d->dv + j0;
				float *orow = o + row * d->ldo + h * d->dv + j0;

				/* a document starts here: nothing before it is kept */
				if (docs && docs[t])
					memset(s, 0, sizeof(double) * (size_t)nb);
				for (int64_t j = 0; j < nb; j++) {
					s[j] = gamma * s[j] + ki * (double)vr[j];
					orow[j] = (float)((double)orow[j] + qi * s[j]);
				}
			}
			for (int64_t j = 0; j < nb; j++)
				srow[j] = (float)s[j];
		}
}

void retention_recurrent_forward(float *o, float *state, const float *q, const float *k,
				 const float *v, const struct retention_dims *dims)
{
	int64_t pairs = dims->batch * dims->heads;

	check_float_dims(dims);
#pragma omp parallel for schedule(static)
	for (int64_t pr = 0; pr < pairs; pr++)
		recurrent_pair(o, state + pr * dims->dk * dims->dv, q, k, v, dims,
			       pr / dims->heads, pr % dims->heads);
}

/* ---------------------------------------------------------------------------------
 * Parallel form and its backward: test oracles, O(T^2) per pair, plain loops.
 */

static float dot(const float *x, const float *y, int64_t n)
{
	float s = 0.0f;

	for (int64_t i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

/* y += a x */
static void axpy(float *y, float a, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

void retention_parallel_forward(float *o, const float *q, const float *k, const float *v,
				const struct retention_dims *dims)
{
	const struct retention_dims *d = dims;
	int64_t pairs = d->batch * d->heads, t_len = d->seq_len;

	check_float_dims(d);
#pragma omp parallel
	{
		/* A row of masked scores and the decay table, per thread. */
		float *a = xmalloc(sizeof(float) * (size_t)t_len);
		float *pw = xmalloc(sizeof(float) * (size_t)t_len);

#pragma omp for schedule(static)
		for (int64_t pr = 0; pr < pairs; pr++) {
			int64_t b = pr / d->heads, h = pr % d->heads;
			int64_t base = b * t_len;

			const uint8_t *st = d->starts ? d->starts + base : NULL;
			int64_t seg = 0; /* the last document start at or before n */

			retention_decay_powers(pw, d->head_offset + h, t_len);
			for (int64_t n = 0; n < t_len; n++) {
				const float *qn = q + (base + n) * d->ldq + h * d->dk;
				float *on = o + (base + n) * d->ldo + h * d->dv;

				if (st && st[n])
					seg = n;
				for (int64_t m = seg; m <= n; m++)
					a[m] = pw[n - m] *
					       dot(qn, k + (base + m) * d->ldk + h * d->dk, d->dk);
				memset(on, 0, sizeof(float) * d->dv);
				for (int64_t m = seg; m <= n; m++)
					axpy(on, a[m], v + (base + m) * d->ldv + h * d->dv, d->dv);
			}
		}
		free(a);
		free(pw);
	}
}

/* Zero the head columns [h*w, (h+1)*w) of `rows` rows of x (row stride ld). */
static void zero_head(float *x, int64_t rows, int64_t ld, int64_t col0, int64_t w)
{
	for (int64_t r = 0; r < rows; r++)
		memset(x + r * ld + col0, 0, sizeof(float) * w);
}

/*
 * With A = (Q K^T) .* D and dA = (dO V^T) .* D:
 * dQ = dA K, dK = dA^T Q, dV = A^T dO, one score (n, m) at a time.
 */
void retention_parallel_backward(float *dq, float *dk, float *dv, const float *dout,
				 const float *q, const float *k, const float *v,
				 const struct retention_dims *dims)
{
	const struct retention_dims *d = dims;
	int64_t pairs = d->batch * d->heads, t_len = d->seq_len;

	check_float_dims(d);
#pragma omp parallel
	{
		float *pw = xmalloc(sizeof(float) * (size_t)t_len);

#pragma omp for schedule(static)
		for (int64_t pr = 0; pr < pairs; pr++) {
			int64_t b = pr / d->heads, h = pr % d->heads;
			int64_t base = b * t_len;
			int64_t cq = h * d->dk, cv = h * d->dv;
			const uint8_t *st = d->starts ? d->starts + base : NULL;
			int64_t seg = 0; /* the last document start at or before n */

			retention_decay_powers(pw, d->head_offset + h, t_len);
			zero_head(dk + base * d->ldk, t_len, d->ldk, cq, d->dk);
			zero_head(dv + base * d->ldv, t_len, d->ldv, cv, d->dv);
			for (int64_t n = 0; n < t_len; n++) {
				const float *qn = q + (base + n) * d->ldq + cq;
				const float *don = dout + (base + n) * d->ldo + cv;
				float *dqn = dq + (base + n) * d->ldq + cq;

				memset(dqn, 0, sizeof(float) * d->dk);
				if (st && st[n])
					seg = n;
				for (int64_t m = seg; m <= n; m++) {
					const float *km = k + (base + m) * d->ldk + cq;
					const float *vm = v + (base + m) * d->ldv + cv;
					float a = pw[n - m] * dot(qn, km, d->dk);
					float da = pw[n - m] * dot(don, vm, d->dv);

					axpy(dqn, da, km, d->dk);
					axpy(dk + (base + m) * d->ldk + cq, da, qn, d->dk);
					axpy(dv + (base + m) * d->ldv + cv, a, don, d->dv);
				}
			}
		}
		free(pw);
	}
}
