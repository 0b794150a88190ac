/*
 * The pipeline schedules without MPI.
 *
 * 1F1B: every stage forwards and backwards each micro-batch exactly once, backward
 * after forward and in micro-batch order; a stage never holds more than
 * pipeline_max_in_flight() activations.
 *
 * Interleaved 1F1B, for every P <= 8, v = 1..4 chunks per stage and m a multiple of
 * P up to 4P: every (chunk, micro-batch) is forwarded once and backwarded once,
 * after its forward; each chunk's forwards and backwards run in micro-batch order
 * (so slot = micro % slots is safe); a stage finishes its chunks' last backwards in
 * the order v - 1, ..., 0 (the order the gradient buckets are registered in); the
 * chunk's peak of activations is pipeline_chunk_in_flight(); v = 1 is 1F1B itself.
 *
 * Then a simulation of P stages running their lists as train_step does: an op
 * starts when its input has arrived (the previous virtual stage's forward, or the
 * next one's backward); a send waits for the previous message from the same
 * (chunk, slot) buffer to be received (a rendezvous send completes only once its
 * receiver has posted the receive, at the start of the receiving op); forwards and
 * backwards take unit time (and backward twice forward's time, as it roughly does).
 * Every case must finish without deadlock. Its idle fraction, 1 - busy / makespan:
 * for equal op times it is (P-1)/(v m + P-1) exactly, and the interleaved schedule
 * of PP=4 over 8 micro-batches (v = 2) must idle at most 60% of 1F1B's. A table of
 * idle fractions is printed (also the trainer's measure: the mean over the stages
 * of each stage's idle time before its own last op ends).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/pipeline.h"
#include "tests/harness.h"

enum { MAX_P = 8, MAX_V = 4, MAX_M = 32, MAX_OPS = 2 * MAX_V * MAX_M };

static void check_stage(int stage, int stages, int m)
{
	struct pipeline_op ops[2 * MAX_M];
	int fwd_seen[MAX_M] = {0}, bwd_seen[MAX_M] = {0}, in_flight = 0, peak = 0;
	int next_bwd = 0, bad = 0;

	pipeline_1f1b(ops, stage, stages, m);
	for (int i = 0; i < 2 * m; i++) {
		int k = ops[i].micro;

		if (k < 0 || k >= m || ops[i].chunk != 0) {
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

/* The interleaved list of one stage: counts, orders, peaks, and v = 1 = 1F1B. */
static void check_interleaved(int stage, int stages, int v, int m)
{
	struct pipeline_op ops[MAX_OPS], plain[2 * MAX_M];
	int fwd[MAX_V][MAX_M] = {{0}}, bwd[MAX_V][MAX_M] = {{0}};
	int next_fwd[MAX_V] = {0}, next_bwd[MAX_V] = {0}, held[MAX_V] = {0}, peak[MAX_V] = {0};
	int last_bwd[MAX_V], bad = 0;
	const int n = 2 * v * m;

	pipeline_interleaved(ops, stage, stages, v, m);
	for (int i = 0; i < n; i++) {
		const int c = ops[i].chunk, k = ops[i].micro;

		if (c < 0 || c >= v || k < 0 || k >= m) {
			bad++;
			continue;
		}
		if (ops[i].kind == PIPELINE_FORWARD) {
			bad += k != next_fwd[c]++;
			fwd[c][k]++;
			held[c]++;
		} else {
			bad += !fwd[c][k] || k != next_bwd[c]++;
			bwd[c][k]++;
			held[c]--;
			last_bwd[c] = i;
		}
		if (held[c] > peak[c])
			peak[c] = held[c];
	}
	for (int c = 0; c < v; c++)
		for (int k = 0; k < m; k++)
			bad += fwd[c][k] != 1 || bwd[c][k] != 1;
	EXPECT_TRUE(bad == 0, "interleaved stage %d of %d, v=%d, m=%d: %d ordering faults",
		    stage, stages, v, m, bad);
	for (int c = 0; c + 1 < v; c++)
		EXPECT_TRUE(last_bwd[c + 1] < last_bwd[c],
			    "stage %d of %d, v=%d, m=%d: chunk %d's last backward (op %d) after chunk "
			    "%d's (op %d)", stage, stages, v, m, c + 1, last_bwd[c + 1], c,
			    last_bwd[c]);
	for (int c = 0; c < v; c++)
		EXPECT_TRUE(peak[c] == pipeline_chunk_in_flight(stage, stages, v, m, c),
			    "stage %d of %d, v=%d, m=%d: chunk %d holds %d, chunk_in_flight says %d",
			    stage, stages, v, m, c, peak[c],
			    pipeline_chunk_in_flight(stage, stages, v, m, c));
	if (v == 1) {
		pipeline_1f1b(plain, stage, stages, m);
		EXPECT_TRUE(!memcmp(plain, ops, sizeof(plain[0]) * (size_t)n),
			    "stage %d of %d, m=%d: interleaved with one chunk is not 1F1B", stage,
			    stages, m);
	}
}

