/*
 * retnet-train: trains a RetNet under mpirun (data-parallel over all ranks for now).
 *
 *   setup      flags and config file, validated on every rank, agreed, then the grid
 *   data       token shards, a disjoint deterministic window stream per DP rank
 *   model      parameters made from the seed (the same on every layout), AdamW
 *   train      micro-batches -> gradient buckets all-reduced during backward ->
 *              clip -> AdamW; a log line and a JSON metrics line per log interval
 *   report     held-out loss and bits per byte
 *
 * Test hook: RETNET_CEILING_SIZE=N (>= 16) measures the start-up matmul ceiling on
 * an N^3 sgemm instead of 1024^3, for runs under valgrind (tests/cli/valgrind.sh).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/stat.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/loader.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/mpi_setup.h"
#include "trainer/config.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"
#include "trainer/train_ckpt.h"
#include "trainer/train_guard.h"
#include "trainer/train_step.h"

#define LN2 0.69314718055994530942

static struct model_config model_config_of(const struct train_config *c)
{
	struct model_config mc = {
		.vocab = c->vocab_size, .hidden = c->hidden_size, .layers = c->num_layers,
		.heads = c->num_heads,
		.ffn_hidden = c->ffn_hidden_size ? c->ffn_hidden_size : 2 * c->hidden_size,
		.chunk = c->chunk_size, .seq_len = c->seq_length,
		.micro_batch = c->micro_batch_size, .seed = (uint64_t)c->seed,
		.recompute = c->recompute_activations,
	};
	return mc;
}

/*
 * Mean loss over the held-out windows in corpus order: this data-parallel rank's
 * contiguous share, at most max_batches micro-batches of it (a short last batch is
 * padded with its last window and only its real rows are counted), through the
 * pipeline. Collective over the whole grid.
 */
static double evaluate(struct train_step *ts, struct loader *valid, int64_t max_batches,
		       int32_t *inputs, int32_t *targets)
{
	const struct grid *g = ts->g;
	const int64_t B = ts->m->cfg.micro_batch, T = ts->m->cfg.seq_len;
	double sum[2] = {0.0, 0.0}; /* summed token losses, tokens */

	loader_seq_rewind(valid);
	for (int64_t i = 0; i < max_batches; i++) {
		int rows = loader_seq_next(valid, inputs, targets, (int)B);

		if (rows == 0)
			break;
		for (int64_t r = rows; r < B; r++) {
			memcpy(inputs + r * T, inputs + (rows - 1) * T, sizeof(int32_t) * (size_t)T);
			memcpy(targets + r * T, targets + (rows - 1) * T, sizeof(int32_t) * (size_t)T);
		}
		sum[0] += train_step_forward_only(ts, inputs, targets, rows);
		sum[1] += (double)(rows * T);
	}
	/* The losses live on the last stage; every stage counted the same tokens. */
	comm_allreduce_sum_f64(g->pp_comm, sum, 1);
	comm_allreduce_sum_f64(g->dp_comm, sum, 2);
	return sum[1] > 0 ? sum[0] / sum[1] : NAN;
}

/* Exit status of a run stopped early with a checkpoint: "requeue me". */
#define EXIT_REQUEUE 3

/* Set by SIGUSR1 or SIGTERM (SLURM's --signal and preemption, scancel). Installed
 * first thing in main, so a signal during start-up (MPI_Init, model set-up, resume)
 * is acted on at the first iteration instead of killing the rank: the default action
 * of SIGUSR1 ends the process, and the job would fail instead of requeueing. (Open
 * MPI's own handlers in a rank are for signals 6, 7, 8, 11: MCA opal_signal.) */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void install_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESTART; /* a checkpoint write is not cut short by EINTR */
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	CHECK_SYS(sigaction(SIGTERM, &sa, NULL));
}

/* Any rank signalled, or over the wall-time budget? collective: all ranks */
static bool should_stop(const struct train_config *cfg, double t_start, const struct grid *g)
{
	bool mine = stop_signal != 0;

	if (cfg->exit_duration_in_mins > 0 &&
	    metrics_now_s() - t_start > 60.0 * cfg->exit_duration_in_mins)
		mine = true;
	return comm_first_rank_with(g->world, mine) >= 0;
}

/* Ends a run that stopped early but cleanly: every rank finalizes and exits. */
static _Noreturn void cleanup_and_exit(int status)
{
	mpi_setup_finalize();
	exit(status);
}

/* A failure all ranks agree on (err set on every rank): rank 0 prints, all exit 2. */
static _Noreturn void exit_agreed(const char *err)
{
	if (log_rank() == 0)
		log_error("%s", err);
	mpi_setup_user_error_exit();
}

