/*
 * colsum_sumsq against a float64 reference (a plain sum in long double, in index
 * order) over lengths around its lanes and parts, values of ordinary size, tiny
 * values whose squares a float would lose, and values of mixed magnitude; and the
 * same bits on 1, 2, 3 and 5 threads and on two runs. (The column sums are checked
 * through the kernels that use them: test_norm, test_activation.)
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "trainer/kernels/colsum.h"

#define SEED 4242

enum values { ORDINARY, TINY, MIXED };

static void fill(float *x, int64_t n, enum values kind, uint64_t stream)
{
	for (int64_t i = 0; i < n; i++) {
		double u = 2.0 * rng_uniform(SEED, stream, (uint64_t)i) - 1.0;

		if (kind == TINY)
			u *= 1e-25; /* squares near 1e-50: zero in float, not in double */
		else if (kind == MIXED)
			u *= pow(10.0, (double)(i % 13) - 6.0);
		x[i] = (float)u;
	}
}

static double reference(const float *x, int64_t n)
{
	long double s = 0.0L;

	for (int64_t i = 0; i < n; i++)
		s += (long double)x[i] * (long double)x[i];
	return (double)s;
}

static void check_case(int64_t n, enum values kind)
{
	float *x = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
	const int threads[] = {1, 2, 3, 5};
	double got[4], want, again;
	char label[64];

	fill(x, n, kind, (uint64_t)n * 3 + (uint64_t)kind);
	want = reference(x, n);
	for (int t = 0; t < 4; t++) {
		omp_set_num_threads(threads[t]);
		got[t] = colsum_sumsq(x, n);
	}
	omp_set_num_threads(2);
	again = colsum_sumsq(x, n);
	snprintf(label, sizeof(label), "n=%ld kind=%d", (long)n, (int)kind);
	/* Each lane adds about n / 8 positive terms in turn: a relative error far
	 * below 1e-11 even at n = 300000; one lost term of these is about 3e-6. */
	EXPECT_CLOSE(&got[0], &want, 1, 1e-11, 0.0, label);
	for (int t = 1; t < 4; t++)
		EXPECT_TRUE(got[t] == got[0], "%s: %d threads %.17g, 1 thread %.17g", label,
			    threads[t], got[t], got[0]);
	EXPECT_TRUE(again == got[1], "%s: second run %.17g, first %.17g", label, again, got[1]);
	free(x);
}

int main(void)
{
	const int64_t lengths[] = {0,
				   1,
				   7,
				   COLSUM_SUMSQ_LANES,
				   COLSUM_SUMSQ_LANES + 1,
				   1000,
				   COLSUM_SUMSQ_PART - 1,
				   COLSUM_SUMSQ_PART,
				   COLSUM_SUMSQ_PART + 1,
				   100003,
				   300000};

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		check_case(lengths[i], ORDINARY);
		check_case(lengths[i], TINY);
		check_case(lengths[i], MIXED);
	}
	return test_finish();
}
