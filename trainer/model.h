/*
 * model: the RetNet of docs/model.md, composed from the kernels: parameter registry,
 * forward with the activations backward needs, hand-written backward accumulating
 * into the gradient block.
 *
 *   X0 = E[tokens]; per layer Y = X + MSR(LN1(X)), X = Y + FFN(LN2(Y));
 *   logits = LN_f(X) W_out; loss = mean cross-entropy against the next token.
 *
 * Tensor parallelism (Megatron-LM style) lives here and only here: a rank of a
 * tensor-parallel group of P owns H/P whole heads (their columns of Wq, Wk, Wv, Wg
 * and rows of Wo) and f/P FFN columns (W1, b1 columns, W2 rows); LayerNorms, E, b2
 * and the LM head are replicated. Per block, forward all-reduces the partial MSR
 * output and the partial FFN output over the tensor axis of the grid, and backward
 * all-reduces the partial gradients of the two LayerNorm outputs: two all-reduces
 * each way, marked where they are issued (model.c). With P = 1 no MPI call is made
 * (the model runs without MPI_Init).
 *
 * Context parallelism: a rank of a context-parallel group of CP holds the same
 * parameters as the others and computes one contiguous piece of T/CP tokens of every
 * sequence, at their global positions; per layer, forward all-gathers the pieces'
 * retention summaries (dk x dv per head, whatever T is) and backward their state
 * gradients, each rank scanning them itself (model.c). Its micro-batches are pieces:
 * B rows of T/CP tokens.
 *
 * A pipeline stage holds one or more model chunks, each a contiguous range of
 * layers: one chunk, its stage's share of the layers, or with virtual stages
 * (--num-layers-per-virtual-pipeline-stage N) the chunks of N layers p, p + P, ...
 * of the P x v virtual stages (model_chunk_count). The embedding is on the first
 * chunk of the first stage, the final LN, LM head and loss on the last chunk of the
 * last. One parameter registry and one pair of flat blocks hold all of a stage's
 * chunks. Each chunk keeps activations for its own number of micro-batches in flight
 * (its slots: 1F1B needs at most P - stage); the caller moves activations and their
 * gradients between (virtual) stages (model_stage_input/output,
 * model_boundary_grad).
 *
 * The model is an opaque handle: its sizes are fixed at model_create (from the run
 * specification), activations are allocated once there and nothing is allocated
 * per step. Does not own data, the optimizer, the pipeline schedule, the
 * data-parallel gradient reduction or any file.
 */
#ifndef RN_MODEL_H
#define RN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trainer/params.h"

struct model;
struct grid;
struct run_spec;
struct comm_tally;

enum retention_form {
	RETENTION_CHUNKWISE, /* training and evaluation */
	RETENTION_PARALLEL,  /* O(T^2) oracle */
	RETENTION_RECURRENT, /* forward only: streaming and generation */
};

/*
 * The model of spec (its model rows, --micro-batch-size, --recompute-activations,
 * --num-layers-per-virtual-pipeline-stage) on this rank's part of grid g (NULL: one
 * rank, no MPI), keeping activations for `slots` micro-batches on each of its
 * chunks. Initialised from the seed: every layout holds the same values. The caller
 * has validated spec (spec_validate); model_create only ENSUREs.
 * collective over the tensor axis of g (none when it has one rank).
 */
struct model *model_create(const struct run_spec *spec, const struct grid *g, int slots);
/* The same with slots[c] micro-batches on chunk c (c < model_chunk_count). */
struct model *model_create_chunked(const struct run_spec *spec, const struct grid *g,
				   const int *slots);
void model_destroy(struct model *m);

/* The model chunks a stage of grid g holds: L / (P x N) with virtual stages of N
 * layers, else 1. Chunk c of stage p is virtual stage c P + p. */
int model_chunk_count(const struct run_spec *spec, const struct grid *g);

/* The parameters and their gradients: flat blocks, a registry of named slices. */
struct param_set *model_params(struct model *m);

/*
 * Precision of the model's matrix products (every one, retention's per-chunk
 * products included): float32 (the default) or bfloat16 operands with float32
 * accumulation and float32 results. Parameters, gradients, activations and
 * optimizer state stay float32 either way, so a checkpoint does not depend on it.
 * 0, or -ENOTSUP with one line in err on a CPU without AVX512-BF16.
 */
int model_set_bf16(struct model *m, bool on, char *err, size_t errlen);
void model_set_form(struct model *m, enum retention_form form);
/* Autotunes the large matmuls the model has run so far (after a first step), with
 * the ranks of agree (matmul_autotune_plans: the same result on all of them). */
struct matmul_agree;
int model_autotune_matmuls(struct model *m, const struct matmul_agree *agree);
struct matmul_tuning_totals;
/* What autotuning found so far on this rank (matmul_tuning_totals). */
void model_matmul_tuning(const struct model *m, struct matmul_tuning_totals *out);

/*
 * Forward of one micro-batch on chunk `chunk` of this stage, kept in the chunk's
 * `slot` for its backward. First chunk of the first stage: embeds inputs (B, T).
 * Other chunks: the previous (virtual) stage's output must already be in
 * model_stage_input(m, chunk, slot). Last chunk of the last stage: returns the mean
 * loss over the B*T targets; other chunks return 0 and leave their output in
 * model_stage_output(m, chunk, slot).
 */
float model_forward_micro(struct model *m, int chunk, int slot, const int32_t *inputs,
			  const int32_t *targets);
