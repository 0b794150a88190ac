/*
 * The 1F1B schedule without MPI: every stage forwards and backwards each
 * micro-batch exactly once, backward after forward and in micro-batch order; a
 * stage never holds more than pipeline_max_in_flight() activations; and a
 * simulation of all stages with unit-time forwards and backwards and the real
 * dependencies (forward i on stage s after forward i on s-1; backward i on s after
 * backward i on s+1) finishes without deadlock with the idle fraction
 * (P-1)/(m+P-1) when forward and backward take the same time.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/pipeline.h"
#include "tests/harness.h"

enum { MAX_P = 8, MAX_M = 32 };

static void check_stage(int stage, int stages, int m)
{
	struct pipeline_op ops[2 * MAX_M];
	int fwd_seen[MAX_M] = {0}, bwd_seen[MAX_M] = {0}, in_flight = 0, peak = 0;
	int next_bwd = 0, bad = 0;

	pipeline_1f1b(ops, stage, stages, m);
	for (int i = 0; i < 2 * m; i++) {
		int k = ops[i].micro;

		if (k < 0 || k >= m) {
			bad++;
			continue;
		}
		if (ops[i].kind == PIPELINE_FORWARD) {
			fwd_seen[k]++;
			in_flight++;
		} else {
			bad += !fwd_seen[k] || k != next_bwd;
			next_bwd++;
			bwd_seen[k]++;
			in_flight--;
		}
		if (in_flight > peak)
			peak = in_flight;
	}
	for (int k = 0; k < m; k++)
		bad += fwd_seen[k] != 1 || bwd_seen[k] != 1;
	EXPECT_TRUE(bad == 0, "stage %d of %d, m=%d: %d ordering faults", stage, stages, m, bad);
	EXPECT_TRUE(peak == pipeline_max_in_flight(stage, stages, m),
		    "stage %d of %d, m=%d: %d in flight, max_in_flight says %d", stage, stages, m,
		    peak, pipeline_max_in_flight(stage, stages, m));
}

/* Runs all stages in lock-step time and returns the makespan (-1 on deadlock). */
static int simulate(int stages, int m)
{
	struct pipeline_op ops[MAX_P][2 * MAX_M];
	int pos[MAX_P] = {0}, busy_until[MAX_P] = {0};
	int fwd_done[MAX_P][MAX_M], bwd_done[MAX_P][MAX_M];
	int t = 0, finished = 0;

	for (int s = 0; s < stages; s++) {
		pipeline_1f1b(ops[s], s, stages, m);
		for (int k = 0; k < m; k++)
			fwd_done[s][k] = bwd_done[s][k] = -1;
	}
	while (finished < stages) {
		bool progressed = false;

		for (int s = 0; s < stages; s++) {
			const struct pipeline_op *op;
			bool ready;

			if (pos[s] == 2 * m || busy_until[s] > t)
				continue;
			op = &ops[s][pos[s]];
			if (op->kind == PIPELINE_FORWARD)
				ready = s == 0 || (fwd_done[s - 1][op->micro] >= 0 &&
						   fwd_done[s - 1][op->micro] <= t);
			else
				ready = s == stages - 1 ? fwd_done[s][op->micro] <= t
							: (bwd_done[s + 1][op->micro] >= 0 &&
							   bwd_done[s + 1][op->micro] <= t);
			if (!ready)
				continue;
			busy_until[s] = t + 1;
			if (op->kind == PIPELINE_FORWARD)
				fwd_done[s][op->micro] = t + 1;
			else
				bwd_done[s][op->micro] = t + 1;
			if (++pos[s] == 2 * m)
				finished++;
			progressed = true;
		}
		t++;
		if (!progressed && t > 4 * (m + stages) + 10)
			return -1;
	}
	return t;
}

int main(void)
{
	for (int p = 1; p <= MAX_P; p++)
		for (int m = 1; m <= 16; m++)
			for (int s = 0; s < p; s++)
				check_stage(s, p, m);
	for (int p = 1; p <= MAX_P; p++)
		for (int m = 1; m <= MAX_M; m *= 2) {
			int makespan = simulate(p, m);
			double idle = 1.0 - (2.0 * m) / (double)makespan;

			EXPECT_TRUE(makespan > 0, "P=%d m=%d deadlocks", p, m);
			EXPECT_TRUE(fabs(idle - pipeline_bubble_fraction(p, m)) < 1e-12,
				    "P=%d m=%d: simulated idle %.4f, formula %.4f", p, m, idle,
				    pipeline_bubble_fraction(p, m));
		}
	return test_finish();
}
