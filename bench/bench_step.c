/*
 * bench_step: one training step (forward + backward + AdamW) of a model
 * configuration on one rank: tokens/s, MFU against the machine's matmul ceiling
 * measured in the same run (a large oneDNN matmul through the same matmul module),
 * and peak RSS.
 *
 *   retnet-bench-step [--config bench-small|tiny] [--batch B] [--seq-length T]
 *                     [--steps N] [--form chunkwise|parallel] [--recompute 0|1]
 *                     [--bf16 | --bf16-only]
 *
 * --bf16 times bf16 matmuls (kernels_ctx_set_bf16) AND float32 ones in the same
 * process, step by step in turn (fp32, bf16, fp32, bf16, ...), so that a noisy
 * machine slows both alike, and reports both and their ratio; each MFU is against
 * its own ceiling (a 2048^3 float32 matmul, and a 2048^3 bf16 one on operands
 * converted beforehand), also measured in turn. --bf16-only skips the float32 steps
 * (for profiling the bf16 step alone). Both start from the same weights; the loss of
 * each precision's warm-up step (before any update) is printed as a sanity check.
 * --recompute 1 runs with --recompute-activations (memory against speed).
 *
 * Threads: OMP_NUM_THREADS. Prints a table and one JSON line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

enum { FP32, BF16, NPREC };
static const char *const prec_name[NPREC] = {"fp32", "bf16"};

/* Best of the timed steps of one precision, and what it was made of. */
struct timing {
	double step, fwd, bwd, opt;
	double ceiling; /* FLOP/s of this precision's matmul ceiling */
	double init_loss;
	int runs;
	double *each; /* [steps] every timed step, in order */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of fp32 step i / bf16 step i: neighbours in time share the machine's
 * load, so their ratio is steadier than the ratio of the two best steps. */
static double median_pair_ratio(const struct timing *f, const struct timing *b)
{
	int n = f->runs < b->runs ? f->runs : b->runs;
	double *r = xmalloc(sizeof(double) * (size_t)n), med;

	for (int i = 0; i < n; i++)
		r[i] = f->each[i] / b->each[i];
	qsort(r, (size_t)n, sizeof(double), cmp_double);
	med = n % 2 ? r[n / 2] : 0.5 * (r[n / 2 - 1] + r[n / 2]);
	free(r);
	return med;
}

static void usage_error(const char *flag)
{
	log_error("%s: unknown or malformed flag (see the comment at the top of bench/bench_step.c)",
		  flag);
	exit(2);
}

/* One step; `update` false for the warm-up, which leaves the weights alone. */
static void run_step(struct model *m, struct adamw *opt, const int32_t *inputs,
		     const int32_t *targets, bool update, struct timing *t)
{
	double t0, t1, t2, t3;
	float loss;

	t0 = metrics_now_s();
	param_set_zero_grad(&m->params);
	loss = model_forward(m, inputs, targets);
	t1 = metrics_now_s();
	model_backward(m, 1.0f);
	t2 = metrics_now_s();
	if (update)
		adamw_step(opt, &m->params, 1e-4);
	t3 = metrics_now_s();
	if (!update) {
		t->init_loss = loss;
		return;
	}
	t->each[t->runs++] = t3 - t0;
	if (t3 - t0 < t->step) {
		t->step = t3 - t0;
		t->fwd = t1 - t0;
		t->bwd = t2 - t1;
		t->opt = t3 - t2;
	}
}

int main(int argc, char **argv)
{
	struct model_config cfg = {
		.vocab = 256, .hidden = 512, .layers = 6, .heads = 4, .ffn_hidden = 1024,
		.chunk = 128, .seq_len = 2048, .micro_batch = 4, .seed = 1,
	};
	const struct adamw_config oc = {0.9, 0.98, 1e-8, 0.05};
	const char *config_name = "bench-small";
	enum retention_form form = RETENTION_CHUNKWISE;
	int steps = 3;
	bool run[NPREC] = {true, false};
	struct timing t[NPREC];
	struct model m;
	struct adamw opt;
	int32_t *inputs, *targets;
	char err[256];

	for (int i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--bf16")) {
			run[BF16] = true;
			continue;
		}
		if (!strcmp(argv[i], "--bf16-only")) {
			run[BF16] = true;
			run[FP32] = false;
			continue;
		}
		if (!val)
			usage_error(argv[i]);
		if (!strcmp(argv[i], "--config")) {
			config_name = val;
			if (!strcmp(val, "tiny"))
				cfg = (struct model_config){256, 64, 2, 4, 128, 8, 32, 2, 1, cfg.recompute};
			else if (strcmp(val, "bench-small"))
				usage_error(argv[i]);
		} else if (!strcmp(argv[i], "--batch")) {
			cfg.micro_batch = atol(val);
		} else if (!strcmp(argv[i], "--seq-length")) {
			cfg.seq_len = atol(val);
		} else if (!strcmp(argv[i], "--steps")) {
			steps = atoi(val);
		} else if (!strcmp(argv[i], "--recompute")) {
			cfg.recompute = atoi(val) != 0;
		} else if (!strcmp(argv[i], "--form")) {
			if (!strcmp(val, "parallel"))
				form = RETENTION_PARALLEL;
			else if (strcmp(val, "chunkwise"))
				usage_error(argv[i]);
		} else {
			usage_error(argv[i]);
		}
		i++;
	}
	if (cfg.micro_batch <= 0 || cfg.seq_len <= 0 || cfg.seq_len % cfg.chunk || steps <= 0)
		usage_error("--batch/--seq-length/--steps");

