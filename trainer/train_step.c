#include "trainer/train_step.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "parallel/comm.h"
#include "trainer/metrics.h"
#include "trainer/spec.h"
#include "trainer/watchdog.h"

/* Tags: the output of chunk c for micro-batch i (to the next virtual stage) is
 * 2 (i v + c), the gradient of it (coming back) 2 (i v + c) + 1; with one chunk, 2i
 * and 2i + 1. Between two stages each (micro-batch, chunk, direction) is one message. */
static int tag_of(const struct train_step *ts, int micro, int chunk, int backward)
{
	return 2 * (micro * ts->chunks + chunk) + backward;
}

void train_step_slots(const struct grid *g, const struct run_spec *spec, int n_micro,
		      int *slots)
{
	const struct grid_group *pp = &g->axis[GRID_PIPELINE];
	const int chunks = model_chunk_count(spec, g);

	for (int c = 0; c < chunks; c++)
		slots[c] = pipeline_chunk_in_flight(pp->rank, pp->size, chunks, n_micro, c);
}

/* Virtual stage c P + p: the first holds the embedding, the last the loss. */
static bool first_virtual(const struct train_step *ts, int chunk)
{
	return chunk == 0 && ts->g->axis[GRID_PIPELINE].rank == 0;
}

static bool last_virtual(const struct train_step *ts, int chunk)
{
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];

	return chunk == ts->chunks - 1 && pp->rank == pp->size - 1;
}

/* The stages before and after this one, in a ring: stage 0's chunk c follows the
 * last stage's chunk c - 1. */
static int prev_stage(const struct train_step *ts)
{
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];

	return (pp->rank + pp->size - 1) % pp->size;
}

static int next_stage(const struct train_step *ts)
{
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];

	return (pp->rank + 1) % pp->size;
}

/* The chunk of the previous virtual stage, whose output chunk `chunk` takes in. */
static int prev_chunk(const struct train_step *ts, int chunk)
{
	return ts->g->axis[GRID_PIPELINE].rank == 0 ? chunk - 1 : chunk;
}

/* The index of chunk's slot for micro-batch `micro` in the per-slot arrays; a
 * chunk's micro-batches come and go in order, so micro % slots is free. */
static int slot_of(const struct train_step *ts, int chunk, int micro)
{
	return ts->slot_base[chunk] + micro % model_slots(ts->m, chunk);
}

struct grad_sync *train_step_dp_sync(struct model *m, const struct grid *g,
				     enum grad_sync_mode mode, const size_t *counts)
{
	struct param_set *p = model_params(m);
	const int n = model_grad_range_count(m), dp = g->replicas.size;
	struct grad_range *r = xcalloc((size_t)n, sizeof(*r));
	/* collective: all ranks of the data x context plane (grad_sync duplicates it) */
	struct grad_sync *gs = grad_sync_create(g->replicas.comm, mode, p->grad, p->total);

	model_grad_ranges(m, r);
	for (int i = 0; i < n; i++)
		ENSURE(grad_sync_add_bucket(gs, r[i].offset, r[i].count,
					    counts ? counts + (size_t)i * (size_t)dp : NULL) == i);
	free(r);
	return gs;
}

void train_step_init(struct train_step *ts, struct model *m, const struct grid *g,
		     const struct run_spec *spec, int n_micro, struct grad_sync *dp_sync)
{
	const struct grid_group *pp = &g->axis[GRID_PIPELINE];
	int slots = 0;

	memset(ts, 0, sizeof(*ts));
	ts->m = m;
	ts->g = g;
	ts->n_micro = n_micro;
	ts->chunks = model_chunks(m);
	ts->micro_batch = spec->micro_batch_size;
	/* a context-parallel rank's micro-batches are its pieces of the sequences */
	ts->seq_len = spec->seq_length / g->axis[GRID_CONTEXT].size;
	ts->seq_whole = spec->seq_length;
	ENSURE(ts->chunks == model_chunk_count(spec, g) &&
	       pipeline_interleaved_valid(pp->size, ts->chunks, n_micro));
	ts->slot_base = xcalloc((size_t)ts->chunks + 1, sizeof(*ts->slot_base));
	for (int c = 0; c < ts->chunks; c++) {
		ENSURE(model_slots(m, c) >= pipeline_chunk_in_flight(pp->rank, pp->size,
								     ts->chunks, n_micro, c));
		ts->slot_base[c] = slots;
		slots += model_slots(m, c);
	}
	ts->slot_base[ts->chunks] = slots;
	ts->ops = xcalloc((size_t)(2 * ts->chunks * n_micro), sizeof(*ts->ops));
	pipeline_interleaved(ts->ops, pp->rank, pp->size, ts->chunks, n_micro);
	ts->dp_sync = dp_sync;
	ts->act_send = xcalloc((size_t)slots, sizeof(*ts->act_send));
	ts->grad_send = xcalloc((size_t)slots, sizeof(*ts->grad_send));
	ts->grad_send_buf = xcalloc((size_t)slots, sizeof(*ts->grad_send_buf));
	for (int c = 0; c < ts->chunks; c++)
		for (int s = ts->slot_base[c]; s < ts->slot_base[c + 1]; s++) {
			ts->act_send[s] = MPI_REQUEST_NULL;
			ts->grad_send[s] = MPI_REQUEST_NULL;
			if (!first_virtual(ts, c))
				ts->grad_send_buf[s] = xaligned_alloc(sizeof(float) *
								      model_boundary_floats(m));
		}
}

