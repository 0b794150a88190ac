/*
 * model: the RetNet of ../shared/design/retnet-model.md, composed from the kernels:
 * parameter registry, forward with the activations backward needs, hand-written
 * backward accumulating into the gradient block.
 *
 *   X0 = E[tokens]; per layer Y = X + MSR(LN1(X)), X = Y + FFN(LN2(Y));
 *   logits = LN_f(X) W_out; loss = mean cross-entropy against the next token.
 *
 * Tensor parallelism (Megatron-LM style) lives here and only here: a rank of a TP
 * group of P owns H/P whole heads (their columns of Wq, Wk, Wv, Wg and rows of Wo)
 * and f/P FFN columns (W1, b1 columns, W2 rows); LayerNorms, E, b2 and the LM head
 * are replicated. Per block, forward all-reduces the partial MSR output and the
 * partial FFN output over tp_comm, and backward all-reduces the partial gradients of
 * the two LayerNorm outputs: two all-reduces each way, marked where they are
 * issued. With P = 1 no MPI call is made (the model runs without MPI_Init).
 *
 * All sizes are fixed at model_init (micro-batch B, sequence length T); activations
 * are allocated once there and nothing is allocated per step. Does not own data,
 * the optimizer or any file.
 */
#ifndef RN_MODEL_H
#define RN_MODEL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "trainer/params.h"
#include "trainer/kernels/rotary.h"

struct kernels_ctx;

struct model_config {
	int64_t vocab;       /* V */
	int64_t hidden;      /* d */
	int64_t layers;      /* L */
	int64_t heads;       /* H */
	int64_t ffn_hidden;  /* f */
	int64_t chunk;       /* C */
	int64_t seq_len;     /* T, a multiple of C */
	int64_t micro_batch; /* B */
	uint64_t seed;
};

/* Where this rank sits in the tensor-parallel group. */
struct model_layout {
	int tp_rank, tp_size;
	MPI_Comm tp_comm; /* unused when tp_size is 1 */
};

enum retention_form {
	RETENTION_CHUNKWISE, /* training and evaluation */
	RETENTION_PARALLEL,  /* O(T^2) oracle */
	RETENTION_RECURRENT, /* forward only: streaming and generation */
};

/* Pointers into the flat parameter (or gradient) block for one layer; local shapes
 * with qk = (H/P) dk, vw = (H/P) dv, fl = f/P. */
struct layer_tensors {
	float *ln1_gain, *ln1_bias;   /* (d) */
	float *wq, *wk;               /* (d, qk) */
	float *wv, *wg;               /* (d, vw) */
	float *wo;                    /* (vw, d) */
	float *ln2_gain, *ln2_bias;   /* (d) */
	float *w1, *b1;               /* (d, fl), (fl) */
	float *w2, *b2;               /* (fl, d), (d) */
};

struct model_tensors {
	float *embedding;             /* (V, d) */
	struct layer_tensors *layers; /* [L] */
	float *lnf_gain, *lnf_bias;   /* (d) */
	float *lm_head;               /* (d, V) */
};

/* What the forward keeps for backward, per layer; rows M = B*T, local widths. */
struct layer_acts {
	float *x;                  /* (M, d) block input */
	float *ln1, *ln1_mean, *ln1_rstd;   /* (M, d), (M), (M) */
	float *q, *k;              /* (M, qk) rotated; k also scaled by 1/sqrt(dk) */
	float *v, *g;              /* (M, vw) value and gate pre-activation */
	float *o;                  /* (M, vw) retention output before GroupNorm */
	float *gn_mean, *gn_rstd;  /* (M, H/P) */
	float *gn;                 /* (M, vw) GroupNorm output */
	float *gated;              /* (M, vw) swish(g) * gn, the input of Wo */
	float *states;             /* (B, H/P, T/C, dk, dv) chunk states for backward */
	float *y;                  /* (M, d) after the retention residual */
	float *ln2, *ln2_mean, *ln2_rstd;   /* (M, d), (M), (M) */
	float *h_pre, *h;          /* (M, fl) FFN hidden before and after gelu */
};

/*
 * Called by model_backward as soon as a range of the flat gradient block is final
 * (the head, then each layer from the last, then the embedding), so the caller can
 * start reducing it while backward goes on. offset and count index params.grad.
 */
typedef void (*grad_ready_fn)(void *arg, size_t offset, size_t count);

struct grad_range {
	size_t offset, count;
};

struct model {
	struct model_config cfg;
	struct model_layout layout;
	int64_t dk, dv, rows;      /* d/H, 2d/H, B*T */
	int64_t heads_local;       /* H/P, global heads head_offset .. + H/P - 1 */
	int64_t head_offset;
	int64_t qk, vw, fl;        /* local widths (H/P) dk, (H/P) dv, f/P */
	enum retention_form form;
	struct param_set params;
	struct model_tensors w, dw;
	struct kernels_ctx *kernels;
	struct rotary_table rotary;

	struct layer_acts *acts;   /* [L] */
	float *x_final;            /* (M, d) output of the last block */
	float *lnf, *lnf_mean, *lnf_rstd; /* (M, d), (M), (M) */
	float *logits;             /* (M, V); holds dlogits after backward */
	float *losses;             /* (M) per-token loss */
	int32_t *inputs, *targets; /* (M) copies of the last forward's tokens */

	/* backward workspace, reused by every layer */
	float *dx;                 /* (M, d) gradient of the residual stream */
	float *dln;                /* (M, d) */
	float *dq, *dk_, *dv_, *dg;/* (M, qk), (M, qk), (M, vw), (M, vw) */
	float *dgated, *dgn, *do_; /* (M, vw) each */
	float *dh;                 /* (M, fl) */
	float *retention_scratch;
	float *recurrent_state;    /* (B, H, dk, dv) for the recurrent form */
	size_t activation_bytes;

	/* contiguous ranges of the flat blocks, in the order backward finishes them */
	struct grad_range head_range;      /* final LN and LM head */
	struct grad_range *layer_range;    /* [L] */
	struct grad_range embedding_range;
	grad_ready_fn grad_ready;          /* NULL: nobody is told */
	void *grad_ready_arg;
};

/* Validates cfg with ENSURE (callers validate user input first: config.h).
 * layout NULL: one rank. Collective over layout->tp_comm (none when P = 1). */
void model_init(struct model *m, const struct model_config *cfg,
		const struct model_layout *layout);
void model_free(struct model *m);

/* Forward on B sequences of T tokens; returns the mean loss over the B*T targets.
 * inputs, targets: (B, T). Keeps what backward needs. */
float model_forward(struct model *m, const int32_t *inputs, const int32_t *targets);

/* Backward of the last forward. ACCUMULATES into m->params.grad the gradient of
 * loss_scale * (mean loss), so micro-batches of one step add up with 1/n each. */
void model_backward(struct model *m, float loss_scale);

/* Sum of squared gradients of this rank's part of the model, each element counted
 * once across the TP group: sharded tensors summed over tp_comm, replicated ones
 * taken as they are (identical on every TP rank). Collective over tp_comm. */
double model_grad_sumsq(const struct model *m);

/* Model FLOPs of one training token (3 x forward, the spec's formula). */
double model_flops_per_token(const struct model_config *cfg);
/* Bytes of activations and workspace held by model_init (for the benchmarks). */
size_t model_activation_bytes(const struct model *m);

#endif
