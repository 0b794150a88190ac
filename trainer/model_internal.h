/*
 * model_internal: the definition behind the opaque struct model, shared by the two
 * files of the model module and nothing else: model.c (the math and the
 * tensor-parallel collectives) and model_setup.c (the memory: the parameter
 * registry, the activation buffers).
 */
#ifndef RN_MODEL_INTERNAL_H
#define RN_MODEL_INTERNAL_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"
#include "trainer/kernels/rotary.h"
#include "trainer/model.h"
#include "trainer/params.h"

struct kernels_ctx;
struct buffer_list;
struct matmul_kept;

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
 * only on the last (NULL elsewhere); layers[i] is the stage's local layer i (its
 * chunks' layers in chunk order). */
struct model_tensors {
	float *embedding;             /* (V, d) */
	struct layer_tensors *layers; /* [num_layers] */
	float *lnf_gain, *lnf_bias;   /* (d) */
	float *lm_head;               /* (d, V) */
};

enum { KEPT_LN1, KEPT_GATED, KEPT_LN2, KEPT_H, KEPT_V, KEPT_COUNT };

/* What the forward keeps for backward, per layer; rows M = B*T, local widths.
 * With recompute every layer of every slot has its own x and shares the rest. */
struct layer_acts {
	float *x;                  /* (M, d) block input */
	float *ln1, *ln1_mean, *ln1_rstd;   /* (M, d), (M), (M) */
	float *q, *k;              /* (M, qk) rotated; k also scaled by 1/sqrt(dk) */
	float *v, *g;              /* (M, vw) value and gate pre-activation; v: or
				    * its bf16 copy alone (retention_bf16_operands) */
	float *o;                  /* (M, vw) retention output before GroupNorm */
	double *gn_mean, *gn_rstd; /* (M, H/P) GroupNorm's statistics */
	float *gated;              /* (M, vw) swish(g) * GroupNorm(o), the input of Wo */
	float *states;             /* (B, H/P, T/C, dk, dv) chunk states for backward */
	float *y;                  /* (M, d) after the retention residual */
	float *ln2, *ln2_mean, *ln2_rstd;   /* (M, d), (M), (M) */
	float *h_pre, *h;          /* (M, fl) FFN hidden before and after gelu */
	/* bf16 copies of the inputs of Wq..Wg, Wo, W1 and W2 made in
	 * forward and read again for their dW in backward, and V's, which only
	 * retention's products read (bf16 contexts only) */
	struct matmul_kept *kept[KEPT_COUNT];
};

/* One micro-batch in flight on one model chunk of this stage. */
struct micro_acts {
	struct layer_acts *layers; /* [the chunk's num_layers] */
	float *out;                /* (M, d) output of the chunk's last block */
	int32_t *inputs;           /* (M) first chunk of the first stage: the tokens */
	int32_t *targets;          /* (M) last chunk of the last stage: the next tokens */
	/* last chunk of the last stage only */
	float *lnf, *lnf_mean, *lnf_rstd; /* (M, d), (M), (M) */
	float *logits;             /* (M, V); dlogits after backward */
	float *losses;             /* (M) per-token loss */
	/* documents (model_set_docs), kept for backward: every chunk */
	bool has_starts;
	uint8_t *starts;           /* (M) document starts in this rank's piece */
	uint8_t *piece_starts;     /* (cp_size, B) a start anywhere in piece q of row b */
	/* last chunk of the last stage */
	bool has_mask;
	uint8_t *loss_mask;        /* (M) targets counted in the loss */
	double loss_count;         /* the micro-batch's loss divides by it */
	struct matmul_kept *lnf_kept; /* bf16 copy of lnf, the LM head's input */
};

/*
 * One model chunk of this stage: global layers [first_layer, + num_layers), which
 * are the stage's local layers [local_first, + num_layers). One chunk per stage
 * without virtual stages; with them, chunk c of stage p is virtual stage c P + p.
 */
