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
 * A pipeline stage holds a contiguous range of layers (trainer/model_setup.c says
 * which), the embedding on the first stage and the final LN, LM head and loss on
 * the last. It keeps activations for `slots` micro-batches in flight (1F1B needs
 * at most P - stage); the caller moves activations and their gradients between
 * stages (model_stage_input/output, model_boundary_grad).
 *
 * All sizes are fixed at model_init (micro-batch B, sequence length T); activations
 * are allocated once there and nothing is allocated per step. Does not own data,
 * the optimizer, the pipeline schedule or any file.
 */
#ifndef RN_MODEL_H
#define RN_MODEL_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trainer/params.h"
#include "trainer/kernels/rotary.h"

struct kernels_ctx;
struct buffer_list;
struct matmul_kept;

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
	/* Keep only each block's input per micro-batch; backward recomputes the rest of
	 * the block's activations, one layer at a time, in one shared set of buffers. */
	bool recompute;
};

/* Where this rank sits: its tensor-parallel group and its pipeline stage. */
struct model_layout {
	int tp_rank, tp_size;
	MPI_Comm tp_comm; /* unused when tp_size is 1 */
	int pp_rank, pp_size;
	int slots;        /* micro-batches whose activations are kept at once (>= 1) */
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

/* The stage's tensors; embedding only on the first stage, the rest of the head
 * only on the last (NULL elsewhere); layers[i] is global layer first_layer + i. */
struct model_tensors {
	float *embedding;             /* (V, d) */
	struct layer_tensors *layers; /* [num_layers] */
	float *lnf_gain, *lnf_bias;   /* (d) */
	float *lm_head;               /* (d, V) */
};

enum { KEPT_LN1, KEPT_GATED, KEPT_LN2, KEPT_H, KEPT_COUNT };

/* What the forward keeps for backward, per layer; rows M = B*T, local widths.
 * With cfg.recompute every layer of every slot has its own x and shares the rest. */
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
	/* bf16 copies of the inputs of Wq..Wg, Wo, W1 and W2 made in
	 * forward and read again for their dW in backward (bf16 contexts only) */
	struct matmul_kept *kept[KEPT_COUNT];
};

/* One micro-batch in flight on this stage. */
struct micro_acts {
	struct layer_acts *layers; /* [num_layers] */
	float *out;                /* (M, d) output of the stage's last block */
	int32_t *inputs;           /* (M) first stage: the tokens */
	int32_t *targets;          /* (M) last stage: the next tokens */
	/* last stage only */
	float *lnf, *lnf_mean, *lnf_rstd; /* (M, d), (M), (M) */
	float *logits;             /* (M, V); dlogits after backward */
	float *losses;             /* (M) per-token loss */
	struct matmul_kept *lnf_kept; /* bf16 copy of lnf, the LM head's input */
};

/*
 * Called by backward as soon as a range of the flat gradient block is final
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
	int64_t first_layer, num_layers; /* this stage's layers */
	bool first_stage, last_stage;
	enum retention_form form;
	struct param_set params;
	struct model_tensors w, dw;
	struct kernels_ctx *kernels;
	struct rotary_table rotary;

	struct micro_acts *micro;  /* [layout.slots] */
	/* cfg.recompute: whose activations the shared buffers hold now (-1: none) */
	int recompute_slot;
	int64_t recompute_layer;

	/* backward workspace, shared by every layer and micro-batch */
	float *dx;                 /* (M, d) gradient of the residual stream */
	float *dln;                /* (M, d) */
	float *dq, *dk_, *dv_, *dg;/* (M, qk), (M, qk), (M, vw), (M, vw) */
	float *dgated, *dgn, *do_; /* (M, vw) each */
	float *dh;                 /* (M, fl) */
	float *retention_scratch;
	float *stream_state;       /* (num_layers, B, H/P, dk, dv) retention states */
	bool streaming;            /* states carry over from one forward to the next */
	size_t activation_bytes;
	struct buffer_list *buffers;       /* every buffer above, for model_free */
	/* every bf16 copy above and its size: model_set_bf16 reserves them */
	struct kept_ref {
		struct matmul_kept *kept;
		int64_t elems;
	} *kept_refs;
	int nkept_refs;
	bool kept_reserved;

	/* contiguous ranges of the flat blocks, in the order backward finishes them;
	 * count 0 where the stage has no such part */
	struct grad_range head_range;      /* final LN and LM head */
	struct grad_range *layer_range;    /* [num_layers] */
	struct grad_range embedding_range;
	grad_ready_fn grad_ready;          /* NULL: nobody is told */
	void *grad_ready_arg;

	double tp_allreduce_s;             /* time in TP all-reduces since model_init */
};

