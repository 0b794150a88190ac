#include "trainer/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/matmul.h"

double metrics_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best FLOP/s of the n^3 plan over reps runs after a warm-up; a and b are float32
 * for a float32 plan, packed bf16 for a bf16 one. The plan is autotuned first: a
 * ceiling is what the machine's fastest matmul reaches, whether or not the model's
 * own matmuls are tuned, so that a tuned model cannot read above it. */
static double time_plan(struct kernels_ctx *ctx, const struct matmul_plan *p, float *c,
			const void *a, const void *b, int n, int reps)
{
	double best = INFINITY;

	matmul_autotune_plans(ctx, NULL);

	for (int r = 0; r <= reps; r++) { /* run 0: JIT and first touch */
		double t0 = metrics_now_s(), dt;

		if (matmul_plan_is_bf16(p))
			matmul_run_bf16(ctx, p, c, a, b);
		else
			matmul_run(ctx, p, c, a, b);
		dt = metrics_now_s() - t0;
		if (r > 0 && dt < best)
			best = dt;
	}
	return 2.0 * (double)n * (double)n * (double)n / best;
}

double metrics_matmul_ceiling(int n, int reps)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	const size_t nn = (size_t)n * (size_t)n;
	float *a = xaligned_alloc(sizeof(float) * nn), *b = xaligned_alloc(sizeof(float) * nn);
	float *c = xaligned_alloc(sizeof(float) * nn);
	struct matmul_shape s = matmul_shape_dense(n, n, n, false, false, false);
	const struct matmul_plan *p = matmul_plan_get(ctx, &s);
	double flops;

	for (size_t i = 0; i < nn; i++) {
		a[i] = (float)((int)(i % 13) - 6) * 0.01f;
		b[i] = (float)((int)(i % 7) - 3) * 0.01f;
	}
	flops = time_plan(ctx, p, c, a, b, n, reps);
	free(a);
	free(b);
	free(c);
	kernels_ctx_free(ctx);
	return flops;
}

double metrics_matmul_ceiling_bf16(int n, int reps)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	const size_t nn = (size_t)n * (size_t)n;
	char err[256];
	float *x, *c;
	uint16_t *a, *b;
	struct matmul_shape s = matmul_shape_dense(n, n, n, false, false, false);
	double flops = 0.0;

	if (kernels_ctx_set_bf16(ctx, true, err, sizeof(err))) {
		kernels_ctx_free(ctx);
		return 0.0;
	}
	x = xaligned_alloc(sizeof(float) * nn);
	c = xaligned_alloc(sizeof(float) * nn);
	a = xaligned_alloc(sizeof(uint16_t) * nn);
	b = xaligned_alloc(sizeof(uint16_t) * nn);
	for (size_t i = 0; i < nn; i++)
		x[i] = (float)((int)(i % 13) - 6) * 0.01f;
	bf16_pack(a, x, 1, 0, n, n, n);
	for (size_t i = 0; i < nn; i++)
		x[i] = (float)((int)(i % 7) - 3) * 0.01f;
	bf16_pack(b, x, 1, 0, n, n, n);
	flops = time_plan(ctx, matmul_plan_get(ctx, &s), c, a, b, n, reps);
	free(x);
	free(c);
	free(a);
	free(b);
	kernels_ctx_free(ctx);
	return flops;
}

double metrics_peak_rss_mib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

FILE *metrics_open(const char *path)
{
	FILE *f;

	if (!path || !*path)
		return NULL;
	f = fopen(path, "a");
	if (!f)
		log_error("--metrics: cannot open '%s' for appending: %s", path, strerror(errno));
	return f;
}

void metrics_write(FILE *f, int npairs, const char *const *keys, const double *values)
{
	const char *sep = "";

	if (!f)
		return;
	fputc('{', f);
	for (int i = 0; i < npairs; i++) {
		if (values[i] < -1e300)
			continue;
		if (!isfinite(values[i])) /* JSON has no NaN or Infinity */
			fprintf(f, "%s\"%s\":null", sep, keys[i]);
		else if (values[i] == floor(values[i]) && fabs(values[i]) < 1e15)
			fprintf(f, "%s\"%s\":%.0f", sep, keys[i], values[i]);
		else
			fprintf(f, "%s\"%s\":%.9g", sep, keys[i], values[i]);
		sep = ",";
	}
	fputs("}\n", f);
	fflush(f);
}
