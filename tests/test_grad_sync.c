/*
 * grad_sync under mpiexec -n P, P = 1 .. 4 (the communicator is the world). Each rank
 * fills a gradient array with values of common/rng.h keyed by (rank, index), in
 * (-1, 1); buckets of varied sizes (empty, 1, 2 and 3 floats, smaller than P, up to
 * thousands) lie between gaps that belong to no bucket and are registered from the
 * end of the array to its start, as backward finishes them. A step starts them in
 * order with a progress call after each and finishes; a second step on the same
 * handle skips some buckets. Every rank computes the expected values in float64 from
 * the same generator:
 *  - all-reduce: every element of every started bucket is the sum over the ranks;
 *  - reduce-scatter, even split and caller-given uneven counts (zeros included):
 *    every element of this rank's shards of the started buckets is the sum;
 *  - every other element keeps this rank's own value, bit for bit.
 * Tolerance: a float32 sum of p terms, in whatever order MPI adds them, is within
 * (p - 1) 2^-24 x sum |terms| of the exact sum; the test allows 1e-6 x sum |terms|
 * (5x the bound at P = 4; the terms cancel, so |sum| is no yardstick).
 * Also: the shards follow the split formula or the given counts; the bytes counted
 * for a bucket of 1200 floats are the ring formula's; with one rank the module makes
 * no communication call (its MPI calls are counted through the profiling interface).
 *
 * With "--refuse CASE" it makes one registration or start that the module must
 * refuse; CTest checks the fatal message.
 */
#include <mpi.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/rng.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_setup.h"
#include "tests/harness.h"

enum { MAX_P = 4, GAP = 3, NB = 10 };

static const uint64_t SEED = 0x9e3779b97f4a7c15ULL;
/* In memory order; registered last to first. */
static const size_t bucket_sizes[NB] = {1000, 3, 1, 0, 2, 4099, 17, 5, 64, 1};

/* ---- MPI calls made by grad_sync, counted through the profiling interface ---- */

static long n_iallreduce, n_ireduce_scatter, n_other_calls;

int MPI_Iallreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype,
		   MPI_Op op, MPI_Comm comm, MPI_Request *request)
{
	n_iallreduce++;
	return PMPI_Iallreduce(sendbuf, recvbuf, count, datatype, op, comm, request);
}

int MPI_Ireduce_scatter(const void *sendbuf, void *recvbuf, const int recvcounts[],
			MPI_Datatype datatype, MPI_Op op, MPI_Comm comm, MPI_Request *request)
{
	n_ireduce_scatter++;
	return PMPI_Ireduce_scatter(sendbuf, recvbuf, recvcounts, datatype, op, comm, request);
}

int MPI_Testall(int count, MPI_Request array_of_requests[], int *flag,
		MPI_Status array_of_statuses[])
{
	n_other_calls++;
	return PMPI_Testall(count, array_of_requests, flag, array_of_statuses);
}

int MPI_Waitall(int count, MPI_Request array_of_requests[], MPI_Status *array_of_statuses)
{
	n_other_calls++;
	return PMPI_Waitall(count, array_of_requests, array_of_statuses);
}

int MPI_Comm_dup(MPI_Comm comm, MPI_Comm *newcomm)
{
	n_other_calls++;
	return PMPI_Comm_dup(comm, newcomm);
}

int MPI_Comm_free(MPI_Comm *comm)
{
	n_other_calls++;
	return PMPI_Comm_free(comm);
}

static void reset_calls(void)
{
	n_iallreduce = n_ireduce_scatter = n_other_calls = 0;
}

/* ---- the layout and the values ---------------------------------------------- */

struct layout {
	size_t offset[NB]; /* in memory order */
	size_t n;          /* floats in the array, gaps included */
};

static struct layout make_layout(void)
{
	struct layout l;
	size_t at = GAP;

	for (int j = 0; j < NB; j++) {
		l.offset[j] = at;
		at += bucket_sizes[j] + GAP;
	}
	l.n = at;
	return l;
}

static float value(int rank, int step, size_t i)
{
	return (float)(2.0 * rng_uniform(SEED, (uint64_t)step << 32 | (uint64_t)rank, i) - 1.0);
}

/*
 * Caller-given counts with zeros: by bucket, all on the last rank; by rank number
 * (rank 0 none); or evenly on all ranks but one. The last rank with a share takes
 * the remainder.
 */
