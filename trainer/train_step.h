/*
 * train_step: one global batch on this rank: its micro-batches through the model
 * on the 1F1B pipeline schedule, interleaved over the model's chunks when it has
 * several (parallel/pipeline.h), activations and their gradients exchanged with the
 * neighbouring (virtual) stages by non-blocking point-to-point MPI, gradients
 * accumulated over the micro-batches and reduced over the data-parallel group in
 * per-layer buckets started while each chunk's last backward runs
 * (parallel/grad_sync.h). Virtual stage c P + p (chunk c of stage p) receives from
 * stage p - 1 (chunk c - 1 of stage P - 1 when p = 0) and sends to p + 1 (chunk
 * c + 1 of stage 0 when p = P - 1); a tag names the micro-batch, the chunk and the
 * direction.
 * Also the forward-only pass of evaluation. Does not clip, step the optimizer,
 * read data or log: train_main.c does.
 */
#ifndef RN_TRAIN_STEP_H
#define RN_TRAIN_STEP_H

#include <mpi.h>

#include "parallel/grad_sync.h"
#include "parallel/grid.h"
#include "parallel/pipeline.h"
#include "trainer/model.h"

struct run_spec;

struct train_step {
	struct model *m;
	const struct grid *g;
	int n_micro;
	int chunks;                /* v: the model's chunks on this stage */
	int64_t micro_batch, seq_len;  /* B, T (this rank's piece) */
	int64_t seq_whole;         /* T of the whole sequence, all pieces */
	/* The documents of the next train_step_run or train_step_forward_only, set by
	 * the caller (NULL: none; model.h, model_docs): starts (n_micro * B, seq_whole)
	 * of the whole sequences, loss_mask (n_micro * B, T) of this rank's targets, and
	 * loss_count, by which each micro-batch's masked loss sum is divided. */
	const uint8_t *starts, *loss_mask;
	double loss_count;
	struct grad_sync *dp_sync; /* the caller's: one bucket per gradient range of the
				      model, in the order backward finishes them */
	struct pipeline_op *ops;   /* [2 v n_micro] this stage's schedule */
	int *slot_base;            /* [v + 1] chunk c's slots are slot_base[c] .. [c+1]-1
				      of the arrays below */
	MPI_Request *act_send;     /* [slots] activation sent forward from the slot */
	MPI_Request *grad_send;    /* [slots] input gradient sent backward */
	float **grad_send_buf;     /* [slots] (M, d) copies of the input gradient */
	double dp_wait_s;          /* time waiting for the DP buckets, accumulated */
	double pp_bytes;           /* sent to the neighbouring stages, accumulated */
	double compute_s;          /* time inside forward and backward, accumulated */
	double schedule_s;         /* time running the schedule (compute + p2p waits) */
};

/* Slots (micro-batches in flight) each model chunk of this stage needs for n_micro
 * micro-batches, into slots[model_chunk_count(spec, g)]. */
void train_step_slots(const struct grid *g, const struct run_spec *spec, int n_micro,
		      int *slots);

/* m was made from spec (its micro-batch and sequence length). dp_sync: the
 * data-parallel reduction of m's gradient (train_step_dp_sync), NULL for forward only. */
void train_step_init(struct train_step *ts, struct model *m, const struct grid *g,
		     const struct run_spec *spec, int n_micro, struct grad_sync *dp_sync);
void train_step_free(struct train_step *ts);

/*
 * The data-parallel reduction of m's gradient over the ranks that hold the same
 * parameters (g's data x context plane, R ranks): one bucket per gradient range of the
 * model, in the order backward finishes them, all-reduced, or with counts
 * (counts[range * R + rank], NULL: even) reduce-scattered.
 * collective over that plane (grad_sync_create); free with grad_sync_destroy.
 */
struct grad_sync *train_step_dp_sync(struct model *m, const struct grid *g,
				     enum grad_sync_mode mode, const size_t *counts);

/*
 * Forward and backward of n_micro micro-batches; inputs and targets are this
 * data-parallel rank's rows, (n_micro * B, T). Gradients of loss_scale x each
 * micro-batch's mean loss are accumulated and, on return, summed over the DP group.
 * Returns the sum of the micro-batch mean losses on the last stage, 0 elsewhere.
 * Collective over the whole grid.
 */
double train_step_run(struct train_step *ts, const int32_t *inputs, const int32_t *targets,
		      float loss_scale);

/*
 * Forward only of one micro-batch (B rows) through the pipeline. `micro` numbers
 * the calls (0, 1, 2, ...; the same on every rank): the call takes its chunks'
 * slots micro % slots, and a stage sends its output without waiting, so with two
 * slots or more a stage goes on to the next call while the next stage works on this
 * one (a pipelined forward). The slot's losses stay readable (train_step_losses)
 * until the call that reuses the slot.
 * Returns the sum of the per-token losses of the first `rows` rows on the last
 * stage (only the targets ts->loss_mask counts, when set), 0 elsewhere. Collective
 * over the pipeline group.
 */
double train_step_forward_only(struct train_step *ts, const int32_t *inputs,
			       const int32_t *targets, int rows, int64_t micro);
/* The per-token losses of forward call `micro` (last stage only: NULL elsewhere). */
const float *train_step_losses(const struct train_step *ts, int64_t micro);

#endif