/* Writes a checkpoint of iteration `iteration`; a failure ends the run (the
 * previous checkpoint stays the latest). collective: the whole grid */
static void save(const struct train_config *cfg, int64_t iteration, const struct model *m,
		 const struct adamw *opt, const struct loader *train, const struct grid *g)
{
	char err[1024];
	double t0 = metrics_now_s();

	if (train_ckpt_save(cfg->save, iteration, (int)cfg->ckpt_compression_level,
			    (int)cfg->keep_last, m, opt, train, g, err, sizeof(err)))
		exit_agreed(err);
	log0("saved checkpoint %s/iter_%07lld.h5 in %.2f s\n", cfg->save, (long long)iteration,
	     metrics_now_s() - t0);
}

/* Does --load name a directory with a checkpoint pointer? (rank 0 looks) */
static int load_dir_state(const char *dir, const struct grid *g)
{
	/* 0: has `latest`; 1: a directory without one; -1: no such directory */
	int state = 0;
	char path[CONFIG_PATH_MAX + 16];
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
 * --load: the model, AdamW state, data position and iteration of the latest
 * checkpoint in the directory, whatever layout wrote it; the model's shape and the
 * tokenizer must match the flags and the data. A directory without a checkpoint
 * yet (a first run of a job that saves there) starts from the seed. Returns the
 * iteration to continue from. collective: the whole grid
 */
static int64_t resume(const struct train_config *cfg, struct model *m, struct adamw *opt,
		      struct loader *train, const struct grid *g)
{
	struct ckpt_info info;
	char err[2 * CONFIG_PATH_MAX + 256] = "";
	int64_t iteration;
	int state;

	if (!cfg->load[0])
		return 0;
	state = load_dir_state(cfg->load, g);
	if (state < 0) {
		snprintf(err, sizeof(err), "--load: '%s' is not a directory", cfg->load);
		exit_agreed(err);
	}
	if (state > 0) {
		log0("--load: no checkpoint in %s yet: starting from the seed\n", cfg->load);
		return 0;
	}
	if (train_ckpt_resolve(cfg->load, -1, &iteration, g->world, err, sizeof(err)) ||
	    train_ckpt_read_info(cfg->load, iteration, &info, g->world, err, sizeof(err)))
		exit_agreed(err);
#define SAME(flag, field)                                                                \
	if (info.cfg.field != m->cfg.field) {                                            \
		snprintf(err, sizeof(err), "--" flag ": %lld does not match %lld in %s",  \
			 (long long)m->cfg.field, (long long)info.cfg.field, info.path);  \
		exit_agreed(err);                                                        \
	}
	SAME("vocab-size", vocab)
	SAME("hidden-size", hidden)
	SAME("num-layers", layers)
	SAME("num-heads", heads)
	SAME("ffn-hidden-size", ffn_hidden)
#undef SAME
	if (tokenizer_check_same(&train->tok, "--data-path", &info.tok, info.path, err,
				 sizeof(err)) ||
	    loader_state_set(train, &info.loader, err, sizeof(err)))
		exit_agreed(err);
	if (train_ckpt_load(cfg->load, iteration, m, opt, g, err, sizeof(err)))
		exit_agreed(err);
	opt->step = info.adam_step;
	log0("resumed from %s (iteration %lld, written at DP %lld x PP %lld x TP %lld)\n",
	     info.path, (long long)iteration, (long long)info.dp, (long long)info.pp,
	     (long long)info.tp);
	return iteration;
}

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

int main(int argc, char **argv)
{
	struct train_config cfg;
	struct grid g;
	char err[1024] = "";
	bool ok;

	/* ---- setup ---------------------------------------------------------- */
	install_stop_signals();
	mpi_setup_init(&argc, &argv);
	config_defaults(&cfg);
	ok = config_parse_args(&cfg, argc, argv, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	if (cfg.help) {
		if (log_rank() == 0)
			config_print_help("retnet-train");
		mpi_setup_finalize();
		return 0;
	}
	{
		int world;

		CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
		ok = config_validate(&cfg, world, err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}
	grid_init(&g, (int)cfg.tensor_model_parallel_size, (int)cfg.pipeline_model_parallel_size);
	if (!cfg.global_batch_size)
		cfg.global_batch_size = cfg.micro_batch_size * g.dp_size;
	if (!cfg.lr_decay_iters)
		cfg.lr_decay_iters = cfg.train_iters;

	const int64_t n_micro = cfg.global_batch_size / (cfg.micro_batch_size * g.dp_size);
	const int64_t T = cfg.seq_length;

	/* ---- data ----------------------------------------------------------- */
	struct loader train, valid;
	bool have_valid = cfg.n_valid_data_path > 0;

	const char *train_paths[CONFIG_MAX_PATHS], *valid_paths[CONFIG_MAX_PATHS];

	for (int i = 0; i < cfg.n_data_path; i++)
		train_paths[i] = cfg.data_path[i];
	for (int i = 0; i < cfg.n_valid_data_path; i++)
		valid_paths[i] = cfg.valid_data_path[i];
	ok = loader_init(&train, train_paths, cfg.n_data_path, (int)T, g.dp_rank, g.dp_size,
			 (uint64_t)cfg.seed, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	if (ok && train.tok.vocab != (uint32_t)cfg.vocab_size)
		snprintf(err, sizeof(err), "--data-path: the shards' tokenizer '%s' has vocabulary "
			 "%u, the model --vocab-size %lld", train.tok.id, train.tok.vocab,
			 (long long)cfg.vocab_size);
	mpi_setup_agree_or_exit(train.tok.vocab == (uint32_t)cfg.vocab_size, err);
	if (have_valid) {
		ok = loader_init(&valid, valid_paths, cfg.n_valid_data_path, (int)T, g.dp_rank,
				 g.dp_size, (uint64_t)cfg.seed, err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
		ok = tokenizer_check_same(&valid.tok, "--valid-data-path", &train.tok,
					  "--data-path", err, sizeof(err)) == 0;
		mpi_setup_agree_or_exit(ok, err);
	}

	/* ---- model ---------------------------------------------------------- */
	struct model_config mc = model_config_of(&cfg);
	struct model m;
	struct adamw opt;
	struct adamw_config oc = {cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay};
	struct lr_schedule sched = {
		.lr = cfg.lr, .min_lr = cfg.min_lr, .warmup_iters = cfg.lr_warmup_iters,
		.decay_iters = cfg.lr_decay_iters,
		.style = !strcmp(cfg.lr_decay_style, "cosine")	 ? LR_DECAY_COSINE
			 : !strcmp(cfg.lr_decay_style, "linear") ? LR_DECAY_LINEAR
								 : LR_DECAY_CONSTANT,
	};
	struct train_step step;
	const int64_t local_rows = loader_local_rows(&train, (int)cfg.global_batch_size);
	int32_t *inputs = xmalloc(sizeof(int32_t) * (size_t)(local_rows * T));
	int32_t *targets = xmalloc(sizeof(int32_t) * (size_t)(local_rows * T));
	FILE *metrics = NULL;

	struct model_layout layout = {
		.tp_rank = g.tp_rank, .tp_size = g.tp_size, .tp_comm = g.tp_comm,
		.pp_rank = g.pp_rank, .pp_size = g.pp_size,
		.slots = train_step_slots(&g, (int)n_micro),
	};

	model_init(&m, &mc, &layout);
	/* --bf16 on a CPU without AVX512-BF16 is a user error, not a fallback: one line,
	 * all ranks exit 2 (the ranks may sit on different nodes, so all check). */
	ok = !cfg.bf16 || model_set_bf16(&m, true, err, sizeof(err)) == 0;
	mpi_setup_agree_or_exit(ok, err);
	adamw_init(&opt, &oc, &m.params);
	train_step_init(&step, &m, &g, (int)n_micro);
	if (g.world_rank == 0 && cfg.metrics[0]) {
		metrics = metrics_open(cfg.metrics);
		ok = metrics != NULL;
	} else {
		ok = true;
	}
	mpi_setup_agree_or_exit(ok, "--metrics: cannot open the metrics file (see the line above)");

	/* MFU is against the ceiling of the precision the matmuls run in: the best of 10
	 * runs (about 60 ms), as 3 let one hiccup of a VM halve the ceiling and report
	 * an MFU above 100%. Test hook: RETNET_CEILING_SIZE=N times an N^3 product
	 * instead (valgrind runs 50x slower; only the MFU column depends on it). */
	const char *ceiling_env = getenv("RETNET_CEILING_SIZE");
	const int ceiling_n = ceiling_env && atoi(ceiling_env) >= 16 ? atoi(ceiling_env) : 1024;
	double ceiling = cfg.bf16 ? metrics_matmul_ceiling_bf16(ceiling_n, 10)
				  : metrics_matmul_ceiling(ceiling_n, 10);
	comm_allreduce_sum_f64(MPI_COMM_WORLD, &ceiling, 1);
	const double flops_per_token = model_flops_per_token(&mc);
	const double tokens_per_iter = (double)(cfg.global_batch_size * T);

	log0("retnet-train: %d ranks (DP %d x PP %d x TP %d), %d threads each; model d=%lld "
	     "L=%lld H=%lld f=%lld, %zu parameters; T=%lld C=%lld; global batch %lld "
	     "(%lld micro-batches of %lld per rank); %s matmuls, ceiling %.1f GFLOP/s\n",
	     g.world_size, g.dp_size, g.pp_size, g.tp_size, omp_get_max_threads(),
	     (long long)mc.hidden, (long long)mc.layers, (long long)mc.heads,
	     (long long)mc.ffn_hidden, m.params.total, (long long)T, (long long)mc.chunk,
	     (long long)cfg.global_batch_size, (long long)n_micro, (long long)cfg.micro_batch_size,
	     cfg.bf16 ? "bf16" : "fp32", ceiling * 1e-9);

	/* ---- resume --------------------------------------------------------- */
	const int64_t start_iter = resume(&cfg, &m, &opt, &train, &g);

	/* ---- train ---------------------------------------------------------- */
	const double t_start = metrics_now_s();
	double t_log = t_start, loss_acc = 0.0, dp_s_at_log = 0.0, tp_s_at_log = 0.0;
	double compute_s_at_log = 0.0, schedule_s_at_log = 0.0;
	int64_t iters_since_log = 0, losses_since_log = 0; /* all steps, updating steps */

	int64_t saved_at = start_iter, stopped_at = -1;

	struct train_guard guard;

	train_guard_init(&guard, &cfg);
	for (int64_t it = start_iter; it < cfg.train_iters; it++) {
		double loss_sum[1] = {0.0}, grad_norm, lr = lr_at(&sched, it);

		/* Preemption and the wall-time budget: one decision for the whole job, at an
		 * iteration boundary. collective: all ranks, every iteration */
		if (should_stop(&cfg, t_start, &g)) {
			stopped_at = it;
			break;
		}
		float clip_scale = 1.0f;

		param_set_zero_grad(&m.params);
		ENSURE(loader_next_batch(&train, inputs, targets, (int)cfg.global_batch_size) ==
		       (int)local_rows);
		loss_sum[0] = train_step_run(&step, inputs, targets,
					     (float)(1.0 / (double)(n_micro * g.dp_size)));
		/* The loss lives on the last stage; rank 0 (stage 0) logs it. */
		comm_allreduce_sum_f64(g.pp_comm, loss_sum, 1);
		comm_allreduce_sum_f64(g.dp_comm, loss_sum, 1);
		loss_sum[0] /= (double)(n_micro * g.dp_size);

		/* After the all-reduce every DP replica holds the same gradient; the
		 * stages hold disjoint parts of the model. */
		train_guard_inject_grad(&guard, it, &m, &g);
		{
			double sumsq = model_grad_sumsq(&m);

			comm_allreduce_sum_f64(g.pp_comm, &sumsq, 1);
			grad_norm = sqrt(sumsq);
		}
		bool update;

		if (train_guard_step_ok(&guard, it, loss_sum[0], grad_norm, &g, &update, err,
					sizeof(err)))
			exit_agreed(err);
		if (update) {
			if (cfg.clip_grad > 0 && grad_norm > cfg.clip_grad)
				clip_scale = (float)(cfg.clip_grad / (grad_norm + 1e-6));
			if (clip_scale != 1.0f)
				grad_scale(&m.params, clip_scale);
			adamw_step(&opt, &m.params, lr);
			loss_acc += loss_sum[0];
			losses_since_log++;
		}
		iters_since_log++;
		if (train_guard_check_replicas(&guard, it, &m, &g, err, sizeof(err)))
			exit_agreed(err);
		if ((it + 1) % cfg.log_interval == 0 || it + 1 == cfg.train_iters) {
			double now = metrics_now_s(), elapsed = now - t_start;
			double tps = tokens_per_iter * (double)iters_since_log / (now - t_log);
			double mfu = tps * flops_per_token / ceiling;
			double eta = elapsed / (double)(it + 1 - start_iter) *
				     (double)(cfg.train_iters - it - 1);
			/* Communication not hidden behind compute, per step, on rank 0. */
			double tp_ms = 1e3 * (m.tp_allreduce_s - tp_s_at_log) / (double)iters_since_log;
			double dp_ms = 1e3 * (step.dp_wait_s - dp_s_at_log) / (double)iters_since_log;
			/* Pipeline idle: the schedule's time not spent computing, mean of the
			 * stages. collective: all ranks log at the same iterations */
			double idle = 1.0 - (step.compute_s - compute_s_at_log) /
						    (step.schedule_s - schedule_s_at_log);
			comm_allreduce_sum_f64(g.pp_comm, &idle, 1);
			idle /= (double)g.pp_size;
			const char *keys[] = {"iteration", "loss", "lr", "grad_norm", "tokens",
					      "tokens_per_sec", "mfu", "elapsed_s", "tp_allreduce_ms",
					      "dp_wait_ms", "pipeline_idle", "skipped_iters"};
			/* NaN when every step since the last line was skipped */
			double vals[] = {(double)(it + 1), losses_since_log ? loss_acc / (double)losses_since_log : NAN, lr,
					 grad_norm, tokens_per_iter * (double)(it + 1), tps, mfu,
					 elapsed, tp_ms, dp_ms, idle, (double)guard.skipped_total};

			log0("iter %6lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | "
			     "%.0f tok/s | MFU %.1f%% | comm TP %.0f DP %.0f ms/step | "
			     "elapsed %.0fs | ETA %.0fs\n",
			     (long long)(it + 1), (long long)cfg.train_iters, vals[1], lr, grad_norm,
			     tps, 100.0 * mfu, tp_ms, dp_ms, elapsed, eta);
			metrics_write(metrics, 12, keys, vals);
			loss_acc = 0.0;
			iters_since_log = losses_since_log = 0;
			dp_s_at_log = step.dp_wait_s;
			compute_s_at_log = step.compute_s;
			schedule_s_at_log = step.schedule_s;
			tp_s_at_log = m.tp_allreduce_s;
			t_log = metrics_now_s();
		}
		if (cfg.save[0] && cfg.save_interval > 0 && (it + 1) % cfg.save_interval == 0) {
			save(&cfg, it + 1, &m, &opt, &train, &g);
			saved_at = it + 1;
		}
		if (have_valid && cfg.eval_interval > 0 && (it + 1) % cfg.eval_interval == 0 &&
		    it + 1 < cfg.train_iters) {
			double vl = evaluate(&step, &valid, cfg.eval_iters, inputs, targets);
			const char *keys[] = {"iteration", "tokens", "val_loss"};
			double vals[] = {(double)(it + 1), tokens_per_iter * (double)(it + 1), vl};

			log0("iter %6lld | held-out loss %.4f\n", (long long)(it + 1), vl);
			metrics_write(metrics, 3, keys, vals);
			t_log = metrics_now_s();
		}
	}

	if (stopped_at >= 0) {
		if (cfg.save[0] && saved_at != stopped_at)
			save(&cfg, stopped_at, &m, &opt, &train, &g);
		log0("retnet-train: stopped at iteration %lld of %lld (%s); %s; exit status %d "
		     "asks the job script to requeue\n", (long long)stopped_at,
		     (long long)cfg.train_iters, stop_signal ? "signal" : "--exit-duration-in-mins",
		     !cfg.save[0]      ? "no --save: nothing written"
		     : stopped_at == 0 ? "nothing to save before the first iteration"
				       : "checkpoint written",
		     EXIT_REQUEUE);
		cleanup_and_exit(EXIT_REQUEUE);
	}
	if (cfg.save[0] && (saved_at != cfg.train_iters || start_iter == cfg.train_iters))
		save(&cfg, cfg.train_iters, &m, &opt, &train, &g);

	/* ---- report --------------------------------------------------------- */
	if (have_valid) {
		double vl = evaluate(&step, &valid, INT64_MAX, inputs, targets);
		/* bits/byte = nats/token / ln 2 x tokens/byte (1 for the byte tokenizer). */
		double bpb = vl / LN2 * (double)valid.n_tokens / (double)valid.source_bytes;
		const char *keys[] = {"iteration", "tokens", "val_loss", "val_bits_per_byte"};
		double vals[] = {(double)cfg.train_iters, tokens_per_iter * (double)cfg.train_iters,
				 vl, bpb};

		log0("final held-out loss %.4f nats/token, %.4f bits per byte, perplexity %.3f\n",
		     vl, bpb, exp(vl));
		metrics_write(metrics, 4, keys, vals);
	}
	if (cfg.save_raw_params[0] && g.world_rank == 0)
		save_raw_params(cfg.save_raw_params, &m.params);
	log0("done in %.1f s, peak RSS %.0f MiB (rank 0)\n", metrics_now_s() - t_start,
	     metrics_peak_rss_mib());

	if (metrics)
		fclose(metrics);
	free(inputs);
	free(targets);
	train_step_free(&step);
	adamw_free(&opt);
	model_free(&m);
	loader_free(&train);
	if (have_valid)
		loader_free(&valid);
	grid_free(&g);
	mpi_setup_finalize();
	return 0;
}
