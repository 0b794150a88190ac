/*
 * retention: multi-scale retention on the heads a rank owns, in the three forms of
 * the model specification (docs/model.md), float32:
 *
 *   parallel   O = ((Q K^T) .* D) V                       O(T^2), a test oracle
 *   recurrent  S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n
 *   chunkwise  O_c = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c,
 *              S_{c+1} = gamma^C S_c + K_c^T diag(zeta) V_c
 *
 * with the hand-written chunkwise backward. This header has the dims every form
 * takes, the decay helpers and the chunkwise kernels; the parallel and recurrent
 * forms (and the parallel backward, an oracle) are plain loops in retention_forms.h.
 * Q, K, V, O are the projections as the model lays them out: (batch * seq_len) rows,
 * head h of Q/K at columns h*dk.., of V/O at h*dv.., with the given row strides.
 * The caller has already scaled K by 1/sqrt(dk) and rotated Q and K.
 *
 * Heads are local: head h here is GLOBAL head head_offset + h, whose decay is
 * gamma = 1 - 2^(-5 - (head_offset + h)), so a tensor-parallel rank passes its first
 * head's global index and nothing else. The chunkwise path allocates nothing of size
 * T x T; its per-chunk products run on oneDNN matmul plans. Knows nothing of MPI.
 *
 * Document resets (dims->starts, docs/model.md "Document resets"): per chunk, the
 * scores are masked across a start, the incoming state reaches only the rows before
 * the chunk's first start (xi zeroed from it on), and the state passed on holds only
 * the keys from the chunk's last start on (zeta zeroed before it, gamma^C S_c
 * dropped); backward uses the same masked tables.
 *
 * Context parallelism: the chunkwise form also runs on one piece of a longer
 * sequence (dims->seq_len is then the piece's length), split into the passes around
 * which the caller exchanges one (dk, dv) state per head. The exchange and the scans
 * over the pieces are the caller's (retention_cp.h has the scans); no kernel here
 * knows how many pieces there are or which one it runs on.
 */
#ifndef RN_RETENTION_H
#define RN_RETENTION_H

#include <stdint.h>

struct kernels_ctx;

struct retention_dims {
	int64_t batch, seq_len;  /* T must be a multiple of chunk for the chunkwise form */
	int64_t heads;           /* local heads */
	int64_t head_offset;     /* global index of local head 0 */
	int64_t dk, dv, chunk;
	int64_t ldq, ldk, ldv, ldo; /* row strides (elements) */
	/*
	 * Document starts, (batch, seq_len), nonzero where a document starts; NULL: none
	 * (then every form runs exactly as without this field). The state is zeroed
	 * before a starting token, in every form: D[n, m] = 0 when a start lies in
	 * (m, n], and a start at row 0 discards the state carried in (streaming, or
	 * s_in of a context-parallel piece). Not owned; not read by the size queries.
	 */
	const uint8_t *starts;
	/*
	 * V and dO held as bf16 alone (bf16 contexts, chunkwise form only; NULL: as
	 * float32): laid out as their float32 arrays (ldv, ldo), which the kernels then
	 * do not read (they may be NULL). Each chunk's rows are copied from these
	 * rather than converted from float32, the same bits when they are bf16_from_f32
	 * of those values. Not owned.
	 */
	const uint16_t *v16, *dout16;
};

/* gamma of global head g. */
double retention_gamma(int64_t global_head);

/*
 * gamma^n of global head g in double (pow of the exact gamma, within an ulp), for
 * the decays over whole chunks and pieces, which underflow float for long pieces and
 * small gamma (gamma_0^n < 2^-126 from n = 2750 on). A power below 2^-300 is
 * returned as 0: each one multiplies a float (|x| < 2^128) and the result is rounded
 * to float, where a product below 2^-172 is already zero, so the cut changes no
 * result and keeps subnormal doubles out of the loops.
 */
double retention_decay(int64_t global_head, int64_t n);

/* gamma^n of global head g for n = 0..n_pow-1 into pw (n_pow), each power in double
 * rounded once to float: the decay tables of every form. */
void retention_decay_powers(float *pw, int64_t global_head, int64_t n_pow);

/* Checks (ENSURE) the sizes and row strides every form needs; the chunkwise kernels
 * also check that chunk divides seq_len. */
void retention_check_dims(const struct retention_dims *dims);

/* Floats of the per-chunk state saved by the chunkwise forward for backward:
 * (batch, heads, seq_len/chunk, dk, dv), the state S_c entering each chunk. */