	model_init(&m, &cfg, NULL);
	m.form = form;
	if (run[BF16] && model_set_bf16(&m, true, err, sizeof(err))) {
		log_error("%s", err);
		exit(2);
	}
	adamw_init(&opt, &oc, &m.params);
	inputs = xmalloc(sizeof(int32_t) * (size_t)m.rows);
	targets = xmalloc(sizeof(int32_t) * (size_t)m.rows);
	for (int64_t i = 0; i < m.rows; i++) {
		inputs[i] = (int32_t)((i * 131 + 7) % cfg.vocab);
		targets[i] = (int32_t)((i * 71 + 3) % cfg.vocab);
	}

	/* The ceilings, in turn, best of three rounds each. */
	for (int p = 0; p < NPREC; p++)
		t[p] = (struct timing){.step = INFINITY,
				       .each = xmalloc(sizeof(double) * (size_t)steps)};
	for (int r = 0; r < 3; r++)
		for (int p = 0; p < NPREC; p++) {
			double c;

			if (!run[p])
				continue;
			c = p == BF16 ? metrics_matmul_ceiling_bf16(2048, 2)
				      : metrics_matmul_ceiling(2048, 2);
			if (c > t[p].ceiling)
				t[p].ceiling = c;
		}

	/* Warm-up (plan creation, JIT, first touch; no update, so every precision
	 * starts from the seed's weights; then an update with lr 0, which changes no
	 * weight, touches AdamW's moments), then the timed steps in turn. */
	for (int s = 0; s <= steps; s++) {
		for (int p = 0; p < NPREC; p++) {
			int rc;

			if (!run[p])
				continue;
			rc = model_set_bf16(&m, p == BF16, err, sizeof(err));
			ENSURE(rc == 0);
			run_step(&m, &opt, inputs, targets, s > 0, &t[p]);
		}
		if (s == 0) {
			adamw_step(&opt, &m.params, 0.0);
			/* A mark for a profiler attached to the timed steps only. */
			printf("warm-up done; timing %d step(s) per precision\n", steps);
			fflush(stdout);
		}
	}
	double rss = metrics_peak_rss_mib();
	double tokens = (double)m.rows, fpt = model_flops_per_token(&cfg);

	printf("config %s: d=%ld L=%ld H=%ld f=%ld C=%ld, batch %ld x %ld, form %s, %d threads\n",
	       config_name, (long)cfg.hidden, (long)cfg.layers, (long)cfg.heads,
	       (long)cfg.ffn_hidden, (long)cfg.chunk, (long)cfg.micro_batch, (long)cfg.seq_len,
	       form == RETENTION_PARALLEL ? "parallel" : "chunkwise", omp_get_max_threads());
	for (int p = 0; p < NPREC; p++) {
		double tps = tokens / t[p].step;

		if (!run[p])
			continue;
		printf("%s: matmul ceiling (2048^3): %.1f GFLOP/s; loss at init %.6f\n",
		       prec_name[p], t[p].ceiling * 1e-9, t[p].init_loss);
		printf("%s: step (fwd+bwd+AdamW, best of %d): %.3f s (fwd %.3f, bwd %.3f, "
		       "opt %.3f)\n", prec_name[p], t[p].runs, t[p].step, t[p].fwd, t[p].bwd,
		       t[p].opt);
		printf("%s: tokens/s: %.0f   MFU: %.1f%% of the %s ceiling\n", prec_name[p], tps,
		       100.0 * tps * fpt / t[p].ceiling, prec_name[p]);
	}
	if (run[FP32] && run[BF16])
		printf("bf16 / fp32 tokens/s: %.3fx (best steps), %.3fx (median of %d neighbouring "
		       "pairs); bf16 ceiling / fp32 ceiling: %.3fx; loss at init differs by %.2e "
		       "relative\n", t[FP32].step / t[BF16].step, median_pair_ratio(&t[FP32], &t[BF16]),
		       t[FP32].runs, t[BF16].ceiling / t[FP32].ceiling,
		       fabs(t[BF16].init_loss - t[FP32].init_loss) / fabs(t[FP32].init_loss));
	printf("peak RSS: %.0f MiB   activations: %.0f MiB\n", rss,
	       (double)model_activation_bytes(&m) / 1048576.0);
	printf("{\"bench\":\"step\",\"optimizer\":\"AdamW\",\"config\":\"%s\",\"batch\":%ld,\"seq_len\":%ld,\"threads\":%d",
	       config_name, (long)cfg.micro_batch, (long)cfg.seq_len, omp_get_max_threads());
	for (int p = 0; p < NPREC; p++) {
		double tps = tokens / t[p].step;

		if (!run[p])
			continue;
		printf(",\"%s\":{\"tokens_per_sec\":%.1f,\"mfu\":%.4f,\"ceiling_gflops\":%.1f,"
		       "\"step_s\":%.4f,\"fwd_s\":%.4f,\"bwd_s\":%.4f,\"opt_s\":%.4f,"
		       "\"init_loss\":%.6f}", prec_name[p], tps, tps * fpt / t[p].ceiling,
		       t[p].ceiling * 1e-9, t[p].step, t[p].fwd, t[p].bwd, t[p].opt,
		       t[p].init_loss);
	}
	if (run[FP32] && run[BF16])
		printf(",\"bf16_speedup\":%.4f,\"bf16_speedup_pairs\":%.4f",
		       t[FP32].step / t[BF16].step, median_pair_ratio(&t[FP32], &t[BF16]));
	printf(",\"peak_rss_mib\":%.1f,\"activation_mib\":%.1f,\"recompute\":%d,\"form\":\"%s\"}\n",
	       rss, (double)model_activation_bytes(&m) / 1048576.0, cfg.recompute,
	       form == RETENTION_PARALLEL ? "parallel" : "chunkwise");
	free(inputs);
	free(targets);
	for (int p = 0; p < NPREC; p++)
		free(t[p].each);
	adamw_free(&opt);
	model_free(&m);
	return 0;
}
