#include "trainer/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/loader.h"
#include "parallel/comm.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_setup.h"
#include "trainer/ceiling.h"
#include "trainer/doc.h"
#include "trainer/kernels/matmul.h"
#include "trainer/launch.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"
#include "trainer/train_ckpt.h"
#include "trainer/train_guard.h"
#include "trainer/train_step.h"
#include "trainer/watchdog.h"

#define LN2 0.69314718055994530942

struct trainer {
	const struct run_spec *s;
	const struct grid *g;
	struct launch *l;
	struct loader train, valid;
	bool have_valid;
	struct model *m;
	struct grad_sync *dp_sync;  /* the data-parallel gradient reduction */
	bool distributed;           /* --use-distributed-optimizer */
	struct adamw opt;
	struct lr_schedule sched;
	struct train_step step;
	struct train_guard guard;
	struct ckpt_async *async;  /* --async-save's writer, or NULL */
	int64_t n_micro, local_rows;
	int64_t piece_len;         /* T / CP: the tokens of a sequence this rank computes */
	int32_t *piece_in, *piece_tg; /* (local_rows, piece_len) this rank's pieces */
	size_t inject_at;          /* --inject-fault nan-grad's gradient element */
	double gather_s;           /* time in the parameter all-gather */
	int32_t *inputs, *targets; /* (local_rows, T) */
	/* documents (--reset-attention-mask, --eod-mask-loss; NULL when off) */
	uint8_t *starts;           /* (local_rows, T) of the whole windows */
	uint8_t *loss_mask;        /* (local_rows, piece_len) of this rank's targets */
	FILE *metrics;
	struct ceiling ceiling;    /* what the MFU is against */
	double tokens_per_iter, flops_per_token;
	double t_start;
	double last_step_s, last_save_s; /* what a stop at the deadline still has to do */
};

/* Set by SIGUSR1 or SIGTERM (SLURM's --signal and preemption, scancel). A signal
 * during start-up (MPI_Init, model set-up, resume) is acted on at the first
 * iteration instead of killing the rank: the default action of SIGUSR1 ends the
 * process, and the job would fail instead of requeueing. (Open MPI's own handlers
 * in a rank are for signals 6, 7, 8, 11: MCA opal_signal.) */
static volatile sig_atomic_t stop_signal;
/* When this process started: --exit-duration-in-mins counts start-up and resume. */
static double process_start;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
	watchdog_signal(sig); /* where this rank was, if the launcher is ending the job */
}

void trainer_install_stop_signals(void)
{
	struct sigaction sa;

	process_start = metrics_now_s();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESTART; /* a checkpoint write is not cut short by EINTR */
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	CHECK_SYS(sigaction(SIGTERM, &sa, NULL));
}

/* A failure all ranks agree on (err set on every rank): rank 0 prints, all exit 2. */
static _Noreturn void exit_agreed(const char *err)
{
	if (log_rank() == 0)
		log_error("%s", err);
	mpi_setup_user_error_exit();
}

/* ---- create ---------------------------------------------------------------- */

