/*
 * retention: multi-scale retention on the heads a rank owns, in the three forms of
 * the model specification (docs/model.md), float32:
 *
 *   parallel   O = ((Q K^T) .* D) V                       O(T^2), a test oracle
 *   recurrent  S_n = gamma S_{n-1} + K[n]^T V[n], O[n] = Q[n] S_n
 *   chunkwise  O_c = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c,
 *              S_{c+1} = gamma^C S_c + K_c^T diag(zeta) V_c
 *
 * with the hand-written chunkwise backward (and the parallel backward as an oracle).
 * Q, K, V, O are the projections as the model lays them out: (batch * seq_len) rows,
 * head h of Q/K at columns h*dk.., of V/O at h*dv.., with the given row strides.
 * The caller has already scaled K by 1/sqrt(dk) and rotated Q and K.
 *
 * Heads are local: head h here is GLOBAL head head_offset + h, whose decay is
 * gamma = 1 - 2^(-5 - (head_offset + h)), so a tensor-parallel rank passes its first
 * head's global index and nothing else. The chunkwise path allocates nothing of size
 * T x T; its per-chunk products run on oneDNN matmul plans. Knows nothing of MPI.
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
};

/* gamma of global head g. */
double retention_gamma(int64_t global_head);

/* Floats of the per-chunk state saved by the chunkwise forward for backward:
 * (batch, heads, seq_len/chunk, dk, dv), the state S_c entering each chunk. */
int64_t retention_state_floats(const struct retention_dims *dims);
/* Floats of scratch the chunkwise forward and backward need (all threads). */
int64_t retention_scratch_floats(const struct retention_dims *dims);

/* O = parallel form. Allocates a T x T buffer per thread: tests and small T only. */
void retention_parallel_forward(float *o, const float *q, const float *k, const float *v,
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

/*
 * Chunkwise form. saved_states (retention_state_floats) receives S_c for each chunk,
 * needed by backward; state, if not NULL, is the (batch, heads, dk, dv) state to start
 * from and receives the state after the last chunk (streaming evaluation); NULL
 * starts from zero. scratch: retention_scratch_floats floats.
 */
void retention_chunkwise_forward(struct kernels_ctx *ctx, float *o, float *saved_states,
				 float *state, float *scratch, const float *q, const float *k,
				 const float *v, const struct retention_dims *dims);

/* Chunkwise backward from a zero initial state. OVERWRITES dq, dk, dv (laid out as
 * q, k, v). saved_states as written by the forward. */
void retention_chunkwise_backward(struct kernels_ctx *ctx, float *dq, float *dk, float *dv,
				  float *scratch, const float *dout, const float *q,
				  const float *k, const float *v, const float *saved_states,
				  const struct retention_dims *dims);

/* Parallel-form backward, an oracle for tests. OVERWRITES dq, dk, dv. */
void retention_parallel_backward(float *dq, float *dk, float *dv, const float *dout,
				 const float *q, const float *k, const float *v,
				 const struct retention_dims *dims);

#endif