static void uneven_counts(size_t *counts, int b, size_t count, int p)
{
	size_t w[MAX_P], wsum = 0, given = 0;
	int last = 0;

	for (int r = 0; r < p; r++) {
		w[r] = b % 3 == 0 ? (size_t)(r == p - 1)
		     : b % 3 == 1 ? (size_t)r
				  : (size_t)(r != (b / 3) % p);
		wsum += w[r];
	}
	if (wsum == 0)
		w[p - 1] = wsum = 1;
	for (int r = 0; r < p; r++) {
		counts[r] = count * w[r] / wsum;
		given += counts[r];
		if (w[r])
			last = r;
	}
	counts[last] += count - given;
}

/* Rank q's share of a bucket: the given count, or the even split's. */
static size_t share(const size_t *counts, size_t bucket_count, int q, int p)
{
	return counts ? counts[q]
		      : bucket_count / (size_t)p + ((size_t)q < bucket_count % (size_t)p);
}

/* The shard of rank r that the split gives, computed here from the definition. */
static void expected_shard(size_t *offset, size_t *count, const size_t *counts,
			   size_t bucket_offset, size_t bucket_count, int r, int p)
{
	*offset = bucket_offset;
	for (int q = 0; q < r; q++)
		*offset += share(counts, bucket_count, q, p);
	*count = share(counts, bucket_count, r, p);
}

/* ---- one mode and split, two steps -------------------------------------------- */

static bool started_in_step(int b, int step)
{
	return step == 0 || b % 4 != 2;
}