void train_step_free(struct train_step *ts)
{
	for (int s = 0; s < ts->slot_base[ts->chunks]; s++) {
		comm_wait(&ts->act_send[s]);
		comm_wait(&ts->grad_send[s]);
		free(ts->grad_send_buf[s]);
	}
	free(ts->slot_base);
	free(ts->ops);
	free(ts->act_send);
	free(ts->grad_send);
	free(ts->grad_send_buf);
}

/* Open MPI progresses non-blocking collectives inside MPI calls only: backward
 * calls this between its kernels. */
static void progress_buckets(void *arg)
{
	struct train_step *ts = arg;

	grad_sync_progress(ts->dp_sync);
}

static void start_bucket(void *arg, int range)
{
	struct train_step *ts = arg;

	/* collective: all ranks of the data axis, buckets in the same order on each */
	grad_sync_start(ts->dp_sync, range);
	progress_buckets(ts);
}

/* Receives the previous virtual stage's output for micro-batch `micro` into the
 * chunk's slot `local` (slot: its index in the per-slot arrays); then waits until
 * the slot's output buffer has left with micro - slots. */
static void recv_input(struct train_step *ts, int chunk, int slot, int local, int micro)
{
	struct model *m = ts->m;

	if (!first_virtual(ts, chunk)) {
		MPI_Request req;

		comm_irecv_f32(ts->g->axis[GRID_PIPELINE].comm, model_stage_input(m, chunk, local),
			       model_boundary_floats(m), prev_stage(ts),
			       tag_of(ts, micro, prev_chunk(ts, chunk), 0), &req);
		watchdog_phase_at("the pipeline receive of micro-batch %d from stage %d", micro,
				  prev_stage(ts));
		comm_wait(&req);
	}
	watchdog_phase_at("the pipeline send of an activation to stage %d", next_stage(ts), 0);
	comm_wait(&ts->act_send[slot]);
}

/* Sends the chunk's output for micro-batch `micro` on to the next virtual stage. */
static void send_output(struct train_step *ts, int chunk, int slot, int local, int micro)
{
	struct model *m = ts->m;
	const size_t n = model_boundary_floats(m);

	if (last_virtual(ts, chunk))
		return;
	comm_isend_f32(ts->g->axis[GRID_PIPELINE].comm, model_stage_output(m, chunk, local), n,
		       next_stage(ts), tag_of(ts, micro, chunk, 0), &ts->act_send[slot]);
	ts->pp_bytes += (double)(n * sizeof(float));
}

/* The documents of micro-batch `micro`, for the model's next forward. */
static void set_docs(struct train_step *ts, int micro)
{
	const size_t rows = (size_t)micro * (size_t)ts->micro_batch;
	struct model_docs docs = {
		.starts = ts->starts ? ts->starts + rows * (size_t)ts->seq_whole : NULL,
		.loss_mask = ts->loss_mask ? ts->loss_mask + rows * (size_t)ts->seq_len : NULL,
		.loss_count = ts->loss_count,
	};

	model_set_docs(ts->m, &docs);
}

/*
 * Forward of micro-batch `micro` on chunk `chunk`. In training a slot is taken again
 * only after the backward of its previous micro-batch, whose gradient the next
 * stage sent after receiving that micro-batch's activation: the wait for the slot's
 * previous send returns at once.
 */
static double forward_op(struct train_step *ts, int chunk, int micro, const int32_t *inputs,
			 const int32_t *targets)
{
	const int slot = slot_of(ts, chunk, micro), local = slot - ts->slot_base[chunk];
	double loss, t0;

	recv_input(ts, chunk, slot, local, micro);
	watchdog_phase_at("the forward of micro-batch %d (its tensor- and context-parallel "
			  "collectives)", micro, 0);
	set_docs(ts, micro);
	t0 = metrics_now_s();
	loss = model_forward_micro(ts->m, chunk, local, inputs, targets);
	ts->compute_s += metrics_now_s() - t0;
	send_output(ts, chunk, slot, local, micro);
	return loss;
}

