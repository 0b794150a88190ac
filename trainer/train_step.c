#include "trainer/train_step.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "parallel/comm.h"
#include "trainer/metrics.h"
#include "trainer/spec.h"

/* Tags: forward activation of micro-batch i is 2i, its gradient 2i + 1. */
static int tag_of(int micro, int backward)
{
	return 2 * micro + backward;
}

int train_step_slots(const struct grid *g, int n_micro)
{
	return pipeline_max_in_flight(g->axis[GRID_PIPELINE].rank, g->axis[GRID_PIPELINE].size,
				      n_micro);
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
	const int slots = model_slots(m);

	memset(ts, 0, sizeof(*ts));
	ts->m = m;
	ts->g = g;
	ts->n_micro = n_micro;
	ts->micro_batch = spec->micro_batch_size;
	/* a context-parallel rank's micro-batches are its pieces of the sequences */
	ts->seq_len = spec->seq_length / g->axis[GRID_CONTEXT].size;
	ENSURE(slots >= train_step_slots(g, n_micro));
	ts->ops = xcalloc((size_t)(2 * n_micro), sizeof(*ts->ops));
	pipeline_1f1b(ts->ops, g->axis[GRID_PIPELINE].rank, g->axis[GRID_PIPELINE].size, n_micro);
	ts->dp_sync = dp_sync;
	ts->act_send = xcalloc((size_t)slots, sizeof(*ts->act_send));
	ts->grad_send = xcalloc((size_t)slots, sizeof(*ts->grad_send));
	ts->grad_send_buf = xcalloc((size_t)slots, sizeof(*ts->grad_send_buf));
	for (int s = 0; s < slots; s++) {
		ts->act_send[s] = MPI_REQUEST_NULL;
		ts->grad_send[s] = MPI_REQUEST_NULL;
		if (!model_first_stage(m))
			ts->grad_send_buf[s] = xaligned_alloc(sizeof(float) *
							      model_boundary_floats(m));
	}
}

void train_step_free(struct train_step *ts)
{
	for (int s = 0; s < model_slots(ts->m); s++) {
		comm_wait(&ts->act_send[s]);
		comm_wait(&ts->grad_send[s]);
		free(ts->grad_send_buf[s]);
	}
	free(ts->ops);
	free(ts->act_send);
	free(ts->grad_send);
	free(ts->grad_send_buf);
}

static void start_bucket(void *arg, int range)
{
	struct train_step *ts = arg;

	/* collective: all ranks of the data axis, buckets in the same order on each */
	grad_sync_start(ts->dp_sync, range);
	/* Open MPI progresses non-blocking collectives inside MPI calls only. */
	grad_sync_progress(ts->dp_sync);
}

/* Receives the previous stage's output for micro-batch `micro` into the slot. */
static void recv_activation(struct train_step *ts, int slot, int micro)
{
	struct model *m = ts->m;
	MPI_Request req;

	comm_irecv_f32(ts->g->axis[GRID_PIPELINE].comm, model_stage_input(m, slot),
		       model_boundary_floats(m), ts->g->axis[GRID_PIPELINE].rank - 1,
		       tag_of(micro, 0), &req);
	comm_wait(&req);
}

static double forward_op(struct train_step *ts, int slot, int micro, const int32_t *inputs,
			 const int32_t *targets)
{
	struct model *m = ts->m;
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];
	const size_t n = model_boundary_floats(m);
	double loss, t0;

	if (!model_first_stage(m))
		recv_activation(ts, slot, micro);
	/* The slot's output buffer may still be on its way from micro - slots. */
	comm_wait(&ts->act_send[slot]);
	t0 = metrics_now_s();
	loss = model_forward_micro(m, slot, inputs, targets);
	ts->compute_s += metrics_now_s() - t0;
	if (!model_last_stage(m)) {
		comm_isend_f32(pp->comm, model_stage_output(m, slot), n, pp->rank + 1,
			       tag_of(micro, 0), &ts->act_send[slot]);
		ts->pp_bytes += (double)(n * sizeof(float));
	}
	return loss;
}

static void backward_op(struct train_step *ts, int slot, int micro, float loss_scale)
{
	struct model *m = ts->m;
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];
	const size_t n = model_boundary_floats(m);
	double t0;

	if (!model_last_stage(m)) {
		MPI_Request req;

		comm_irecv_f32(pp->comm, model_boundary_grad(m), n, pp->rank + 1, tag_of(micro, 1),
			       &req);
		comm_wait(&req);
	}
	/* The last micro-batch's backward starts the data-parallel all-reduces. */
	model_set_grad_ready(m, micro + 1 == ts->n_micro ? start_bucket : NULL, ts);
	t0 = metrics_now_s();
	model_backward_micro(m, slot, loss_scale);
	ts->compute_s += metrics_now_s() - t0;
	model_set_grad_ready(m, NULL, NULL);
	if (!model_first_stage(m)) {
		comm_wait(&ts->grad_send[slot]);
		memcpy(ts->grad_send_buf[slot], model_boundary_grad(m), sizeof(float) * n);
		comm_isend_f32(pp->comm, ts->grad_send_buf[slot], n, pp->rank - 1, tag_of(micro, 1),
			       &ts->grad_send[slot]);
		ts->pp_bytes += (double)(n * sizeof(float));
	}
}

double train_step_run(struct train_step *ts, const int32_t *inputs, const int32_t *targets,
		      float loss_scale)
{
	struct model *m = ts->m;
	const int slots = model_slots(m);
	const size_t rows_per_micro = (size_t)(ts->micro_batch * ts->seq_len);
	double loss_sum = 0.0, t_start = metrics_now_s();

	ENSURE(ts->dp_sync);
	for (int i = 0; i < 2 * ts->n_micro; i++) {
		const struct pipeline_op *op = &ts->ops[i];
		const size_t at = (size_t)op->micro * rows_per_micro;

		if (op->kind == PIPELINE_FORWARD)
			loss_sum += forward_op(ts, op->micro % slots, op->micro, inputs + at,
					       targets + at);
		else
			backward_op(ts, op->micro % slots, op->micro, loss_scale);
	}
	ts->schedule_s += metrics_now_s() - t_start;
	ts->dp_wait_s += grad_sync_finish(ts->dp_sync);
	return loss_sum;
}

double train_step_forward_only(struct train_step *ts, const int32_t *inputs,
			       const int32_t *targets, int rows)
{
	struct model *m = ts->m;
	const struct grid_group *pp = &ts->g->axis[GRID_PIPELINE];
	const int64_t tokens = (int64_t)rows * ts->seq_len;
	const float *losses;
	double sum = 0.0;

	if (!model_first_stage(m))
		recv_activation(ts, 0, 0);
	comm_wait(&ts->act_send[0]);
	model_forward_micro(m, 0, inputs, targets);
	if (!model_last_stage(m)) {
		comm_isend_f32(pp->comm, model_stage_output(m, 0), model_boundary_floats(m),
			       pp->rank + 1, tag_of(0, 0), &ts->act_send[0]);
		ts->pp_bytes += (double)(model_boundary_floats(m) * sizeof(float));
		return 0.0;
	}
	losses = model_losses(m, 0);
	for (int64_t j = 0; j < tokens; j++)
		sum += losses[j];
	return sum;
}
