/*
 * bench_step: one training step (forward + backward) of a model configuration on
 * one rank: tokens/s, MFU against the machine's FP32 matmul ceiling measured in the
 * same run (a large oneDNN sgemm through the same matmul module), and peak RSS.
 *
 *   retnet-bench-step [--config bench-small|tiny] [--batch B] [--seq-length T]
 *                     [--steps N] [--form chunkwise|parallel] [--recompute 0|1]
 *
 * Threads: OMP_NUM_THREADS. Prints a table and one JSON line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/alloc.h"
#include "common/log.h"
#include "trainer/metrics.h"
#include "trainer/model.h"

static void usage_error(const char *flag)
{
	log_error("%s: unknown or malformed flag (see the comment at the top of bench/bench_step.c)",
		  flag);
	exit(2);
}

int main(int argc, char **argv)
{
	struct model_config cfg = {
		.vocab = 256, .hidden = 512, .layers = 6, .heads = 4, .ffn_hidden = 1024,
		.chunk = 128, .seq_len = 2048, .micro_batch = 4, .seed = 1,
	};
	const char *config_name = "bench-small";
	enum retention_form form = RETENTION_CHUNKWISE;
	int steps = 3;
	struct model m;
	int32_t *inputs, *targets;
	double ceiling, best = 1e30, t_fwd = 0, t_bwd = 0;

	for (int i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

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

	ceiling = metrics_matmul_ceiling(2048, 5);
	model_init(&m, &cfg, NULL);
	m.form = form;
	inputs = xmalloc(sizeof(int32_t) * (size_t)m.rows);
	targets = xmalloc(sizeof(int32_t) * (size_t)m.rows);
	for (int64_t i = 0; i < m.rows; i++) {
		inputs[i] = (int32_t)((i * 131 + 7) % cfg.vocab);
		targets[i] = (int32_t)((i * 71 + 3) % cfg.vocab);
	}
	/* Step 0 warms up (plan creation, JIT, first touch); the best later step counts. */
	for (int s = 0; s <= steps; s++) {
		double t0 = metrics_now_s(), t1, t2;

		model_forward(&m, inputs, targets);
		t1 = metrics_now_s();
		model_backward(&m, 1.0f);
		t2 = metrics_now_s();
		if (s > 0 && t2 - t0 < best) {
			best = t2 - t0;
			t_fwd = t1 - t0;
			t_bwd = t2 - t1;
		}
	}
	double rss = metrics_peak_rss_mib();

	double tokens = (double)m.rows;
	double tps = tokens / best;
	double mfu = tps * model_flops_per_token(&cfg) / ceiling;

	printf("config %s: d=%ld L=%ld H=%ld f=%ld C=%ld, batch %ld x %ld, form %s, %d threads\n",
	       config_name, (long)cfg.hidden, (long)cfg.layers, (long)cfg.heads,
	       (long)cfg.ffn_hidden, (long)cfg.chunk, (long)cfg.micro_batch, (long)cfg.seq_len,
	       form == RETENTION_PARALLEL ? "parallel" : "chunkwise", omp_get_max_threads());
	printf("matmul ceiling (2048^3 sgemm): %.1f GFLOP/s\n", ceiling * 1e-9);
	printf("step (fwd+bwd, best of %d): %.3f s (fwd %.3f, bwd %.3f)\n", steps, best, t_fwd,
	       t_bwd);
	printf("tokens/s: %.0f   MFU: %.1f%%   peak RSS: %.0f MiB   activations: %.0f MiB\n",
	       tps, 100.0 * mfu, rss,
	       (double)model_activation_bytes(&m) / 1048576.0);
	printf("{\"bench\":\"step\",\"config\":\"%s\",\"batch\":%ld,\"seq_len\":%ld,\"threads\":%d,"
	       "\"tokens_per_sec\":%.1f,\"mfu\":%.4f,\"ceiling_gflops\":%.1f,\"step_s\":%.4f,"
	       "\"peak_rss_mib\":%.1f,\"activation_mib\":%.1f,\"recompute\":%d,\"form\":\"%s\"}\n",
	       config_name, (long)cfg.micro_batch, (long)cfg.seq_len, omp_get_max_threads(), tps,
	       mfu, ceiling * 1e-9, best, rss, (double)model_activation_bytes(&m) / 1048576.0,
	       cfg.recompute, form == RETENTION_PARALLEL ? "parallel" : "chunkwise");
	free(inputs);
	free(targets);
	model_free(&m);
	return 0;
}
