#include "trainer/ceiling.h"

#include <stdlib.h>

#include "common/log.h"
#include "parallel/comm.h"
#include "trainer/metrics.h"

/* Best of this many timed runs: 3 let one hiccup of a VM halve the ceiling. */
enum { CEILING_REPS = 10, CEILING_DEFAULT_SIZE = 1024 };

/* A log line measures again when that costs at most this share of the time since
 * the last measurement. */
#define CEILING_COST_SHARE 0.01

void ceiling_measure(struct ceiling *c)
{
	const char *env = getenv("RETNET_CEILING_SIZE");
	const int n = env && atoi(env) >= 16 ? atoi(env) : CEILING_DEFAULT_SIZE;
	const double t0 = metrics_now_s();
	double flops = c->bf16 ? metrics_matmul_ceiling_bf16(n, CEILING_REPS)
			       : metrics_matmul_ceiling(n, CEILING_REPS);
	double cost = metrics_now_s() - t0;

	comm_allreduce_sum_f64(c->comm, &flops, 1);
	comm_allreduce_max_f64(c->comm, &cost, 1);
	c->at = metrics_now_s();
	c->cost_s = cost;
	c->count++;
	if (flops > c->flops)
		c->flops = flops;
}

void ceiling_init(struct ceiling *c, MPI_Comm comm, bool bf16)
{
	*c = (struct ceiling){.comm = comm, .bf16 = bf16};
	ceiling_measure(c);
}

double ceiling_utilisation(struct ceiling *c, double flops_per_s)
{
	const bool due = metrics_now_s() - c->at >= c->cost_s / CEILING_COST_SHARE;
	const bool above = flops_per_s > c->flops;
	double before;

	if (comm_first_rank_with(c->comm, due || above) < 0)
		return flops_per_s / c->flops;
	before = c->flops;
	ceiling_measure(c);
	if (above)
		log0("MFU %.1f%%: the matmul ceiling measured so far (%.1f GFLOP/s) was low; "
		     "measured again: best %.1f GFLOP/s\n", 100.0 * flops_per_s / before,
		     before * 1e-9, c->flops * 1e-9);
	return flops_per_s / c->flops;
}