/*
 * Backward of the micro-batch in the chunk's `slot`. ACCUMULATES into the gradient
 * block the gradient of loss_scale * (its mean loss). Last chunk of the last stage:
 * starts from the loss; other chunks: from the gradient of their output, which must
 * be in model_boundary_grad(m). Chunks but the first of the first stage leave the
 * gradient of their input there when done.
 */
void model_backward_micro(struct model *m, int chunk, int slot, float loss_scale);

/*
 * Documents of the micro-batch the next model_forward_micro computes (on any chunk;
 * kept in its slot for the backward), or NULL: one document per sequence, every
 * target counted. Copied; docs->... may be NULL each.
 *
 *   starts     (B, T_seq) of the WHOLE sequences (every context-parallel piece),
 *              nonzero where a document starts: retention's state restarts there
 *              (--reset-attention-mask). The model takes its piece and which pieces
 *              hold a start.
 *   loss_mask  (B, T) of this rank's targets: 0 where a target is not counted
 *              (--eod-mask-loss). The micro-batch's loss is then
 *              sum(mask .* losses) / loss_count, and backward follows it.
 */
struct model_docs {
	const uint8_t *starts;
	const uint8_t *loss_mask;
	double loss_count;
};
void model_set_docs(struct model *m, const struct model_docs *docs);

/* One stage holding the whole model: forward and backward of slot 0. */
float model_forward(struct model *m, const int32_t *inputs, const int32_t *targets);
void model_backward(struct model *m, float loss_scale);

/* ---- the stage's boundaries and results ----------------------------------- */

/* Does the stage hold the embedding (first chunk), the head (last chunk)? */
bool model_first_stage(const struct model *m);
bool model_last_stage(const struct model *m);
int model_chunks(const struct model *m);
int model_slots(const struct model *m, int chunk);
/* Floats in a stage boundary: the (B*T, d) activation or its gradient. */
size_t model_boundary_floats(const struct model *m);
float *model_stage_input(struct model *m, int chunk, int slot);  /* (B*T, d) */
float *model_stage_output(struct model *m, int chunk, int slot); /* (B*T, d) */
float *model_boundary_grad(struct model *m);                     /* (B*T, d) */
/* Last stage, after a forward of `slot` of its last chunk: per-token losses (B*T)
 * and logits (B*T, V). */
const float *model_losses(const struct model *m, int slot);
const float *model_logits(const struct model *m, int slot);

/* ---- gradients as backward finishes them ----------------------------------- */

struct grad_range {
	size_t offset, count; /* into the flat gradient block */
};

/*
 * The contiguous ranges of the gradient block in the order backward finishes them
 * (the head, each layer from the last, the embedding; empty ones left out), into
 * out (room for model_grad_range_count). Returns the count. With several chunks the
 * layers of the last chunk come first: a schedule must end the chunks' backwards in
 * the order last .. first (the interleaved schedule does).
 */
int model_grad_range_count(const struct model *m);
int model_grad_ranges(const struct model *m, struct grad_range *out);
/*
 * What backward tells its caller while it runs (all NULL: nobody is told):
 *  - ready(arg, index): range `index` (of model_grad_ranges) is final, so the caller
 *    can start reducing it while backward goes on;
 *  - poll(arg): called between backward's kernels (a few times per layer), so the
 *    caller can let communication in flight progress: Open MPI moves non-blocking
 *    collectives on only inside MPI calls, and backward makes none of its own on a
 *    data-parallel-only layout.
 */
typedef void (*grad_ready_fn)(void *arg, int index);
typedef void (*backward_poll_fn)(void *arg);
struct backward_hooks {
	grad_ready_fn ready;
	backward_poll_fn poll;
	void *arg;
};
void model_set_backward_hooks(struct model *m, const struct backward_hooks *hooks);

/* Sum of squared gradients of this stage's part of the model, each element counted
 * once across the tensor-parallel group: sharded tensors summed over it, replicated
 * ones taken as they are (identical on every TP rank). collective over the tensor
 * axis; the caller sums over the pipeline stages. */
double model_grad_sumsq(const struct model *m);
/* The same from sums[0] over tensor-parallel-sharded tensors and sums[1] over
 * replicated ones, already summed over whatever else holds distinct parts of them
 * (a distributed optimizer's shards). collective over the tensor axis */
double model_grad_sumsq_combine(const struct model *m, double sums[2]);

/* ---- streaming: one long sequence, or generation --------------------------- */

/*
 * Between model_stream_begin() and model_stream_end() each forward continues every
 * layer's retention state from the previous forward instead of starting from zero,
 * so the B rows are B independent streams cut into pieces of T tokens. The caller
 * sets the absolute position of the next piece's first token (the rotation depends
 * on it). Chunkwise or recurrent form only; forward only.
 */
void model_stream_begin(struct model *m);
void model_stream_end(struct model *m);
void model_set_first_position(struct model *m, int64_t first_pos);

/* ---- accounting ------------------------------------------------------------ */

/* Model FLOPs of one training token (3 x forward, docs/model.md's formula). */
double model_flops_per_token(const struct run_spec *spec);
/* Bytes of activations and workspace held by the model (for the benchmarks). */
size_t model_activation_bytes(const struct model *m);
/* What this rank sent and waited since model_create in the tensor-parallel
 * all-reduces and the context-parallel all-gathers (parallel/comm.h). */
void model_comm(const struct model *m, struct comm_tally *tp, struct comm_tally *cp);

#endif
