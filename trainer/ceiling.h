/*
 * ceiling: the matmul ceiling that retnet-train's MFU is against, for the whole job.
 * Every rank times an n^3 matmul of the precision the model's matmuls run in
 * (metrics_matmul_ceiling, on the fastest of oneDNN's implementations) and the ranks
 * sum their figures. One measurement (about 60 ms of timing, after about as long
 * choosing the implementation) is a sample of a machine whose speed moves from
 * minute to minute, so the log lines ask for another whenever it costs at most 1% of
 * the time since the last, and the ceiling is the best of the measurements: one low
 * sample does not flatter a whole run.
 *
 * Test hook: RETNET_CEILING_SIZE=N (>= 16) times an N^3 product instead of 1024^3
 * (valgrind runs 50x slower; only the MFU depends on it).
 */
#ifndef RN_CEILING_H
#define RN_CEILING_H

#include <stdbool.h>

#include <mpi.h>

struct ceiling {
	MPI_Comm comm;  /* the ranks whose figures are summed */
	bool bf16;      /* a bf16 matmul instead of a float32 one */
	double flops;   /* FLOP/s: the best measurement */
	double at;      /* when the last measurement ended (metrics_now_s) */
	double cost_s;  /* how long it took: the slowest rank's own time, without
			 * waiting for the others (ranks reach the first one apart) */
	int count;      /* measurements so far */
};

/* Measures once. collective: comm */
void ceiling_init(struct ceiling *c, MPI_Comm comm, bool bf16);
/* Measures again and keeps the best. collective: comm */
void ceiling_measure(struct ceiling *c);
/*
 * The utilisation of `flops_per_s` (summed over the ranks) against the ceiling, for a
 * log line: measures again first when that costs at most 1% of the time since the
 * last measurement, or, whatever the cost, when the utilisation would be above 1
 * (the ceiling was measured low; rank 0 logs it). A utilisation still above 1 is
 * returned as it is (the caller flags it). collective: comm (one decision, taken by
 * all ranks together)
 */
double ceiling_utilisation(struct ceiling *c, double flops_per_s);

#endif
