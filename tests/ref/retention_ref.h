/*
 * float64 plain-C references for the retention tests, written straight from the
 * equations of the model specification (docs/model.md), with
 * the same data layout as trainer/kernels/retention.h (rows of batch * seq_len,
 * head h at columns h*dk / h*dv, row strides from the dims). Simple loops, no
 * tables shared with the kernels (gamma is computed here again). Tests only.
 *
 * Document resets (dims->starts): the parallel forms and their backward use
 * D[n, m] = gamma^(n-m), 0 when a start lies in (m, n], checked start by start; the
 * recurrent form zeroes the state before a starting token; the state gradient
 * stops at the first start. The chunkwise reference has none (it aborts).
 */
#ifndef RN_RETENTION_REF_H
#define RN_RETENTION_REF_H

#include <stdint.h>

#include "trainer/kernels/retention.h"

/* gamma of global head g: 1 - 2^(-5 - g). */
double ref_retention_gamma(int64_t global_head);

/* O = ((Q K^T) .* D) V per head. Writes only the heads' columns of o. */
void ref_retention_parallel(double *o, const double *q, const double *k, const double *v,
			    const struct retention_dims *dims);

/* S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n, continuing from and updating
 * state (batch, heads, dk, dv). */
void ref_retention_recurrent(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *dims);

/* The chunkwise form with xi and zeta; state (batch, heads, dk, dv) is the state to
 * start from and receives the final one, or NULL to start from zero. */
void ref_retention_chunkwise(double *o, double *state, const double *q, const double *k,
			     const double *v, const struct retention_dims *dims);

/* The gradient of sum(O .* dout) with respect to the state the sequence starts
 * from, ds (batch, heads, dk, dv): O[n] reads it as gamma^(n+1) Q[n] S, so
 * ds = sum_n gamma^(n+1) Q[n]^T dout[n]. */
void ref_retention_state_grad(double *ds, const double *dout, const double *q,
			      const struct retention_dims *dims);

/* Gradients of sum(O .* dout) through the parallel form. OVERWRITES the heads'
 * columns of dq, dk, dv. */
void ref_retention_parallel_backward(double *dq, double *dk, double *dv, const double *dout,
				     const double *q, const double *k, const double *v,
				     const struct retention_dims *dims);

#endif
