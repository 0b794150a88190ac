/*
 * retention_cp: the scans of context parallelism over the pieces of one sequence.
 *
 * A sequence of cp * T_p tokens is cut into cp contiguous pieces of T_p tokens, one
 * per rank; piece p holds tokens p T_p .. (p+1) T_p - 1. The chunkwise kernels of
 * retention.h run on one piece; between their passes the ranks all-gather one
 * (dk, dv) state per head and batch row, and these pure functions turn what was
 * gathered into what piece p needs: the state entering it, and the gradient flowing
 * into the state it leaves. Per head they cost O(cp dk dv).
 *
 * Document resets: piece_starts (cp, batch) is nonzero where piece q of batch row b
 * holds a document start (anywhere in it, its first row included), NULL when no
 * piece does. Such a piece passes on nothing from before it: in both scans its
 * decay factor gamma^T_p becomes 0 (the kernels have already kept its summary to
 * the keys after its last start, and its ds_in_local to the rows before its first).
 *
 * Does not communicate (the all-gathers are the caller's) and never sees Q, K, V or
 * a rank: the piece index and the piece count arrive as plain ints.
 */
#ifndef RN_RETENTION_CP_H
#define RN_RETENTION_CP_H

#include <stdint.h>

#include "trainer/kernels/retention.h"

/* Floats of one piece's state or state gradient, (batch, heads, dk, dv): a summary,
 * s_in, ds_in and ds_out each. The gathered buffers hold cp of them. */
int64_t retention_cp_state_floats(const struct retention_dims *dims);

/*
 * The state entering piece p, 0 <= p <= cp (p = cp: the state after the whole
 * sequence, for a caller that carries it on):
 *
 *   s_in = sum_{q < p} gamma^(T_p (p-1-q)) summaries[q]              (zero for p = 0)
 *
 * which unrolls S_in(q+1) = gamma^T_p S_in(q) + summary(q). s_in (batch, heads, dk,
 * dv); summaries (cp, batch, heads, dk, dv), each piece's summary from
 * retention_chunkwise_states in piece order. dims: the piece's, as the kernels get
 * them (seq_len = T_p), with the local heads and head_offset of the rank.
 */
void retention_cp_scan_states(float *s_in, const float *summaries, int64_t piece, int64_t cp,
			      const uint8_t *piece_starts, const struct retention_dims *dims);

/*
 * The gradient flowing into the state after piece p, 0 <= p < cp, from the later
 * pieces:
 *
 *   ds_out = sum_{q > p} gamma^(T_p (q-p-1)) ds_in_locals[q]        (zero for p = cp-1)
 *
 * ds_out(p) is dLoss/dS_in(p+1). S_in(p+1) reaches the loss through the outputs of
 * piece p+1, giving ds_in_local(p+1), and through S_in(p+2) = gamma^T_p S_in(p+1) +
 * summary(p+1), giving gamma^T_p ds_out(p+1); unrolled, that is the sum above.
 * ds_out (batch, heads, dk, dv); ds_in_locals (cp, batch, heads, dk, dv), each
 * piece's retention_chunkwise_state_grad in piece order; dims as for the states.
 */
void retention_cp_scan_grads(float *ds_out, const float *ds_in_locals, int64_t piece,
			     int64_t cp, const uint8_t *piece_starts,
			     const struct retention_dims *dims);

#endif
