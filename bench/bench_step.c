/*
 * bench_step: one training step (forward + backward + AdamW) of a model
 * configuration on one rank: tokens/s, MFU against the machine's matmul ceiling
 * measured in the same run (a large oneDNN matmul through the same matmul module),
 * and peak RSS.
 *
 *   retnet-bench-step [--config bench-small|tiny|FILE] [--micro-batch-size B]
 *                     [--seq-length T] [--steps N] [--form chunkwise|parallel]
 *                     [--recompute-activations] [--bf16 | --bf16-only]
 *                     [--matmul-autotune] [model flags]
 *
 * Flags are retnet-train's (--help lists them); --config bench-small (the default)
 * and --config tiny are built-in configurations, and flags on the command line win.
 * --bf16 times bf16 matmuls (kernels_ctx_set_bf16) AND float32 ones in the same
 * process, step by step in turn (fp32, bf16, fp32, bf16, ...), so that a noisy
 * machine slows both alike, and reports both and their ratio; each MFU is against
 * its own ceiling (a 2048^3 float32 matmul, and a 2048^3 bf16 one on operands
 * converted beforehand), also measured in turn, before and after the steps (the best
 * is kept; an MFU still above 100% is flagged). --bf16-only skips the float32 steps
 * (for profiling the bf16 step alone). Both start from the same weights; the loss of
 * each precision's warm-up step (before any update) is printed as a sanity check.
 * --recompute-activations trades memory for speed as in training. --matmul-autotune
 * tunes the model's matmuls as in training (the ceilings are always tuned) and
 * prints what the tuning found.
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
#include "common/stats.h"
#include "trainer/kernels/matmul.h"
#include "trainer/launch.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

enum { FP32, BF16, NPREC };
static const char *const prec_name[NPREC] = {"fp32", "bf16"};

/* Best of the timed steps of one precision, and what it was made of. */
struct timing {
	double step, fwd, bwd, opt;
	double median;  /* median of the timed steps (the best step flatters) */
	double ceiling; /* FLOP/s of this precision's matmul ceiling */
	double init_loss;
	int runs;
	double *each; /* [steps] every timed step, in order */
};

/* Each precision's ceiling, in turn, three rounds, kept if better than before: taken
 * before and after the steps, so that a slow spell at one of the two does not lower
 * the ceiling under the steps' figures. */
static void measure_ceilings(struct timing *t, const bool *run)
{
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
}

/* Median of fp32 step i / bf16 step i: neighbours in time share the machine's
 * load, so their ratio is steadier than the ratio of the two best steps. */
static double median_pair_ratio(const struct timing *f, const struct timing *b)
{
	int n = f->runs < b->runs ? f->runs : b->runs;
	double *r = xmalloc(sizeof(double) * (size_t)n), med;

	for (int i = 0; i < n; i++)
		r[i] = f->each[i] / b->each[i];
	med = stats_median(r, n);
	free(r);
	return med;
}

/* Median of one precision's timed steps (a noisy step moves it less than the mean). */
static double median_step(const struct timing *t)
{
	double *v = xmalloc(sizeof(double) * (size_t)t->runs), med;

	memcpy(v, t->each, sizeof(double) * (size_t)t->runs);
	med = stats_median(v, t->runs);
	free(v);
	return med;
}

