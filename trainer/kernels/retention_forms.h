/*
 * retention_forms: the parallel and recurrent forms of retention (retention.h has
 * the dims, the decays and the chunkwise form, docs/model.md the definitions):
 *
 *   parallel   O = ((Q K^T) .* D) V, and its backward     O(T^2), test oracles
 *   recurrent  S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n
 *
 * Plain loops over (batch, local head) pairs, laid out and reset
 * (dims->starts) as retention.h says. They are what the chunkwise kernels are
 * checked against, and the forms retnet-eval and retnet-generate can select; they
 * use no oneDNN plan and no scratch from the caller. No recurrent backward: training
 * runs the chunkwise form (or the parallel one, as an oracle).
 * Knows nothing of MPI.
 */
#ifndef RN_RETENTION_FORMS_H
#define RN_RETENTION_FORMS_H

#include "trainer/kernels/retention.h"

/* O = parallel form: O(T^2) time, two rows of T floats allocated per thread; tests,
 * evaluation and small T only. */
void retention_parallel_forward(float *o, const float *q, const float *k, const float *v,
				const struct retention_dims *dims);

/* Parallel-form backward, an oracle for tests. OVERWRITES dq, dk, dv. */
void retention_parallel_backward(float *dq, float *dk, float *dv, const float *dout,
				 const float *q, const float *k, const float *v,
				 const struct retention_dims *dims);

/*
 * Recurrent form over seq_len tokens, continuing from `state` (batch, heads, dk, dv),
 * which it updates in place (zero it for a fresh sequence). Constant memory per token.
 * Within a call the state is carried in double, decayed by the exact gamma, and
 * rounded to float once at the end, so a head whose gamma rounds to 1.0f (global
 * head 20 on) still decays; a caller that feeds one token per call (generation)
 * rounds the state once per token.
 */
void retention_recurrent_forward(float *o, float *state, const float *q, const float *k,
				 const float *v, const struct retention_dims *dims);

#endif