static void check_case(enum grad_sync_mode mode, bool uneven, int rank, int p)
{
	const char *name = mode == GRAD_SYNC_ALLREDUCE ? "all-reduce" : "reduce-scatter";
	const char *split = uneven ? "given counts" : "even split";
	const struct layout l = make_layout();
	float *grad = malloc(sizeof(float) * l.n);
	double *want = malloc(sizeof(double) * l.n), *scale = malloc(sizeof(double) * l.n);
	size_t counts[NB][MAX_P], bucket_of[NB], shard_sum = 0;
	struct grad_sync *gs;
	char label[160];
	int bad = 0;

	reset_calls();
	gs = grad_sync_create(MPI_COMM_WORLD, mode, grad, l.n);
	/* Bucket b (registration order) is the array's bucket NB - 1 - b. */
	for (int b = 0; b < NB; b++) {
		const int j = NB - 1 - b;
		int got;

		bucket_of[b] = (size_t)j;
		uneven_counts(counts[b], b, bucket_sizes[j], p);
		got = grad_sync_add_bucket(gs, l.offset[j], bucket_sizes[j],
					   uneven ? counts[b] : NULL);
		EXPECT_TRUE(got == b, "%s, %s: bucket registered as %d, want %d", name, split,
			    got, b);
	}
	EXPECT_TRUE(grad_sync_buckets(gs) == NB, "%d buckets, want %d", grad_sync_buckets(gs),
		    NB);
	for (int b = 0; b < NB; b++) {
		const size_t j = bucket_of[b];
		size_t b_off, b_cnt;

		grad_sync_bucket(gs, b, &b_off, &b_cnt);
		EXPECT_TRUE(b_off == l.offset[j] && b_cnt == bucket_sizes[j],
			    "bucket %d is [%zu, +%zu), want [%zu, +%zu)", b, b_off, b_cnt,
			    l.offset[j], bucket_sizes[j]);
		for (int r = 0; r < p; r++) {
			size_t off, cnt, want_off, want_cnt;

			grad_sync_shard_of(gs, b, r, &off, &cnt);
			expected_shard(&want_off, &want_cnt, uneven ? counts[b] : NULL,
				       l.offset[j], bucket_sizes[j], r, p);
			if (off != want_off || cnt != want_cnt) {
				if (bad++ < 10)
					fprintf(stderr, "  bucket %d rank %d: shard [%zu, +%zu), "
						"want [%zu, +%zu)\n", b, r, off, cnt, want_off,
						want_cnt);
			}
			if (r == rank) {
				size_t own_off, own_cnt;

				grad_sync_shard(gs, b, &own_off, &own_cnt);
				bad += own_off != off || own_cnt != cnt;
				shard_sum += cnt;
			}
		}
	}
	EXPECT_TRUE(bad == 0, "rank %d, %s, %s: %d shards off the split", rank, name, split,
		    bad);
	EXPECT_TRUE(grad_sync_shard_floats(gs) == shard_sum, "shard floats %zu, want %zu",
		    grad_sync_shard_floats(gs), shard_sum);

	for (int step = 0; step < 2; step++) {
		long want_reductions = 0;
		double waited;

		for (size_t i = 0; i < l.n; i++) {
			grad[i] = value(rank, step, i);
			want[i] = grad[i];
			scale[i] = 0.0; /* untouched: equal, bit for bit */
		}
		for (int b = 0; b < NB; b++) {
			if (!started_in_step(b, step))
				continue;
			grad_sync_start(gs, b);
			grad_sync_progress(gs);
			want_reductions += bucket_sizes[bucket_of[b]] != 0;
		}
		waited = grad_sync_finish(gs);
		EXPECT_TRUE(p == 1 ? waited == 0.0 : waited >= 0.0 && waited < 60.0,
			    "rank %d: grad_sync_finish says it waited %g s", rank, waited);

		for (int b = 0; b < NB; b++) {
			size_t lo, n;

			if (!started_in_step(b, step))
				continue;
			if (mode == GRAD_SYNC_ALLREDUCE) {
				lo = l.offset[bucket_of[b]];
				n = bucket_sizes[bucket_of[b]];
			} else {
				grad_sync_shard(gs, b, &lo, &n);
			}
			for (size_t i = lo; i < lo + n; i++) {
				double sum = 0.0, abs_sum = 0.0;

				for (int r = 0; r < p; r++) {
					double x = value(r, step, i);

					sum += x;
					abs_sum += fabs(x);
				}
				want[i] = sum;
				scale[i] = abs_sum;
			}
		}
		snprintf(label, sizeof(label), "rank %d of %d, %s, %s, step %d", rank, p, name,
			 split, step);
		EXPECT_CLOSE_SCALED(grad, want, scale, l.n, 1e-6, label);
		if (p == 1) {
			EXPECT_TRUE(n_iallreduce + n_ireduce_scatter + n_other_calls == 0,
				    "%s: one rank, yet %ld reductions and %ld other MPI calls",
				    label, n_iallreduce + n_ireduce_scatter, n_other_calls);
		} else {
			long got = mode == GRAD_SYNC_ALLREDUCE ? n_iallreduce : n_ireduce_scatter;
			long other = mode == GRAD_SYNC_ALLREDUCE ? n_ireduce_scatter : n_iallreduce;

			EXPECT_TRUE(got == want_reductions && other == 0,
				    "%s: %ld reductions of the mode and %ld of the other, want "
				    "%ld and 0", label, got, other, want_reductions);
		}
		reset_calls();
	}
	if (mode == GRAD_SYNC_REDUCE_SCATTER) {
		/* The gather: each rank holds its own shards of another array (the rest is
		 * garbage); afterwards every bucket holds every rank's shard, bit for bit. */
		float *data = malloc(sizeof(float) * l.n);
		int wrong = 0;

		for (size_t i = 0; i < l.n; i++)
			data[i] = -1e30f;
		for (int b = 0; b < NB; b++) {
			size_t lo, n;

			grad_sync_shard(gs, b, &lo, &n);
			for (size_t i = lo; i < lo + n; i++)
				data[i] = value(rank, 7, i);
		}
		grad_sync_gather(gs, data);
		for (int b = 0; b < NB; b++)
			for (int r = 0; r < p; r++) {
				size_t lo, n;

				grad_sync_shard_of(gs, b, r, &lo, &n);
				for (size_t i = lo; i < lo + n; i++)
					if (data[i] != value(r, 7, i) && wrong++ < 10)
						fprintf(stderr, "  gather: bucket %d element %zu = %g, "
							"want rank %d's %g\n", b, i, data[i], r,
							value(r, 7, i));
			}
		EXPECT_TRUE(wrong == 0, "rank %d of %d, %s: %d gathered values differ from their "
			    "owner's", rank, p, split, wrong);
		free(data);
	}
	grad_sync_destroy(gs);
	if (p == 1)
		EXPECT_TRUE(n_other_calls == 0, "one rank: destroy made %ld MPI calls",
			    n_other_calls);
	free(grad), free(want), free(scale);
}