struct model_chunk {
	int64_t first_layer, num_layers, local_first;
	bool first, last;          /* virtual stage 0 (embedding), the last (head, loss) */
	int slots;                 /* micro-batches whose activations it keeps at once */
	struct micro_acts *micro;  /* [slots] */
};

struct model {
	/* the model's sizes, docs/model.md's symbols; T is this rank's piece of the
	 * sequence (the whole of it without context parallelism) */
	int64_t V, d, L, H, f, C, T;
	int64_t B;                 /* micro-batch */
	uint64_t seed;
	bool recompute;            /* keep only each block's input per micro-batch */

	/* this rank's part: its tensor-parallel slice, piece of the sequence and
	 * pipeline stage */
	int tp_rank, tp_size, pp_rank, pp_size, cp_rank, cp_size;
	MPI_Comm tp_comm;          /* unused when tp_size is 1 */
	MPI_Comm cp_comm;          /* unused when cp_size is 1 */
	int64_t dk, dv, rows;      /* d/H, 2d/H, B*T */
	int64_t heads_local;       /* H/P, global heads head_offset .. + H/P - 1 */
	int64_t head_offset;
	int64_t qk, vw, fl;        /* local widths (H/P) dk, (H/P) dv, f/P */
	int64_t num_layers;        /* this stage's layers, in all its chunks */
	int nchunks;
	struct model_chunk *chunks; /* [nchunks] */
	bool first_stage, last_stage; /* holds the embedding, the head */
	enum retention_form form;
	struct param_set params;
	struct model_tensors w, dw;
	struct kernels_ctx *kernels;
	struct rotary_table rotary;

	/* recompute: whose activations the shared buffers hold now (-1: none); a local
	 * layer names its chunk */
	int recompute_slot;
	int64_t recompute_layer;

	/* backward workspace, shared by every layer and micro-batch */
	float *dx;                 /* (M, d) gradient of the residual stream */
	float *dln;                /* (M, d) */
	float *dq, *dk_, *dv_, *dg;/* (M, qk), (M, qk), (M, vw), (M, vw) */
	float *dgated, *do_;       /* (M, vw) each */
	float *dh;                 /* (M, fl) */
	/* bf16 copies written by the kernels that produce a product's output gradient:
	 * dh's or dx's (held at once), dg's (held after retention's backward), and
	 * do_'s, which only retention's products read */
	struct matmul_kept *dy_kept, *dg_kept, *do_kept;
	float *retention_scratch;
	float *stream_state;       /* (num_layers, B, H/P, dk, dv) retention states */
	/* context parallelism: this piece's summary (or state gradient), every piece's,
	 * and the state entering (or the gradient leaving) this piece: (B, H/P, dk, dv) */
	float *cp_mine, *cp_all, *cp_state; /* cp_all: (cp_size, B, H/P, dk, dv) */
	bool streaming;            /* states carry over from one forward to the next */
	/* model_set_docs's documents for the next forward, and the starts of the
	 * micro-batch being computed (retention_dims_of reads them) */
	struct model_docs docs;
	const uint8_t *starts_now, *piece_starts_now;
	size_t activation_bytes;
	struct buffer_list *buffers;       /* every buffer above, for model_destroy */
	/* every bf16 copy above and its size: model_set_bf16 reserves them */
	struct kept_ref {
		struct matmul_kept *kept;
		int64_t elems;
	} *kept_refs;
	int nkept_refs;
	bool kept_reserved;

	/* the gradient block's ranges in the order backward finishes them, and the
	 * index of each part among them (-1: the stage has no such part) */
	struct grad_range *ranges; /* [nranges] */
	int nranges;
	int head_range, embedding_range;
	int *layer_range;          /* [num_layers] */
	struct backward_hooks hooks; /* all NULL: nobody is told */

	struct comm_tally tp, cp;  /* tensor-parallel all-reduces, context all-gathers */
};

#endif