/* ---- simulation -------------------------------------------------------------- */

struct sim_op {
	struct pipeline_op op;
	long reach, end, after; /* posted its receive, finished computing, moved on */
};

struct sim {
	int P, v, m, slots[MAX_P][MAX_V];
	struct sim_op ops[MAX_P][MAX_OPS];
	int index[MAX_P][2][MAX_V][MAX_M]; /* where (kind, chunk, micro) is in a list */
	int done[MAX_P];                   /* ops resolved on each stage */
};

/* The op of virtual stage vs for (kind, micro): its stage and position. */
static const struct sim_op *sim_at(const struct sim *s, int vs, enum pipeline_op_kind kind,
				   int micro, int *pos, int *stage)
{
	*stage = vs % s->P;
	*pos = s->index[*stage][kind][vs / s->P][micro];
	return &s->ops[*stage][*pos];
}

/* When the op of virtual stage vs for (kind, micro) posted its receive, or -1 if its
 * stage has not reached it yet. */
static long sim_reached(const struct sim *s, int vs, enum pipeline_op_kind kind, int micro)
{
	int pos, stage;
	const struct sim_op *o = sim_at(s, vs, kind, micro, &pos, &stage);

	return s->done[stage] >= pos ? o->reach : -1;
}

/* When the op of virtual stage vs for (kind, micro) sent its message, or -1. */
static long sim_sent(const struct sim *s, int vs, enum pipeline_op_kind kind, int micro)
{
	int pos, stage;
	const struct sim_op *o = sim_at(s, vs, kind, micro, &pos, &stage);

	return s->done[stage] > pos ? o->after : -1;
}

static long max_l(long a, long b)
{
	return a > b ? a : b;
}

/* Resolves stage p's next op if its dependencies are known; false otherwise. */
static bool sim_step(struct sim *s, int p, long tf, long tb)
{
	const int j = s->done[p], S = s->P * s->v;
	struct sim_op *o = &s->ops[p][j];
	const int c = o->op.chunk, i = o->op.micro, k = s->slots[p][c], vs = c * s->P + p;
	long input, wait = 0;

	o->reach = j ? s->ops[p][j - 1].after : 0;
	if (o->op.kind == PIPELINE_FORWARD) {
		input = vs == 0 ? 0 : sim_sent(s, vs - 1, PIPELINE_FORWARD, i);
		/* the output buffer of (chunk, slot): its previous micro-batch received */
		if (vs + 1 < S && i >= k)
			wait = sim_reached(s, vs + 1, PIPELINE_FORWARD, i - k);
		if (input < 0 || wait < 0)
			return false;
		o->end = max_l(max_l(o->reach, input), wait) + tf;
		o->after = o->end;
	} else {
		input = vs + 1 == S ? 0 : sim_sent(s, vs + 1, PIPELINE_BACKWARD, i);
		/* the input-gradient buffer of (chunk, slot), waited after computing */
		if (vs > 0 && i >= k)
			wait = sim_reached(s, vs - 1, PIPELINE_BACKWARD, i - k);
		if (input < 0 || wait < 0)
			return false;
		o->end = max_l(o->reach, input) + tb;
		o->after = max_l(o->end, wait);
	}
	s->done[p]++;
	return true;
}

/* Runs the P stages; the makespan, or -1 on deadlock. *mean_idle: the mean over the
 * stages of 1 - busy / (the end of its own last op), the trainer's pipeline_idle.
 * swap > 0: stage 0's ops 0 and swap change places (to see a deadlock caught). */
static long simulate(int P, int v, int m, long tf, long tb, double *mean_idle, int swap)
{
	struct sim *s = calloc(1, sizeof(*s));
	const int n = 2 * v * m;
	long makespan = 0;
	bool progress = true;
	int finished = 0;

	s->P = P;
	s->v = v;
	s->m = m;
	for (int p = 0; p < P; p++) {
		struct pipeline_op ops[MAX_OPS];

		pipeline_interleaved(ops, p, P, v, m);
		if (p == 0 && swap > 0) {
			struct pipeline_op first = ops[0];

			ops[0] = ops[swap];
			ops[swap] = first;
		}
		for (int j = 0; j < n; j++) {
			s->ops[p][j].op = ops[j];
			s->index[p][ops[j].kind][ops[j].chunk][ops[j].micro] = j;
		}
		for (int c = 0; c < v; c++)
			s->slots[p][c] = pipeline_chunk_in_flight(p, P, v, m, c);
	}
	while (progress && finished < P) {
		progress = false;
		finished = 0;
		for (int p = 0; p < P; p++) {
			while (s->done[p] < n && sim_step(s, p, tf, tb))
				progress = true;
			finished += s->done[p] == n;
		}
	}
	*mean_idle = 0.0;
	for (int p = 0; finished == P && p < P; p++) {
		const long last = s->ops[p][n - 1].after;

		makespan = max_l(makespan, last);
		*mean_idle += (1.0 - (double)(v * m) * (double)(tf + tb) / (double)last) / P;
	}
	free(s);
	return finished == P ? makespan : -1;
}

