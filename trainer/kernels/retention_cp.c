#include "trainer/kernels/retention_cp.h"

#include "common/check.h"

/*
 * Both scans are a Horner recurrence per element, in double: acc = W acc + x[q]
 * with W = gamma^T_p of the pair's head, over q in the order that makes the last
 * term added the nearest piece. So each gathered value is read once, the powers
 * W^k are formed in double on the way (relative error below k 2^-53), and the sum
 * is rounded to float once. W itself comes from retention_decay: 0 when below
 * 2^-300, and then only the nearest piece contributes. W^k may still pass into the
 * subnormal doubles and to 0 on the way; their products with a float are far below
 * the float range, so the rounding to float makes them 0 whatever their precision.
 */

int64_t retention_cp_state_floats(const struct retention_dims *dims)
{
	ENSURE(dims->batch > 0 && dims->heads > 0 && dims->dk > 0 && dims->dv > 0);
	return dims->batch * dims->heads * dims->dk * dims->dv;
}

static void check_scan(int64_t piece, int64_t cp, const struct retention_dims *d)
{
	ENSURE(cp >= 1 && d->seq_len > 0 && d->head_offset >= 0);
	ENSURE(piece >= 0 && piece <= cp);
}

/* dst = sum over q = from, from + step, ..., until `to` (exclusive) of
 * W^(steps from q to the end) x[q], per element, for every (batch, head) pair.
 * Step q multiplies what came before it by the decay through piece q: W, or 0 when
 * piece q of the pair's batch row holds a document start (piece_starts). */
static void scan(float *dst, const float *x, int64_t from, int64_t to, int64_t step,
		 const uint8_t *piece_starts, const struct retention_dims *d)
{
	int64_t sdim = d->dk * d->dv, pairs = d->batch * d->heads;
	int64_t stride = retention_cp_state_floats(d);

#pragma omp parallel for schedule(static)
	for (int64_t pr = 0; pr < pairs; pr++) {
		double w = retention_decay(d->head_offset + pr % d->heads, d->seq_len);
		const float *xp = x + pr * sdim;
		float *out = dst + pr * sdim;

		const int64_t b = pr / d->heads;

		for (int64_t i = 0; i < sdim; i++) {
			double acc = 0.0;

			for (int64_t q = from; q != to; q += step) {
				/* a reset drops acc rather than multiplying it by 0 (inf) */
				if (piece_starts && piece_starts[q * d->batch + b])
					acc = 0.0;
				acc = w * acc + (double)xp[q * stride + i];
			}
			out[i] = (float)acc;
		}
	}
}

void retention_cp_scan_states(float *s_in, const float *summaries, int64_t piece, int64_t cp,
			      const uint8_t *piece_starts, const struct retention_dims *dims)
{
	check_scan(piece, cp, dims);
	/* Horner from the first piece: the summary of piece p-1 is added last, undecayed. */
	scan(s_in, summaries, 0, piece, 1, piece_starts, dims);
}

void retention_cp_scan_grads(float *ds_out, const float *ds_in_locals, int64_t piece,
			     int64_t cp, const uint8_t *piece_starts,
			     const struct retention_dims *dims)
{
	check_scan(piece, cp, dims);
	ENSURE(piece < cp);
	/* Horner from the last piece: ds_in_local(p+1) is added last, undecayed. */
	scan(ds_out, ds_in_locals, cp - 1, piece, -1, piece_starts, dims);
}