static void backward_op(struct train_step *ts, int chunk, int micro, float loss_scale)
{
	struct model *m = ts->m;
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];
	const size_t n = model_boundary_floats(m);
	const int slot = slot_of(ts, chunk, micro), local = slot - ts->slot_base[chunk];
	double t0;

	if (!last_virtual(ts, chunk)) {
		MPI_Request req;

		comm_irecv_f32(pp->comm, model_boundary_grad(m), n, next_stage(ts),
			       tag_of(ts, micro, chunk, 1), &req);
		watchdog_phase_at("the pipeline receive of the gradient of micro-batch %d from "
				  "stage %d", micro, next_stage(ts));
		comm_wait(&req);
	}
	/* Each chunk's last micro-batch starts the data-parallel reductions of its
	 * layers; the schedule ends the chunks' backwards in the order v-1 .. 0, that of
	 * the buckets. */
	if (micro + 1 == ts->n_micro)
		model_set_backward_hooks(m, &(struct backward_hooks){
			.ready = start_bucket, .poll = progress_buckets, .arg = ts});
	watchdog_phase_at("the backward of micro-batch %d (its tensor- and context-parallel "
			  "collectives)", micro, 0);
	t0 = metrics_now_s();
	model_backward_micro(m, chunk, local, loss_scale);
	ts->compute_s += metrics_now_s() - t0;
	model_set_backward_hooks(m, &(struct backward_hooks){0});
	if (!first_virtual(ts, chunk)) {
		watchdog_phase_at("the pipeline send of a gradient to stage %d", prev_stage(ts), 0);
		comm_wait(&ts->grad_send[slot]);
		memcpy(ts->grad_send_buf[slot], model_boundary_grad(m), sizeof(float) * n);
		comm_isend_f32(pp->comm, ts->grad_send_buf[slot], n, prev_stage(ts),
			       tag_of(ts, micro, prev_chunk(ts, chunk), 1), &ts->grad_send[slot]);
		ts->pp_bytes += (double)(n * sizeof(float));
	}
}

double train_step_run(struct train_step *ts, const int32_t *inputs, const int32_t *targets,
		      float loss_scale)
{
	const size_t rows_per_micro = (size_t)(ts->micro_batch * ts->seq_len);
	double loss_sum = 0.0, t_start = metrics_now_s();

	ENSURE(ts->dp_sync);
	for (int i = 0; i < 2 * ts->chunks * ts->n_micro; i++) {
		const struct pipeline_op *op = &ts->ops[i];
		const size_t at = (size_t)op->micro * rows_per_micro;

		if (op->kind == PIPELINE_FORWARD)
			loss_sum += forward_op(ts, op->chunk, op->micro, inputs + at, targets + at);
		else
			backward_op(ts, op->chunk, op->micro, loss_scale);
	}
	ts->schedule_s += metrics_now_s() - t_start;
	watchdog_phase("the data-parallel gradient reduction");
	ts->dp_wait_s += grad_sync_finish(ts->dp_sync);
	return loss_sum;
}

/* Pipeline tags repeat every FORWARD_TAG_CYCLE forward calls: MPI keeps the order of
 * messages between two ranks with the same tag, and a count of all the calls over a
 * long corpus would outgrow MPI_TAG_UB. */
#define FORWARD_TAG_CYCLE 64

double train_step_forward_only(struct train_step *ts, const int32_t *inputs,
			       const int32_t *targets, int rows, int64_t micro)
{
	struct model *m = ts->m;
	const int64_t tokens = (int64_t)rows * ts->seq_len;
	const int tag_micro = (int)(micro % FORWARD_TAG_CYCLE);
	const float *losses;
	double sum = 0.0;

	/* through the chunks in order, each in its slot for this call */
	for (int c = 0; c < ts->chunks; c++) {
		const int local = (int)(micro % model_slots(m, c));

		recv_input(ts, c, ts->slot_base[c] + local, local, tag_micro);
		set_docs(ts, 0);
		model_forward_micro(m, c, local, inputs, targets);
		send_output(ts, c, ts->slot_base[c] + local, local, tag_micro);
	}
	losses = train_step_losses(ts, micro);
	if (!losses)
		return 0.0;
	for (int64_t j = 0; j < tokens; j++)
		if (!ts->loss_mask || ts->loss_mask[j])
			sum += losses[j];
	return sum;
}

const float *train_step_losses(const struct train_step *ts, int64_t micro)
{
	const int last = ts->chunks - 1;

	if (!model_last_stage(ts->m))
		return NULL;
	return model_losses(ts->m, (int)(micro % model_slots(ts->m, last)));
}
