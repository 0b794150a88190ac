/*
 * harness: the assertions every test program uses. A failed check prints what
 * differed (the max absolute and relative error and the first 10 mismatching
 * indices) and counts a failure; test_finish() prints "N passed, N failed" and
 * returns the exit status (1 on any failure). Header-only, for tests only.
 */
#ifndef RN_TEST_HARNESS_H
#define RN_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stddef.h>

static int test_passed_count, test_failed_count;

/* Elementwise |got - want| <= atol + rtol * |want| over n values (any float type). */
#define EXPECT_CLOSE(got, want, n, rtol, atol, label)                           \
	test_expect_close_d(#got, (label), (size_t)(n), (rtol), (atol), NULL,      \
			    sizeof(*(got)) == sizeof(float) ? (const void *)(got) : NULL, \
			    sizeof(*(got)) == sizeof(double) ? (const void *)(got) : NULL, \
			    sizeof(*(want)) == sizeof(float) ? (const void *)(want) : NULL, \
			    sizeof(*(want)) == sizeof(double) ? (const void *)(want) : NULL)

/*
 * Elementwise |got - want| <= rtol * scale[i], scale a double[n]: for sums whose
 * terms may cancel, where |want| is no yardstick and the sum of the |terms| is.
 * scale[i] = 0 asks for equality; relative errors are printed against scale.
 */
#define EXPECT_CLOSE_SCALED(got, want, scale, n, rtol, label)                   \
	test_expect_close_d(#got, (label), (size_t)(n), (rtol), 0.0, (scale),      \
			    sizeof(*(got)) == sizeof(float) ? (const void *)(got) : NULL, \
			    sizeof(*(got)) == sizeof(double) ? (const void *)(got) : NULL, \
			    sizeof(*(want)) == sizeof(float) ? (const void *)(want) : NULL, \
			    sizeof(*(want)) == sizeof(double) ? (const void *)(want) : NULL)

static inline double test_at(const void *f, const void *d, size_t i)
{
	return f ? (double)((const float *)f)[i] : ((const double *)d)[i];
}

/* scale NULL: relative to |want|. */
static inline int test_expect_close_d(const char *expr, const char *label, size_t n,
				      double rtol, double atol, const double *scale,
				      const void *gf, const void *gd, const void *wf,
				      const void *wd)
{
	double max_abs = 0, max_rel = 0;
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		double g = test_at(gf, gd, i), w = test_at(wf, wd, i);
		double s = scale ? scale[i] : fabs(w);
		double err = fabs(g - w);
		double rel = err / (s > 1e-30 ? s : 1e-30);

		if (!(err <= atol + rtol * s)) {
			if (bad < 10)
				fprintf(stderr, "  %s[%zu]: got %.9g want %.9g (abs %.3g rel %.3g)\n",
					label, i, g, w, err, rel);
			bad++;
		}
		if (err > max_abs || isnan(err))
			max_abs = err;
		if (rel > max_rel || isnan(rel))
			max_rel = rel;
	}
	if (bad) {
		fprintf(stderr, "FAIL %s (%s): %zu of %zu values off; max abs %.3g, max rel %.3g "
			"(rtol %.1g, atol %.1g)\n", label, expr, bad, n, max_abs, max_rel, rtol, atol);
		test_failed_count++;
		return 0;
	}
	printf("ok   %s: n=%zu max abs %.3g max rel %.3g\n", label, n, max_abs, max_rel);
	test_passed_count++;
	return 1;
}

/* A scalar condition with a message. */
#define EXPECT_TRUE(cond, ...)                                                  \
	do {                                                                    \
		if (cond) {                                                     \
			test_passed_count++;                                    \
		} else {                                                        \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                           \
			fputc('\n', stderr);                                    \
			test_failed_count++;                                    \
		}                                                               \
	} while (0)

static inline int test_finish(void)
{
	printf("%d passed, %d failed\n", test_passed_count, test_failed_count);
	return test_failed_count ? 1 : 0;
}

#endif
