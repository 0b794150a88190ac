#include "trainer/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "trainer/kernels/matmul.h"

double metrics_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double metrics_matmul_ceiling(int n, int reps)
{
	struct kernels_ctx *ctx = kernels_ctx_init();
	const size_t nn = (size_t)n * (size_t)n;
	float *a = xaligned_alloc(sizeof(float) * nn), *b = xaligned_alloc(sizeof(float) * nn);
	float *c = xaligned_alloc(sizeof(float) * nn);
	struct matmul_shape s = matmul_shape_dense(n, n, n, false, false, false);
	const struct matmul_plan *p = matmul_plan_get(ctx, &s);
	double best = INFINITY;

	for (size_t i = 0; i < nn; i++) {
		a[i] = (float)((int)(i % 13) - 6) * 0.01f;
		b[i] = (float)((int)(i % 7) - 3) * 0.01f;
	}
	matmul_run(ctx, p, c, a, b); /* JIT and first touch */
	for (int r = 0; r < reps; r++) {
		double t0 = metrics_now_s(), dt;

		matmul_run(ctx, p, c, a, b);
		dt = metrics_now_s() - t0;
		if (dt < best)
			best = dt;
	}
	free(a);
	free(b);
	free(c);
	kernels_ctx_free(ctx);
	return 2.0 * (double)n * (double)n * (double)n / best;
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