/* One step; `update` false for the warm-up, which leaves the weights alone. */
static void run_step(struct model *m, struct adamw *opt, const int32_t *inputs,
		     const int32_t *targets, bool update, struct timing *t)
{
	double t0, t1, t2, t3;
	float loss;

	t0 = metrics_now_s();
	param_set_zero_grad(model_params(m));
	loss = model_forward(m, inputs, targets);
	t1 = metrics_now_s();
	model_backward(m, 1.0f);
	t2 = metrics_now_s();
	if (update)
		adamw_step(opt, model_params(m), 1e-4);
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
	struct launch *l = xcalloc(1, sizeof(*l));
	const struct run_spec *cfg = &l->spec;
	const struct adamw_config oc = {0.9, 0.98, 1e-8, 0.05};
	int steps;
	bool run[NPREC];
	struct timing t[NPREC];
	struct model *m;
	struct adamw opt;
	int32_t *inputs, *targets;
	int64_t rows;
	char err[256];

	/* ---- setup: the configuration and one rank's model ------------------- */
	launch_begin(l, SPEC_BENCH, &argc, &argv);
	steps = (int)cfg->steps;
	run[FP32] = !cfg->bf16_only;
	run[BF16] = cfg->bf16 || cfg->bf16_only;
	m = launch_model(l, 1);
	if (cfg->bf16_only && model_set_bf16(m, true, err, sizeof(err))) {
		log_error("%s", err);
		exit(2);
	}
	adamw_init(&opt, &oc, model_params(m), NULL, 0);
	rows = cfg->micro_batch_size * cfg->seq_length;
	inputs = xmalloc(sizeof(int32_t) * (size_t)rows);
	targets = xmalloc(sizeof(int32_t) * (size_t)rows);
	for (int64_t i = 0; i < rows; i++) {
		inputs[i] = (int32_t)((i * 131 + 7) % cfg->vocab_size);
		targets[i] = (int32_t)((i * 71 + 3) % cfg->vocab_size);
	}

	for (int p = 0; p < NPREC; p++)
		t[p] = (struct timing){.step = INFINITY,
				       .each = xmalloc(sizeof(double) * (size_t)steps)};
	measure_ceilings(t, run);

	/* Warm-up (plan creation, JIT, first touch; no update, so every precision
	 * starts from the seed's weights; then an update with lr 0, which changes no
	 * weight, touches AdamW's moments), then the timed steps in turn. */
	for (int s = 0; s <= steps; s++) {
		for (int p = 0; p < NPREC; p++) {
			int rc;

			if (!run[p])
				continue;
			rc = model_set_bf16(m, p == BF16, err, sizeof(err));
			ENSURE(rc == 0);
			run_step(m, &opt, inputs, targets, s > 0, &t[p]);
		}
		if (s == 0) {
			adamw_step(&opt, model_params(m), 0.0);
			if (cfg->matmul_autotune)
				model_autotune_matmuls(m, NULL);
			/* A mark for a profiler attached to the timed steps only. */
			printf("warm-up done; timing %d step(s) per precision\n", steps);
			fflush(stdout);
		}
	}
	for (int p = 0; p < NPREC; p++)
		if (run[p])
			t[p].median = median_step(&t[p]);
	/* The profiler's mark to stop (bench/profile_step.sh). */
	printf("timed steps done; timing the ceilings again\n");
	fflush(stdout);
	measure_ceilings(t, run);
	double rss = metrics_peak_rss_mib();
	double tokens = (double)rows, fpt = model_flops_per_token(cfg);
	char config_name[96];

	snprintf(config_name, sizeof(config_name), "d%lld-L%lld-H%lld-f%lld-C%lld-V%lld",
		 (long long)cfg->hidden_size, (long long)cfg->num_layers,
		 (long long)cfg->num_heads, (long long)cfg->ffn_hidden_size,
		 (long long)cfg->chunk_size, (long long)cfg->vocab_size);
	printf("config %s: d=%lld L=%lld H=%lld f=%lld C=%lld, batch %lld x %lld, form %s, "
	       "%d threads\n", config_name, (long long)cfg->hidden_size,
	       (long long)cfg->num_layers, (long long)cfg->num_heads,
	       (long long)cfg->ffn_hidden_size, (long long)cfg->chunk_size,
	       (long long)cfg->micro_batch_size, (long long)cfg->seq_length, cfg->form,
	       omp_get_max_threads());
	for (int p = 0; p < NPREC; p++) {
		double tps = tokens / t[p].step;

		if (!run[p])
			continue;
		printf("%s: matmul ceiling (2048^3): %.1f GFLOP/s; loss at init %.6f\n",
		       prec_name[p], t[p].ceiling * 1e-9, t[p].init_loss);
		printf("%s: step (fwd+bwd+AdamW, best of %d): %.3f s (fwd %.3f, bwd %.3f, "
		       "opt %.3f)\n", prec_name[p], t[p].runs, t[p].step, t[p].fwd, t[p].bwd,
		       t[p].opt);
		printf("%s: tokens/s: %.0f   MFU: %.1f%% of the %s ceiling   (median step %.3f s: "
		       "%.0f tokens/s, MFU %.1f%%)\n", prec_name[p], tps,
		       100.0 * tps * fpt / t[p].ceiling, prec_name[p], t[p].median,
		       tokens / t[p].median, 100.0 * tokens / t[p].median * fpt / t[p].ceiling);
		if (tps * fpt > t[p].ceiling)
			printf("%s: MFU above 100%%: the machine was slower whenever the ceiling "
			       "was timed than during the best step; the figures are not "
			       "utilisations\n", prec_name[p]);
	}
	if (run[FP32] && run[BF16])
		printf("bf16 / fp32 tokens/s: %.3fx (best steps), %.3fx (median of %d neighbouring "
		       "pairs); bf16 ceiling / fp32 ceiling: %.3fx; loss at init differs by %.2e "
		       "relative\n", t[FP32].step / t[BF16].step, median_pair_ratio(&t[FP32], &t[BF16]),
		       t[FP32].runs, t[BF16].ceiling / t[FP32].ceiling,
		       fabs(t[BF16].init_loss - t[FP32].init_loss) / fabs(t[FP32].init_loss));
	printf("peak RSS: %.0f MiB   activations: %.0f MiB\n", rss,
	       (double)model_activation_bytes(m) / 1048576.0);
	if (cfg->matmul_autotune) {
		struct matmul_tuning_totals tt;

		model_matmul_tuning(m, &tt);
		printf("--matmul-autotune: %d shapes timed, %d moved off oneDNN's first choice; "
		       "their medians: %.1f ms first choices, %.1f ms kept\n", tt.tuned, tt.moved,
		       1e3 * tt.first_s, 1e3 * tt.chosen_s);
	}
	printf("{\"bench\":\"step\",\"optimizer\":\"AdamW\",\"config\":\"%s\",\"batch\":%lld,"
	       "\"seq_len\":%lld,\"threads\":%d", config_name, (long long)cfg->micro_batch_size,
	       (long long)cfg->seq_length, omp_get_max_threads());
	for (int p = 0; p < NPREC; p++) {
		double tps = tokens / t[p].step;

		if (!run[p])
			continue;
		printf(",\"%s\":{\"tokens_per_sec\":%.1f,\"mfu\":%.4f,\"ceiling_gflops\":%.1f,"
		       "\"step_s\":%.4f,\"fwd_s\":%.4f,\"bwd_s\":%.4f,\"opt_s\":%.4f,"
		       "\"init_loss\":%.6f,\"step_median_s\":%.4f,\"tokens_per_sec_median\":%.1f,"
		       "\"mfu_median\":%.4f}", prec_name[p], tps, tps * fpt / t[p].ceiling,
		       t[p].ceiling * 1e-9, t[p].step, t[p].fwd, t[p].bwd, t[p].opt,
		       t[p].init_loss, t[p].median, tokens / t[p].median,
		       tokens / t[p].median * fpt / t[p].ceiling);
	}
	if (run[FP32] && run[BF16])
		printf(",\"bf16_speedup\":%.4f,\"bf16_speedup_pairs\":%.4f",
		       t[FP32].step / t[BF16].step, median_pair_ratio(&t[FP32], &t[BF16]));
	printf(",\"peak_rss_mib\":%.1f,\"activation_mib\":%.1f,\"recompute\":%d,\"form\":\"%s\","
	       "\"matmul_autotune\":%d}\n",
	       rss, (double)model_activation_bytes(m) / 1048576.0, cfg->recompute_activations,
	       cfg->form, cfg->matmul_autotune);
	free(inputs);
	free(targets);
	for (int p = 0; p < NPREC; p++)
		free(t[p].each);
	adamw_free(&opt);
	model_destroy(m);
	launch_end(l);
	free(l);
	return 0;
}