int64_t retention_state_floats(const struct retention_dims *dims);
/* Floats of scratch the chunkwise forward and backward need (all threads). */
int64_t retention_scratch_floats(const struct retention_dims *dims);

/*
 * Chunkwise form. saved_states (retention_state_floats) receives S_c for each chunk,
 * needed by backward; state, if not NULL, is the (batch, heads, dk, dv) state to start
 * from and receives the state after the last chunk (streaming evaluation); NULL
 * starts from zero. scratch: retention_scratch_floats floats.
 */
void retention_chunkwise_forward(struct kernels_ctx *ctx, float *o, float *saved_states,
				 float *state, float *scratch, const float *q, const float *k,
				 const float *v, const struct retention_dims *dims);

/*
 * Chunkwise backward. OVERWRITES dq, dk, dv (laid out as q, k, v). saved_states as
 * written by retention_chunkwise_forward or retention_chunkwise_output: the states
 * S_c each chunk read, including an incoming S_0, whose dQ term is formed when S_0
 * is not all zero. ds_out (batch, heads, dk, dv) is the gradient flowing into the
 * state after the last chunk from later pieces (context parallelism: from
 * retention_cp_scan_grads); NULL is zero, a sequence that ends here. It is folded in
 * as G_c = G_c(from zero) + gamma^((N-c) C) ds_out, the power in double, in the pass
 * that applies G_{c+1} to dK and dV.
 */
void retention_chunkwise_backward(struct kernels_ctx *ctx, float *dq, float *dk, float *dv,
				  float *scratch, const float *dout, const float *q,
				  const float *k, const float *v, const float *saved_states,
				  const float *ds_out, const struct retention_dims *dims);

/*
 * Context parallelism: one piece of a longer sequence in the passes of the chunkwise
 * form that surround the exchange of a state per head. Per layer, forward:
 *
 *   retention_chunkwise_states   S_c of each chunk from a zero state at the piece's
 *                                start, and the summary (the state after the piece)
 *   caller                       all-gather the summaries; retention_cp_scan_states
 *   retention_chunkwise_output   O with the incoming state s_in folded in
 *
 * and backward:
 *
 *   retention_chunkwise_state_grad   the gradient w.r.t. the piece's incoming state
 *                                    from this piece's outputs alone
 *   caller                           all-gather them; retention_cp_scan_grads
 *   retention_chunkwise_backward     with ds_out
 *
 * States and gradients of one piece are (batch, heads, dk, dv): retention_cp.h,
 * retention_cp_state_floats. scratch: retention_scratch_floats floats, as above.
 * With one piece, states then output(NULL) give bit for bit what
 * retention_chunkwise_forward gives from a zero state.
 */

/* saved_states (retention_state_floats): S_c entering each chunk, from S_0 = 0;
 * summary (batch, heads, dk, dv): the state after the last chunk. Reads K and V. */
void retention_chunkwise_states(struct kernels_ctx *ctx, float *saved_states, float *summary,
				float *scratch, const float *k, const float *v,
				const struct retention_dims *dims);

/*
 * O of every chunk, O_c = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c, with the total
 * state S_c = S_c(from zero) + gamma^(c C) s_in (the power in double, the sum rounded
 * once to float), formed in the same pass. saved_states: IN the states from
 * retention_chunkwise_states, OUT the total states, which retention_chunkwise_backward
 * reads. s_in (batch, heads, dk, dv): the state entering the piece
 * (retention_cp_scan_states), or NULL for zero.
 */
void retention_chunkwise_output(struct kernels_ctx *ctx, float *o, float *saved_states,
				const float *s_in, float *scratch, const float *q, const float *k,
				const float *v, const struct retention_dims *dims);

/*
 * ds_in (batch, heads, dk, dv): the gradient w.r.t. the state entering the piece
 * through this piece's outputs only, G_0 of the backward sweep with nothing from
 * later pieces:
 *
 *   ds_in = sum_c (diag(gamma^(c C + i + 1)) Q_c)^T dO_c
 *
 * each row weight a power in double rounded once to float (0 below FLT_MIN, a term
 * at most 2^-126 |Q| |dO|). dout laid out as O (ldo), q as Q (ldq).
 */
void retention_chunkwise_state_grad(struct kernels_ctx *ctx, float *ds_in, float *scratch,
				    const float *dout, const float *q,
				    const struct retention_dims *dims);

#endif