/* Idle fraction of the simulation, 1 - busy / makespan; -1 on deadlock. */
static double sim_idle(int P, int v, int m, long tf, long tb, double *mean_idle)
{
	long makespan = simulate(P, v, m, tf, tb, mean_idle, 0);

	EXPECT_TRUE(makespan > 0, "P=%d v=%d m=%d (forward %ld, backward %ld) deadlocks", P, v, m,
		    tf, tb);
	return makespan > 0 ? 1.0 - (double)(v * m) * (double)(tf + tb) / (double)makespan : -1.0;
}

int main(void)
{
	for (int p = 1; p <= MAX_P; p++)
		for (int m = 1; m <= 16; m++)
			for (int s = 0; s < p; s++)
				check_stage(s, p, m);
	for (int p = 1; p <= MAX_P; p++)
		for (int v = 1; v <= MAX_V; v++)
			for (int m = 1; m <= 4 * p && m <= MAX_M; m++) {
				if (!pipeline_interleaved_valid(p, v, m))
					continue;
				for (int s = 0; s < p; s++)
					check_interleaved(s, p, v, m);
			}
	EXPECT_TRUE(!pipeline_interleaved_valid(4, 2, 6) && pipeline_interleaved_valid(4, 1, 6) &&
		    pipeline_interleaved_valid(4, 2, 8) && !pipeline_interleaved_valid(4, 2, 0),
		    "pipeline_interleaved_valid: m a multiple of P when v > 1");

	/* the simulation sees a deadlock: stage 0 backwarding micro-batch 0 first */
	{
		double mean;

		EXPECT_TRUE(simulate(2, 2, 4, 1, 1, &mean, 2 * 2 * 4 - 1) == -1 &&
			    simulate(2, 1, 2, 1, 1, &mean, 2) == -1,
			    "the simulation does not notice a backward before its forward");
	}

	/* every case without deadlock; equal op times give the formula exactly */
	for (int p = 1; p <= MAX_P; p++)
		for (int v = 1; v <= MAX_V; v++)
			for (int m = 1; m <= 4 * p && m <= MAX_M; m++) {
				double idle, mean;

				if (!pipeline_interleaved_valid(p, v, m))
					continue;
				idle = sim_idle(p, v, m, 1, 1, &mean);
				sim_idle(p, v, m, 1, 2, &mean);
				EXPECT_TRUE(fabs(idle - pipeline_bubble_fraction(p, v, m)) < 1e-12,
					    "P=%d v=%d m=%d: simulated idle %.4f, formula %.4f", p, v,
					    m, idle, pipeline_bubble_fraction(p, v, m));
			}

	/* the table, and the target: PP=4 over 8 micro-batches */
	printf("idle fraction, simulated (forward = backward | backward = 2 x forward); "
	       "in brackets the mean of the stages' own idle, as the trainer logs it\n");
	printf("%3s %3s %3s  %-25s %-25s\n", "P", "m", "v", "F = B", "B = 2F");
	for (int p = 2; p <= MAX_P; p *= 2)
		for (int m = p; m <= 4 * p && m <= MAX_M; m *= 2)
			for (int v = 1; v <= MAX_V; v *= 2) {
				double mean1, mean2;
				double i1 = sim_idle(p, v, m, 1, 1, &mean1);
				double i2 = sim_idle(p, v, m, 1, 2, &mean2);

				printf("%3d %3d %3d  %.3f (%.3f)%13s %.3f (%.3f)\n", p, m, v, i1,
				       mean1, "", i2, mean2);
			}
	for (int tb = 1; tb <= 2; tb++) {
		double mp, mi;
		const double plain = sim_idle(4, 1, 8, 1, tb, &mp);
		const double inter = sim_idle(4, 2, 8, 1, tb, &mi);

		EXPECT_TRUE(inter <= 0.6 * plain, "PP=4, m=8, backward %dx forward: interleaved (v=2) "
			    "idles %.3f, 1F1B %.3f: more than 60%%", tb, inter, plain);
		EXPECT_TRUE(mi <= 0.6 * mp, "PP=4, m=8, backward %dx forward: the stages' mean idle "
			    "%.3f interleaved, %.3f 1F1B: more than 60%%", tb, mi, mp);
	}
	return test_finish();
}