/* Validates cfg with ENSURE (callers validate user input first: config.h).
 * layout NULL: one rank. Collective over layout->tp_comm (none when P = 1). */
void model_init(struct model *m, const struct model_config *cfg,
		const struct model_layout *layout);
void model_free(struct model *m);

/*
 * Precision of the model's matrix products (every one, retention's per-chunk
 * products included): float32 (the default) or bfloat16 operands with float32
 * accumulation and float32 results (kernels_ctx_set_bf16). Parameters, gradients,
 * activations and optimizer state stay float32 either way, so a checkpoint does not
 * depend on it. 0, or -ENOTSUP with one line in err on a CPU without AVX512-BF16.
 */
int model_set_bf16(struct model *m, bool on, char *err, size_t errlen);

/*
 * Forward of one micro-batch on this stage, kept in `slot` for its backward.
 * First stage: embeds inputs (B, T). Other stages: the previous stage's output
 * must already be in model_stage_input(m, slot). Last stage: returns the mean loss
 * over the B*T targets; other stages return 0 and leave their output in
 * model_stage_output(m, slot).
 */
float model_forward_micro(struct model *m, int slot, const int32_t *inputs,
			  const int32_t *targets);
/*
 * Backward of the micro-batch in `slot`. ACCUMULATES into m->params.grad the
 * gradient of loss_scale * (its mean loss). Last stage: starts from the loss;
 * other stages: from the gradient of their output, which must be in
 * model_boundary_grad(m). Non-first stages leave the gradient of their input
 * there when done.
 */
void model_backward_micro(struct model *m, int slot, float loss_scale);

float *model_stage_input(struct model *m, int slot);  /* (M, d) */
float *model_stage_output(struct model *m, int slot); /* (M, d) */
float *model_boundary_grad(struct model *m);          /* (M, d) */

/*
 * Streaming (evaluation of one long sequence, generation): between
 * model_stream_begin() and model_stream_end() each forward continues every layer's
 * retention state from the previous forward instead of starting from zero, so the
 * B rows are B independent streams cut into pieces of T tokens. The caller sets the
 * absolute position of the next piece's first token (the rotation depends on it).
 * Chunkwise or recurrent form only; forward only.
 */
void model_stream_begin(struct model *m);
void model_stream_end(struct model *m);
void model_set_first_position(struct model *m, int64_t first_pos);

/* One stage holding the whole model: forward and backward of slot 0. */
float model_forward(struct model *m, const int32_t *inputs, const int32_t *targets);
void model_backward(struct model *m, float loss_scale);

/* Sum of squared gradients of this stage's part of the model, each element counted
 * once across the TP group: sharded tensors summed over tp_comm, replicated ones
 * taken as they are (identical on every TP rank). Collective over tp_comm; the
 * caller sums over the pipeline stages. */
double model_grad_sumsq(const struct model *m);

/* Model FLOPs of one training token (3 x forward, the spec's formula). */
double model_flops_per_token(const struct model_config *cfg);
/* Bytes of activations and workspace held by model_init (for the benchmarks). */
size_t model_activation_bytes(const struct model *m);

#endif