static void open_data(struct trainer *t)
{
	const struct run_spec *s = t->s;
	const struct grid_group *dp = &t->g->axis[GRID_DATA];
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	bool ok;

	ok = loader_init(&t->train, (const char *const *)s->data_path.path, s->data_path.n,
			 (int)s->seq_length, dp->rank, dp->size, (uint64_t)s->seed, err,
			 sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	if (t->train.tok.vocab != (uint32_t)s->vocab_size)
		snprintf(err, sizeof(err), "--data-path: the shards' tokenizer '%s' has vocabulary "
			 "%u, the model --vocab-size %lld", t->train.tok.id, t->train.tok.vocab,
			 (long long)s->vocab_size);
	mpi_setup_agree_or_exit(t->train.tok.vocab == (uint32_t)s->vocab_size, err);
	if (t->train.tok.eod_id < 0)
		snprintf(err, sizeof(err), "%s: the corpus's tokenizer has no end-of-document "
			 "token; prepare it with retnet-prep --append-eod",
			 s->reset_attention_mask ? "--reset-attention-mask" : "--eod-mask-loss");
	mpi_setup_agree_or_exit(t->train.tok.eod_id >= 0 ||
				(!s->reset_attention_mask && !s->eod_mask_loss), err);
	t->have_valid = s->valid_data_path.n > 0;
	if (!t->have_valid)
		return;
	ok = loader_init(&t->valid, (const char *const *)s->valid_data_path.path,
			 s->valid_data_path.n, (int)s->seq_length, dp->rank, dp->size,
			 (uint64_t)s->seed, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	ok = tokenizer_check_same(&t->valid.tok, "--valid-data-path", &t->train.tok,
				  "--data-path", err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
}

/*
 * AdamW and the data-parallel reduction that feeds it: every rank updates the whole
 * model from an all-reduced gradient, or (--use-distributed-optimizer) each keeps the
 * moments of its shard of every gradient bucket only, updates that shard from a
 * reduce-scattered gradient, and the parameters are all-gathered after the update.
 * The shards' boundaries fall on tensor rows, so each is a rectangle of its tensors
 * in a checkpoint. collective: the data axis
 */
static void setup_optimizer(struct trainer *t, const struct adamw_config *oc)
{
	struct param_set *p = model_params(t->m);
	const int dp = t->g->replicas.size, n = model_grad_range_count(t->m);
	struct grad_range *r = xcalloc((size_t)n, sizeof(*r));
	size_t *counts = xcalloc((size_t)n * (size_t)dp, sizeof(*counts));
	struct param_range *own = xcalloc((size_t)n, sizeof(*own));

	t->distributed = t->s->use_distributed_optimizer;
	model_grad_ranges(t->m, r);
	for (int i = 0; t->distributed && i < n; i++)
		adamw_shard_counts(p, (struct param_range){r[i].offset, r[i].count}, dp,
				   counts + (size_t)i * (size_t)dp);
	t->dp_sync = train_step_dp_sync(t->m, t->g, t->distributed ? GRAD_SYNC_REDUCE_SCATTER
								    : GRAD_SYNC_ALLREDUCE,
					 t->distributed ? counts : NULL);
	for (int i = 0; i < n; i++)
		grad_sync_shard(t->dp_sync, i, &own[i].offset, &own[i].count);
	adamw_init(&t->opt, oc, p, t->distributed ? own : NULL, t->distributed ? n : 0);
	/* the NaN of --inject-fault nan-grad lands where this rank's norm counts it */
	t->inject_at = p->total / 2;
	if (t->distributed && t->opt.npieces)
		t->inject_at = t->opt.pieces[0].offset + t->opt.pieces[0].count / 2;
	free(r);
	free(counts);
	free(own);
}

struct trainer *trainer_create(struct launch *l)
{
	struct trainer *t = xcalloc(1, sizeof(*t));
	const struct run_spec *s = &l->spec;
	const struct grid *g = &l->grid;
	const int dp = g->axis[GRID_DATA].size;
	const struct adamw_config oc = {s->adam_beta1, s->adam_beta2, s->adam_eps,
					s->weight_decay};
	bool ok = true;

	watchdog_start(s->distributed_timeout_minutes, TRAINER_EXIT_STALLED);
	t->l = l;
	t->s = s;
	t->g = g;
	t->n_micro = s->global_batch_size / (s->micro_batch_size * dp);
	open_data(t);
	t->local_rows = loader_local_rows(&t->train, (int)s->global_batch_size);
	t->inputs = xmalloc(sizeof(int32_t) * (size_t)(t->local_rows * s->seq_length));
	t->targets = xmalloc(sizeof(int32_t) * (size_t)(t->local_rows * s->seq_length));
	t->piece_len = s->seq_length / g->axis[GRID_CONTEXT].size;
	t->piece_in = xmalloc(sizeof(int32_t) * (size_t)(t->local_rows * t->piece_len));
	t->piece_tg = xmalloc(sizeof(int32_t) * (size_t)(t->local_rows * t->piece_len));
	/* held-out windows fill a micro-batch: room for the larger of the two */
	{
		const int64_t rows = t->local_rows > s->micro_batch_size ? t->local_rows
									 : s->micro_batch_size;

		if (s->reset_attention_mask)
			t->starts = xmalloc((size_t)(rows * s->seq_length));
		if (s->eod_mask_loss)
			t->loss_mask = xmalloc((size_t)(rows * t->piece_len));
	}

	{
		int *slots = xcalloc((size_t)model_chunk_count(s, g), sizeof(*slots));

		train_step_slots(g, s, (int)t->n_micro, slots);
		t->m = launch_model_chunked(l, slots);
		free(slots);
	}
	setup_optimizer(t, &oc);
	t->sched = (struct lr_schedule){
		.lr = s->lr, .min_lr = s->min_lr, .warmup_iters = s->lr_warmup_iters,
		.decay_iters = s->lr_decay_iters,
		.style = !strcmp(s->lr_decay_style, "cosine")	 ? LR_DECAY_COSINE
			 : !strcmp(s->lr_decay_style, "linear") ? LR_DECAY_LINEAR
								 : LR_DECAY_CONSTANT,
	};
	train_step_init(&t->step, t->m, g, s, (int)t->n_micro, t->dp_sync);
	train_guard_init(&t->guard, s);
	/* collective: all ranks (the writer's communicator) */
	t->async = s->async_save ? ckpt_async_create(g->world) : NULL;
	if (g->world_rank == 0 && s->metrics[0]) {
		t->metrics = metrics_open(s->metrics);
		ok = t->metrics != NULL;
	}
	mpi_setup_agree_or_exit(ok, "--metrics: cannot open the metrics file (see the line above)");

	ceiling_init(&t->ceiling, g->world, s->bf16);
	t->flops_per_token = model_flops_per_token(s);
	t->tokens_per_iter = (double)(s->global_batch_size * s->seq_length);
	log0("retnet-train: %d ranks (DP %d x PP %d x CP %d x TP %d), %d threads each; model d=%lld "
	     "L=%lld H=%lld f=%lld, %zu parameters; T=%lld C=%lld; global batch %lld "
	     "(%lld micro-batches of %lld per rank); %s matmuls, ceiling %.1f GFLOP/s\n",
	     g->world_size, dp, g->axis[GRID_PIPELINE].size, g->axis[GRID_CONTEXT].size,
	     g->axis[GRID_TENSOR].size,
	     omp_get_max_threads(), (long long)s->hidden_size, (long long)s->num_layers,
	     (long long)s->num_heads, (long long)s->ffn_hidden_size, model_params(t->m)->total,
	     (long long)s->seq_length, (long long)s->chunk_size,
	     (long long)s->global_batch_size, (long long)t->n_micro,
	     (long long)s->micro_batch_size, s->bf16 ? "bf16" : "fp32", t->ceiling.flops * 1e-9);
	log0("AdamW: optimizer state %zu floats (%.1f MiB) on rank 0, %s\n",
	     2 * t->opt.state_floats, 8.0 * (double)t->opt.state_floats / 1048576.0,
	     t->distributed ? "its shard of the moments (--use-distributed-optimizer)"
			    : "the moments of all its parameters");
	if (model_chunks(t->m) > 1)
		log0("pipeline: interleaved 1F1B over %d virtual stages, %d chunks of %lld layers "
		     "per rank\n", model_chunks(t->m) * g->axis[GRID_PIPELINE].size,
		     model_chunks(t->m), (long long)s->num_layers_per_virtual_stage);
	return t;
}

/* ---- resume ---------------------------------------------------------------- */

/* Does --load name a directory with a checkpoint pointer? (rank 0 looks)
 * 0: has `latest`; 1: a directory without one; -1: no such directory */
static int load_dir_state(const char *dir, const struct grid *g)
{
	int state = 0;
	char path[FLAGS_PATH_MAX + 16];
	struct stat st;

	if (g->world_rank == 0) {
		snprintf(path, sizeof(path), "%s/latest", dir);
		if (stat(dir, &st) || !S_ISDIR(st.st_mode))
			state = -1;
		else if (stat(path, &st))
			state = 1;
	}
	comm_bcast(g->world, &state, sizeof(state), 0);
	return state;
}

/*
 * The model, AdamW state, data position and iteration of the latest checkpoint in
 * the directory, whatever layout wrote it; the model's shape and the tokenizer must
 * match the flags and the data. A directory without a checkpoint yet (a first run
 * of a job that saves there) starts from the seed.
 */
int64_t trainer_resume(struct trainer *t)
{
	const struct run_spec *s = t->s;
	struct ckpt_info *info;
	struct run_spec *mine;
	char err[2 * FLAGS_PATH_MAX + 256] = "";
	int64_t iteration;
	int state;

	if (!s->load[0])
		return 0;
	state = load_dir_state(s->load, t->g);
	if (state < 0) {
		snprintf(err, sizeof(err), "--load: '%s' is not a directory", s->load);
		exit_agreed(err);
	}
	if (state > 0) {
		log0("--load: no checkpoint in %s yet: starting from the seed\n", s->load);
		return 0;
	}
	watchdog_phase("start-up: reading the checkpoint to resume from");
	info = xcalloc(1, sizeof(*info));
	mine = xmalloc(sizeof(*mine));
	*mine = *s;
	/* spec_adopt on retnet-train's spec: the model's shape must be the same */
	if (train_ckpt_resolve(s->load, -1, &iteration, t->g->world, err, sizeof(err)) ||
	    train_ckpt_read_info(s->load, iteration, info, t->g->world, err, sizeof(err)) ||
	    spec_adopt(mine, &info->model, info->path, err, sizeof(err)) ||
	    tokenizer_check_same(&t->train.tok, "--data-path", &info->tok, info->path, err,
				 sizeof(err)) ||
	    loader_state_set(&t->train, &info->loader, err, sizeof(err)) ||
	    train_ckpt_load(s->load, iteration, t->m, &t->opt, t->g, err, sizeof(err)))
		exit_agreed(err);
	t->opt.step = info->adam_step;
	log0("resumed from %s (iteration %lld, written at DP %lld x PP %lld x CP %lld x TP "
	     "%lld)\n", info->path, (long long)iteration, (long long)info->dp, (long long)info->pp,
	     (long long)info->cp, (long long)info->tp);
	free(mine);
	train_ckpt_info_free(info);
	free(info);
	return iteration;
}

/* ---- run ------------------------------------------------------------------- */

/* This rank's piece of each of the first `rows` windows in t->inputs/targets (all of
 * it without context parallelism) into t->piece_in/piece_tg. */
static void take_pieces(struct trainer *t, int64_t rows)
{
	const int64_t T = t->s->seq_length, P = t->piece_len;
	const int64_t at = t->g->axis[GRID_CONTEXT].rank * P;

	for (int64_t r = 0; r < rows; r++) {
		memcpy(t->piece_in + r * P, t->inputs + r * T + at, sizeof(int32_t) * (size_t)P);
		memcpy(t->piece_tg + r * P, t->targets + r * T + at, sizeof(int32_t) * (size_t)P);
	}
}

/*
 * The documents of the first `rows` windows in t->inputs (this rank's pieces for the
 * mask), handed to the step. Returns the targets counted in the loss among the
 * first `counted_rows` rows' pieces.
 */
static int64_t take_docs(struct trainer *t, int64_t rows, int64_t counted_rows)
{
	const int64_t T = t->s->seq_length, P = t->piece_len;
	const int32_t eod = t->train.tok.eod_id;
	int64_t counted = counted_rows * P;

	if (t->starts)
		for (int64_t r = 0; r < rows; r++)
			doc_starts_from_tokens(t->inputs + r * T, T, eod, t->starts + r * T);
	if (t->loss_mask) {
		doc_loss_mask(t->piece_in, rows * P, eod, t->loss_mask);
		counted = 0;
		for (int64_t i = 0; i < counted_rows * P; i++)
			counted += t->loss_mask[i];
	}
	t->step.starts = t->starts;
	t->step.loss_mask = t->loss_mask;
	return counted;
}

/*
 * Mean loss over the held-out windows in corpus order: this data-parallel rank's
 * contiguous share, at most max_batches micro-batches of it (a short last batch is
 * padded with its last window and only its real rows are counted), through the
 * pipeline. collective: the whole grid
 */
static double evaluate(struct trainer *t, int64_t max_batches)
{
	const int64_t B = t->s->micro_batch_size, T = t->s->seq_length;
	int32_t *inputs = t->inputs, *targets = t->targets;
	double sum[2] = {0.0, 0.0}; /* summed token losses, tokens */

	loader_seq_rewind(&t->valid);
	for (int64_t i = 0; i < max_batches; i++) {
		int rows = loader_seq_next(&t->valid, inputs, targets, (int)B);

		if (rows == 0)
			break;
		for (int64_t r = rows; r < B; r++) {
			memcpy(inputs + r * T, inputs + (rows - 1) * T, sizeof(int32_t) * (size_t)T);
			memcpy(targets + r * T, targets + (rows - 1) * T, sizeof(int32_t) * (size_t)T);
		}
		take_pieces(t, B);
		sum[1] += (double)take_docs(t, B, rows);
		sum[0] += train_step_forward_only(&t->step, t->piece_in, t->piece_tg, rows, 0);
		watchdog_progress();
	}
	watchdog_phase("the held-out loss all-reduces");
	/* The losses live on the last stage; every stage counted the same tokens; the
	 * data x context plane holds the other windows and pieces. */
	comm_allreduce_sum_f64(t->g->axis[GRID_PIPELINE].comm, sum, 1);
	comm_allreduce_sum_f64(t->g->replicas.comm, sum, 2);
	return sum[1] > 0 ? sum[0] / sum[1] : NAN;
}

/* Any rank signalled, or would the next step and a save end past the wall-time
 * budget (counted from the process's start)? collective: all ranks */
static bool should_stop(const struct trainer *t)
{
	bool mine = stop_signal != 0;

	if (t->s->exit_duration_in_mins > 0 &&
	    metrics_now_s() - process_start + t->last_step_s + t->last_save_s >
		    60.0 * t->s->exit_duration_in_mins)
		mine = true;
	watchdog_phase("the stop agreement at the iteration boundary");
	return comm_first_rank_with(t->g->world, mine) >= 0;
}

/* Waits for the background save in flight, if any; a failure ends the run (the
 * previous checkpoint stays the latest). collective: the whole grid */
static void wait_save(struct trainer *t)
{
	char err[1024];
	double waited;

	if (!t->async || !ckpt_async_busy(t->async))
		return;
	watchdog_phase_at("the background write of checkpoint %d",
			  (int)ckpt_async_iteration(t->async), 0);
	if (ckpt_async_wait(t->async, &waited, err, sizeof(err)))
		exit_agreed(err);
	watchdog_progress();
	log0("saved checkpoint %s/iter_%07lld.h5 in the background (waited %.2f s for it)\n",
	     t->s->save, (long long)ckpt_async_iteration(t->async), waited);
}

/* Writes a checkpoint of iteration `iteration`, or with --async-save starts writing
 * it (after the one in flight); a failure ends the run (the previous checkpoint
 * stays the latest). collective: the whole grid */
static void save(struct trainer *t, int64_t iteration)
{
	const struct run_spec *s = t->s;
	char err[1024];
	const double t_wait = metrics_now_s(); /* a save's cost to this thread starts here */
	double t0;

	wait_save(t);
	t0 = metrics_now_s();
	watchdog_phase_at("the checkpoint write of iteration %d", (int)iteration, 0);
	if (train_ckpt_save(s->save, iteration, (int)s->ckpt_compression_level,
			    (int)s->keep_last, s, t->m, &t->opt, &t->train, t->g, t->async, err,
			    sizeof(err)))
		exit_agreed(err);
	watchdog_progress();
	t->last_save_s = metrics_now_s() - t_wait;
	if (t->async)
		log0("checkpoint %s/iter_%07lld.h5: copied in %.2f s, writing in the background\n",
		     s->save, (long long)iteration, metrics_now_s() - t0);
	else
		log0("saved checkpoint %s/iter_%07lld.h5 in %.2f s\n", s->save,
		     (long long)iteration, metrics_now_s() - t0);
}

/* One optimizer step on the next global batch: its loss (mean over micro-batches
 * and data-parallel ranks) and gradient norm, and whether the guards let it update.
 * collective: the whole grid */
static double step(struct trainer *t, int64_t it, double *grad_norm, bool *updated)
{
	const struct grid *g = t->g;
	/* the ranks over which the mean loss is taken and the gradient summed: data
	 * replicas, each with the same number of pieces of equal length */
	const int replicas = g->replicas.size;
	struct param_set *p = model_params(t->m);
	char err[1024];
	double loss, sumsq, counted;

	param_set_zero_grad(p);
	ENSURE(loader_next_batch(&t->train, t->inputs, t->targets,
				 (int)t->s->global_batch_size) == (int)t->local_rows);
	take_pieces(t, t->local_rows);
	counted = (double)take_docs(t, t->local_rows, t->local_rows);
	if (t->loss_mask) {
		/* Each micro-batch divides its counted losses by its share of the global
		 * count: the mean over micro-batches and replicas below is then the mean
		 * over the counted targets of the global batch, whatever the layout.
		 * collective: the data x context plane (each pipeline stage alike) */
		comm_allreduce_sum_f64(g->replicas.comm, &counted, 1);
		t->step.loss_count = counted / (double)(t->n_micro * replicas);
	}
	loss = train_step_run(&t->step, t->piece_in, t->piece_tg,
			      (float)(1.0 / (double)(t->n_micro * replicas)));
	watchdog_phase("the all-reduces of the loss, the gradient norm and the guards");
	/* The loss lives on the last stage; rank 0 (stage 0) logs it. */
	comm_allreduce_sum_f64(g->axis[GRID_PIPELINE].comm, &loss, 1);
	comm_allreduce_sum_f64(g->replicas.comm, &loss, 1);
	loss /= (double)(t->n_micro * replicas);

	/* After the reduction every DP replica holds the same gradient (all-reduce) or
	 * its shard of it (distributed optimizer); the stages hold disjoint parts of the
	 * model. Each element is counted once. */
	train_guard_inject_grad(&t->guard, it, p, t->inject_at, g);
	if (t->distributed) {
		double sums[2];

		adamw_grad_sumsq(&t->opt, p, sums);
		comm_allreduce_sum_f64(g->replicas.comm, sums, 2);
		sumsq = model_grad_sumsq_combine(t->m, sums);
	} else {
		sumsq = model_grad_sumsq(t->m);
	}
	comm_allreduce_sum_f64(g->axis[GRID_PIPELINE].comm, &sumsq, 1);
	*grad_norm = sqrt(sumsq);
	if (train_guard_step_ok(&t->guard, it, loss, *grad_norm, g, updated, err, sizeof(err)))
		exit_agreed(err);
	if (*updated) {
		float clip_scale = 1.0f;

		if (t->s->clip_grad > 0 && *grad_norm > t->s->clip_grad)
			clip_scale = (float)(t->s->clip_grad / (*grad_norm + 1e-6));
		if (clip_scale != 1.0f)
			grad_scale(p, clip_scale);
		adamw_step(&t->opt, p, lr_at(&t->sched, it));
		/* collective: the data axis; every replica holds the whole model again */
		if (t->distributed)
			t->gather_s += grad_sync_gather(t->dp_sync, p->data);
	}
	if (train_guard_check_replicas(&t->guard, it, p, g, err, sizeof(err)))
		exit_agreed(err);
	return loss;
}

/* What this rank sent and how long it waited, per axis, since the start: the
 * tensor-parallel all-reduces, the context-parallel all-gathers, the data-parallel
 * gradient reduction (the wait backward did not hide) and parameter gathers, and the
 * pipeline's sends (the schedule's time not spent computing). */
static void comm_totals(const struct trainer *t, struct comm_tally axis[GRID_AXES])
{
	model_comm(t->m, &axis[GRID_TENSOR], &axis[GRID_CONTEXT]);
	axis[GRID_DATA] = (struct comm_tally){grad_sync_bytes_sent(t->dp_sync),
					      t->step.dp_wait_s + t->gather_s};
	axis[GRID_PIPELINE] = (struct comm_tally){t->step.pp_bytes,
						  t->step.schedule_s - t->step.compute_s};
}

/* What the log line sums up since the previous one. */
struct log_window {
	double t, loss_sum, gather_s, compute_s, schedule_s;
	struct comm_tally comm[GRID_AXES];
	int64_t iters, losses; /* all steps, updating steps */
};

static void log_window_start(struct log_window *w, const struct trainer *t)
{
	*w = (struct log_window){
		.t = metrics_now_s(), .gather_s = t->gather_s, .compute_s = t->step.compute_s,
		.schedule_s = t->step.schedule_s,
	};
	comm_totals(t, w->comm);
}

/* The log line and the metrics line of iteration it (0-based). collective: all
 * ranks (the pipeline's idle fraction is the stages' mean; the ceiling, one
 * decision) */
static void log_progress(struct trainer *t, const struct log_window *w, int64_t it,
			 int64_t start, double grad_norm)
{
	static const char *const axis_key[GRID_AXES] = {"tp", "cp", "dp", "pp"};
	const double now = metrics_now_s(), elapsed = now - t->t_start, n = (double)w->iters;
	const double lr = lr_at(&t->sched, it);
	const double tps = t->tokens_per_iter * n / (now - w->t);
	const double mfu = ceiling_utilisation(&t->ceiling, tps * t->flops_per_token);
	const double eta = elapsed / (double)(it + 1 - start) *
			   (double)(t->s->train_iters - it - 1);
	const double gather_ms = 1e3 * (t->gather_s - w->gather_s) / n;
	/* Pipeline idle: the schedule's time not spent computing, mean of the stages. */
	double idle = 1.0 - (t->step.compute_s - w->compute_s) /
				    (t->step.schedule_s - w->schedule_s);
	struct comm_tally now_comm[GRID_AXES];
	double ms[GRID_AXES], mb[GRID_AXES];
	const char *keys[32];
	double vals[32];
	char names[2 * GRID_AXES][24];
	int k = 0;

	comm_totals(t, now_comm);
	for (int a = 0; a < GRID_AXES; a++) {
		ms[a] = 1e3 * (now_comm[a].seconds - w->comm[a].seconds) / n;
		mb[a] = 1e-6 * (now_comm[a].bytes - w->comm[a].bytes) / n;
	}
	watchdog_phase("the log line's all-reduce");
	comm_allreduce_sum_f64(t->g->axis[GRID_PIPELINE].comm, &idle, 1);
	idle /= (double)t->g->axis[GRID_PIPELINE].size;
	/* The gradient wait over the ranks holding the same parameters: the rank that
	 * ends backward last waits only for the reductions backward did not hide (the
	 * least), the others also for it (the most). */
	double wait_range[2] = {ms[GRID_DATA] - gather_ms, -(ms[GRID_DATA] - gather_ms)};
	comm_allreduce_max_f64(t->g->replicas.comm, wait_range, 2);
#define KV(key, value) (keys[k] = (key), vals[k++] = (value))
	KV("iteration", (double)(it + 1));
	/* NaN when every step since the last line was skipped */
	KV("loss", w->losses ? w->loss_sum / (double)w->losses : NAN);
	KV("lr", lr);
	KV("grad_norm", grad_norm);
	KV("tokens", t->tokens_per_iter * (double)(it + 1));
	KV("tokens_per_sec", tps);
	KV("mfu", mfu);
	KV("ceiling_gflops", t->ceiling.flops * 1e-9);
	KV("elapsed_s", elapsed);
	/* communication of rank 0, per step: what it did not hide behind compute */
	KV("tp_allreduce_ms", ms[GRID_TENSOR]);
	KV("dp_wait_ms", ms[GRID_DATA] - gather_ms);
	KV("dp_wait_min_ms", -wait_range[1]);
	KV("dp_wait_max_ms", wait_range[0]);
	KV("pipeline_idle", idle);
	KV("skipped_iters", (double)t->guard.skipped_total);
	if (t->distributed)
		KV("dp_gather_ms", gather_ms);
	for (int a = 0; a < GRID_AXES; a++) {
		snprintf(names[2 * a], sizeof(names[0]), "%s_bytes", axis_key[a]);
		snprintf(names[2 * a + 1], sizeof(names[0]), "%s_comm_ms", axis_key[a]);
		KV(names[2 * a], 1e6 * mb[a]);
		KV(names[2 * a + 1], ms[a]);
	}
#undef KV
	log0("iter %6lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | MFU %.1f%%%s | "
	     "comm ms/step TP %.0f CP %.0f DP %.0f PP %.0f, MB/step %.1f %.1f %.1f %.1f | "
	     "elapsed %.0fs | ETA %.0fs\n",
	     (long long)(it + 1), (long long)t->s->train_iters, vals[1], lr, grad_norm, tps,
	     100.0 * mfu, mfu > 1.0 ? " (above the ceiling: measured low)" : "", ms[GRID_TENSOR], ms[GRID_CONTEXT], ms[GRID_DATA], ms[GRID_PIPELINE],
	     mb[GRID_TENSOR], mb[GRID_CONTEXT], mb[GRID_DATA], mb[GRID_PIPELINE], elapsed, eta);
	metrics_write(t->metrics, k, keys, vals);
}

static void max_over_comm(double *v, int n, void *comm)
{
	comm_allreduce_max_f64(*(MPI_Comm *)comm, v, (size_t)n);
}

/* --matmul-autotune, after the first step has made the model's matmul plans: the
 * ranks of a pipeline stage (every tensor, context and data-parallel rank of it runs
 * the same shapes) time them together and keep the same implementations. */
static void autotune_matmuls(struct trainer *t)
{
	struct matmul_tuning_totals tt;
	MPI_Comm stage;
	struct matmul_agree agree = {max_over_comm, &stage};
	int tuned;

	watchdog_phase("--matmul-autotune's timings, agreed by the ranks of a pipeline stage");
	/* collective: all ranks */
	CHECK_MPI(MPI_Comm_split(t->g->world, t->g->axis[GRID_PIPELINE].rank, t->g->world_rank,
				 &stage));
	tuned = model_autotune_matmuls(t->m, &agree);
	CHECK_MPI(MPI_Comm_free(&stage));
	if (tuned < 0) {
		log0("--matmul-autotune: the ranks of pipeline stage 0 made different matmul "
		     "plans; left as oneDNN chose them\n");
		return;
	}
	model_matmul_tuning(t->m, &tt);
	log0("--matmul-autotune: pipeline stage 0 timed %d matmul shapes; %d run on another "
	     "implementation than oneDNN's first choice, %.1f%% less time in all %d by the "
	     "timings (the slowest rank's)\n", tt.tuned, tt.moved,
	     tt.first_s > 0 ? 100.0 * (1.0 - tt.chosen_s / tt.first_s) : 0.0, tt.tuned);
}

int trainer_run(struct trainer *t, int64_t start)
{
	const struct run_spec *s = t->s;
	struct log_window w;
	int64_t saved_at = start, stopped_at = -1;

	t->t_start = metrics_now_s();
	log_window_start(&w, t);
	for (int64_t it = start; it < s->train_iters; it++) {
		double grad_norm, loss, t0;
		bool updated;

		/* Preemption and the wall-time budget: one decision for the whole job, at
		 * an iteration boundary. collective: all ranks, every iteration */
		if (should_stop(t)) {
			stopped_at = it;
			break;
		}
		t0 = metrics_now_s();
		loss = step(t, it, &grad_norm, &updated);
		watchdog_progress();
		t->last_step_s = metrics_now_s() - t0;
		if (it == start && s->matmul_autotune)
			autotune_matmuls(t);
		if (updated) {
			w.loss_sum += loss;
			w.losses++;
		}
		w.iters++;
		if ((it + 1) % s->log_interval == 0 || it + 1 == s->train_iters) {
			log_progress(t, &w, it, start, grad_norm);
			log_window_start(&w, t);
		}
		if (s->save[0] && s->save_interval > 0 && (it + 1) % s->save_interval == 0) {
			save(t, it + 1);
			saved_at = it + 1;
		}
		if (t->have_valid && s->eval_interval > 0 && (it + 1) % s->eval_interval == 0 &&
		    it + 1 < s->train_iters) {
			double vl = evaluate(t, s->eval_iters);
			const char *keys[] = {"iteration", "tokens", "val_loss"};
			double vals[] = {(double)(it + 1), t->tokens_per_iter * (double)(it + 1), vl};

			log0("iter %6lld | held-out loss %.4f\n", (long long)(it + 1), vl);
			metrics_write(t->metrics, 3, keys, vals);
			w.t = metrics_now_s();
		}
	}
	if (stopped_at >= 0) {
		/* Before the first step of this run there is nothing new to save. */
		const int status = stopped_at == start ? TRAINER_EXIT_NO_STEP : TRAINER_EXIT_REQUEUE;

		if (s->save[0] && saved_at != stopped_at)
			save(t, stopped_at);
		wait_save(t);
		log0("retnet-train: stopped at iteration %lld of %lld (%s); %s; exit status %d "
		     "asks the job script to requeue\n", (long long)stopped_at,
		     (long long)s->train_iters, stop_signal ? "signal" : "--exit-duration-in-mins",
		     !s->save[0] ? "no --save: nothing written"
		     : status == TRAINER_EXIT_NO_STEP
			     ? "before any step of this run: nothing new to save, the latest "
			       "checkpoint is the one it started from"
			     : "checkpoint written",
		     status);
		return status;
	}
	if (s->save[0] && (saved_at != s->train_iters || start == s->train_iters))
		save(t, s->train_iters);
	wait_save(t);
	return 0;
}

/* ---- report ---------------------------------------------------------------- */

/* The tensors' values back to back (no padding), float32 little-endian. */
static void save_raw_params(const char *path, const struct param_set *p)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		FATAL("--save-raw-params: cannot create '%s': %s", path, strerror(errno));
	for (int i = 0; i < p->count; i++)
		if (fwrite(p->data + p->desc[i].offset, sizeof(float), p->desc[i].numel, f) !=
		    p->desc[i].numel)
			FATAL("--save-raw-params: writing '%s': %s", path, strerror(errno));
	if (fclose(f))
		FATAL("--save-raw-params: closing '%s': %s", path, strerror(errno));
}

void trainer_report(struct trainer *t)
{
	const struct run_spec *s = t->s;

	if (t->have_valid) {
		double vl = evaluate(t, INT64_MAX);
		/* bits/byte = nats/token / ln 2 x tokens/byte (1 for the byte tokenizer). */
		double bpb = vl / LN2 * (double)t->valid.n_tokens / (double)t->valid.source_bytes;
		const char *keys[] = {"iteration", "tokens", "val_loss", "val_bits_per_byte"};
		double vals[] = {(double)s->train_iters,
				 t->tokens_per_iter * (double)s->train_iters, vl, bpb};

		log0("final held-out loss %.4f nats/token, %.4f bits per byte, perplexity %.3f\n",
		     vl, bpb, exp(vl));
		metrics_write(t->metrics, 4, keys, vals);
	}
	if (s->save_raw_params[0] && t->g->world_rank == 0)
		save_raw_params(s->save_raw_params, model_params(t->m));
	{
		double rss = metrics_peak_rss_mib(), max_rss = rss;

		/* collective: all ranks */
		comm_allreduce_max_f64(MPI_COMM_WORLD, &max_rss, 1);
		log0("done in %.1f s, peak RSS %.0f MiB (rank 0), %.0f MiB (the largest rank); "
		     "MFU against a ceiling of %.1f GFLOP/s, the best of %d measurements\n",
		     metrics_now_s() - t->t_start, rss, max_rss, t->ceiling.flops * 1e-9,
		     t->ceiling.count);
	}
}

void trainer_destroy(struct trainer *t)
{
	if (t->metrics)
		fclose(t->metrics);
	free(t->inputs);
	free(t->targets);
	free(t->starts);
	free(t->loss_mask);
	free(t->piece_in);
	free(t->piece_tg);
	train_step_free(&t->step);
	/* collective: the data axis; all ranks */
	grad_sync_destroy(t->dp_sync);
	ckpt_async_destroy(t->async);
	adamw_free(&t->opt);
	model_destroy(t->m);
	loader_free(&t->train);
	if (t->have_valid)
		loader_free(&t->valid);
	free(t);
}