/* The ring formula on a bucket of 1200 floats (4800 bytes), worked out by hand. */
static void check_bytes(int rank, int p)
{
	static const double allreduce_bytes[MAX_P + 1] = {0, 0, 4800, 6400, 7200};
	float *grad = calloc(1200, sizeof(float));

	for (int m = 0; m < 2; m++) {
		const enum grad_sync_mode mode = m ? GRAD_SYNC_REDUCE_SCATTER : GRAD_SYNC_ALLREDUCE;
		const double want = m ? allreduce_bytes[p] / 2 : allreduce_bytes[p];
		struct grad_sync *gs = grad_sync_create(MPI_COMM_WORLD, mode, grad, 1200);

		grad_sync_add_bucket(gs, 0, 1200, NULL);
		EXPECT_TRUE(grad_sync_bytes_sent(gs) == 0.0, "bytes before any start: %g",
			    grad_sync_bytes_sent(gs));
		grad_sync_start(gs, 0);
		grad_sync_finish(gs);
		EXPECT_TRUE(fabs(grad_sync_bytes_sent(gs) - want) <= 1e-9 * want,
			    "rank %d of %d, %s: %g bytes sent, want %g", rank, p,
			    m ? "reduce-scatter" : "all-reduce",
			    grad_sync_bytes_sent(gs), want);
		grad_sync_destroy(gs);
	}
	free(grad);
}

/* ---- refusals: each ends the job with a fatal message ----------------------- */

static int refuse(const char *what)
{
	float grad[64] = {0};
	size_t counts[MAX_P] = {7};
	struct grad_sync *gs;

	if (!strcmp(what, "int_max")) {
		/* The array is never touched: registration refuses before anything else. */
		gs = grad_sync_create(MPI_COMM_WORLD, GRAD_SYNC_ALLREDUCE, grad,
				      (size_t)INT_MAX + 64);
		grad_sync_add_bucket(gs, 16, (size_t)INT_MAX + 1, NULL);
	} else if (!strcmp(what, "counts")) {
		gs = grad_sync_create(MPI_COMM_WORLD, GRAD_SYNC_REDUCE_SCATTER, grad, 64);
		grad_sync_add_bucket(gs, 0, 10, counts);
	} else if (!strcmp(what, "overlap")) {
		gs = grad_sync_create(MPI_COMM_WORLD, GRAD_SYNC_ALLREDUCE, grad, 64);
		grad_sync_add_bucket(gs, 8, 8, NULL);
		grad_sync_add_bucket(gs, 15, 4, NULL);
	} else if (!strcmp(what, "order")) {
		gs = grad_sync_create(MPI_COMM_WORLD, GRAD_SYNC_ALLREDUCE, grad, 64);
		grad_sync_add_bucket(gs, 32, 32, NULL);
		grad_sync_add_bucket(gs, 0, 32, NULL);
		grad_sync_start(gs, 1);
		grad_sync_start(gs, 0);
	} else {
		fprintf(stderr, "unknown refusal case %s\n", what);
		return 1;
	}
	fprintf(stderr, "not refused: %s\n", what);
	return 1;
}

int main(int argc, char **argv)
{
	int rank, size, counts[2];

	mpi_setup_init(&argc, &argv);
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	if (argc == 3 && !strcmp(argv[1], "--refuse"))
		return refuse(argv[2]);
	if (size > MAX_P)
		FATAL("test_grad_sync runs on 1 to %d ranks, not %d", MAX_P, size);

	check_case(GRAD_SYNC_ALLREDUCE, false, rank, size);
	check_case(GRAD_SYNC_ALLREDUCE, true, rank, size);
	check_case(GRAD_SYNC_REDUCE_SCATTER, false, rank, size);
	check_case(GRAD_SYNC_REDUCE_SCATTER, true, rank, size);
	check_bytes(rank, size);

	/* Every rank printed its own failures; rank 0 prints the totals. */
	counts[0] = test_passed_count;
	counts[1] = test_failed_count;
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
	mpi_setup_finalize();
	if (rank != 0)
		return counts[1] ? 1 : 0;
	test_passed_count = counts[0];
	test_failed_count = counts[1];
	return test_finish();
}
