#include "parallel/grad_sync.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/check.h"

struct bucket {
	size_t offset, count; /* grad[offset .. offset + count) */
	int *counts;          /* [size] shard sizes: MPI's recvcounts */
	size_t *starts;       /* [size] where each rank's shard starts in grad */
	size_t scratch_at;    /* this rank's shard in scratch (reduce-scatter) */
};

struct grad_sync {
	MPI_Comm comm;          /* a duplicate of the caller's; unused with one rank */
	int size, rank;
	enum grad_sync_mode mode;
	float *grad;            /* (grad_count) the caller's */
	size_t grad_count;

	struct bucket *buckets; /* [n_buckets] in registration order */
	int n_buckets, cap_buckets;
	size_t shard_floats;    /* sum of this rank's shard sizes */
	float *scratch;         /* (scratch_cap) reduce-scatter results before the copy */
	size_t scratch_cap;

	int *displs;            /* [size] a bucket's shard offsets, for the all-gather */
	MPI_Request *reqs;      /* [cap_buckets] this step's reductions, in start order */
	int *req_bucket;        /* [cap_buckets] the bucket of each request */
	int n_reqs;
	int last_started;       /* highest bucket started this step, -1: none */
	double bytes_sent;
};

static double now_s(void)
{
	struct timespec ts;

	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &ts));
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Set-up only: the arrays grow while buckets are registered, never in a step. */
static void *grow(void *p, size_t n, size_t elem)
{
	void *q = realloc(p, size_mul_checked(n, elem, "grad_sync tables"));

	if (!q)
		FATAL("grad_sync: out of memory for %zu x %zu bytes", n, elem);
	return q;
}

struct grad_sync *grad_sync_create(MPI_Comm comm, enum grad_sync_mode mode, float *grad,
				   size_t count)
{
	struct grad_sync *gs = xcalloc(1, sizeof(*gs));

	ENSURE(mode == GRAD_SYNC_ALLREDUCE || mode == GRAD_SYNC_REDUCE_SCATTER);
	ENSURE(grad != NULL || count == 0);
	CHECK_MPI(MPI_Comm_size(comm, &gs->size));
	CHECK_MPI(MPI_Comm_rank(comm, &gs->rank));
	gs->comm = MPI_COMM_NULL;
	if (gs->size > 1) {
		/* collective: all ranks of comm */
		CHECK_MPI(MPI_Comm_dup(comm, &gs->comm));
		CHECK_MPI(MPI_Comm_set_errhandler(gs->comm, MPI_ERRORS_RETURN));
	}
	gs->mode = mode;
	gs->displs = xcalloc((size_t)gs->size, sizeof(*gs->displs));
	gs->grad = grad;
	gs->grad_count = count;
	gs->last_started = -1;
	/* Never empty, so that an empty shard still has a valid receive address. */
	if (mode == GRAD_SYNC_REDUCE_SCATTER && gs->size > 1) {
		gs->scratch_cap = 1;
		gs->scratch = xmalloc(sizeof(*gs->scratch));
	}
	return gs;
}

void grad_sync_destroy(struct grad_sync *gs)
{
	if (gs->n_reqs || gs->last_started >= 0)
		FATAL("grad_sync_destroy: a step is under way (bucket %d started): call "
		      "grad_sync_finish first", gs->last_started);
	for (int b = 0; b < gs->n_buckets; b++) {
		free(gs->buckets[b].counts);
		free(gs->buckets[b].starts);
	}
	free(gs->buckets);
	free(gs->reqs);
	free(gs->req_bucket);
	free(gs->scratch);
	free(gs->displs);
	if (gs->comm != MPI_COMM_NULL)
		/* collective: all ranks of comm */
		CHECK_MPI(MPI_Comm_free(&gs->comm));
	free(gs);
}

static bool overlaps(const struct bucket *a, size_t offset, size_t count)
{
	return a->count && count && offset < a->offset + a->count && a->offset < offset + count;
}

int grad_sync_add_bucket(struct grad_sync *gs, size_t offset, size_t count,
			 const size_t *counts)
{
	const int b = gs->n_buckets, p = gs->size;
	struct bucket *bk;
	size_t at;

	/* The request, scratch and table arrays may move below. */
	if (gs->n_reqs || gs->last_started >= 0)
		FATAL("grad_sync_add_bucket: a step is under way (bucket %d started): "
		      "buckets are registered at set-up", gs->last_started);
	if (count > INT_MAX)
		FATAL("grad_sync: bucket %d has %zu floats, more than INT_MAX (%d), the largest "
		      "MPI count: register it as several buckets", b, count, INT_MAX);
	if (offset > gs->grad_count || count > gs->grad_count - offset)
		FATAL("grad_sync: bucket %d [%zu, %zu + %zu) leaves the gradient array of %zu "
		      "floats", b, offset, offset, count, gs->grad_count);
	for (int i = 0; i < b; i++)
		if (overlaps(&gs->buckets[i], offset, count))
			FATAL("grad_sync: bucket %d [%zu, %zu + %zu) overlaps bucket %d [%zu, "
			      "%zu + %zu)", b, offset, offset, count, i, gs->buckets[i].offset,
			      gs->buckets[i].offset, gs->buckets[i].count);
	if (b == gs->cap_buckets) {
		ENSURE(b < INT_MAX / 4);
		gs->cap_buckets = 2 * b + 8;
		gs->buckets = grow(gs->buckets, (size_t)gs->cap_buckets, sizeof(*gs->buckets));
		gs->reqs = grow(gs->reqs, (size_t)gs->cap_buckets, sizeof(*gs->reqs));
		gs->req_bucket = grow(gs->req_bucket, (size_t)gs->cap_buckets,
				      sizeof(*gs->req_bucket));
	}
	at = 0;
	for (int r = 0; counts && r < p; r++) {
		if (counts[r] > count - at)
			FATAL("grad_sync: bucket %d of %zu floats: the shard counts of ranks "
			      "0 .. %d already sum to more", b, count, r);
		at += counts[r];
	}
	if (counts && at != count)
		FATAL("grad_sync: bucket %d of %zu floats: the shard counts sum to %zu", b, count,
		      at);
	bk = &gs->buckets[b];
	bk->offset = offset;
	bk->count = count;
	bk->counts = xmalloc(sizeof(*bk->counts) * (size_t)p);
	bk->starts = xmalloc(sizeof(*bk->starts) * (size_t)p);
	at = 0;
	for (int r = 0; r < p; r++) {
		size_t n = counts ? counts[r]
				  : count / (size_t)p + ((size_t)r < count % (size_t)p);

		bk->counts[r] = (int)n; /* <= count <= INT_MAX */
		bk->starts[r] = offset + at;
		at += n;
	}
	bk->scratch_at = gs->shard_floats;
	gs->shard_floats += (size_t)bk->counts[gs->rank];
	/* Exactly one float per shard float: it holds nothing between steps, so it is
	 * reallocated without a copy. */
	if (gs->scratch && gs->shard_floats > gs->scratch_cap) {
		free(gs->scratch);
		gs->scratch_cap = gs->shard_floats;
		gs->scratch = xmalloc(size_mul_checked(gs->scratch_cap, sizeof(*gs->scratch),
						       "grad_sync scratch"));
	}
	gs->n_buckets = b + 1;
	return b;
}

void grad_sync_start(struct grad_sync *gs, int b)
{
	const struct bucket *bk;
	const double p = gs->size;
	MPI_Request *req;

	ENSURE(b >= 0 && b < gs->n_buckets);
	if (b <= gs->last_started)
		FATAL("grad_sync_start: bucket %d after bucket %d: a step starts buckets in "
		      "increasing order, each at most once", b, gs->last_started);
	gs->last_started = b;
	bk = &gs->buckets[b];
	/* Every rank registered the same buckets, so all skip an empty one alike. */
	if (gs->size == 1 || bk->count == 0)
		return;
	req = &gs->reqs[gs->n_reqs];
	gs->req_bucket[gs->n_reqs++] = b;
	if (gs->mode == GRAD_SYNC_ALLREDUCE) {
		gs->bytes_sent += 2.0 * (p - 1.0) / p * (double)(sizeof(float) * bk->count);
		/* collective: all ranks of comm, buckets in the same order on each */
		CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, gs->grad + bk->offset, (int)bk->count,
					 MPI_FLOAT, MPI_SUM, gs->comm, req));
	} else {
		gs->bytes_sent += (p - 1.0) / p * (double)(sizeof(float) * bk->count);
		/* collective: all ranks of comm, buckets in the same order on each */
		CHECK_MPI(MPI_Ireduce_scatter(gs->grad + bk->offset, gs->scratch + bk->scratch_at,
					      bk->counts, MPI_FLOAT, MPI_SUM, gs->comm, req));
	}
}

void grad_sync_progress(struct grad_sync *gs)
{
	int done;

	/* MPI_Testall frees the requests only once all are complete (and then leaves
	 * MPI_REQUEST_NULL, which later calls and MPI_Waitall accept), so it is called on
	 * the whole step's array each time. */
	if (gs->n_reqs > 0)
		CHECK_MPI(MPI_Testall(gs->n_reqs, gs->reqs, &done, MPI_STATUSES_IGNORE));
}

double grad_sync_finish(struct grad_sync *gs)
{
	double t0;

	gs->last_started = -1;
	if (gs->size == 1)
		return 0.0;
	t0 = now_s();
	if (gs->n_reqs > 0)
		CHECK_MPI(MPI_Waitall(gs->n_reqs, gs->reqs, MPI_STATUSES_IGNORE));
	if (gs->mode == GRAD_SYNC_REDUCE_SCATTER)
		for (int i = 0; i < gs->n_reqs; i++) {
			const struct bucket *bk = &gs->buckets[gs->req_bucket[i]];

			memcpy(gs->grad + bk->starts[gs->rank], gs->scratch + bk->scratch_at,
			       sizeof(float) * (size_t)bk->counts[gs->rank]);
		}
	gs->n_reqs = 0;
	return now_s() - t0;
}

double grad_sync_gather(struct grad_sync *gs, float *data)
{
	const double p = gs->size;
	double t0;

	if (gs->n_reqs || gs->last_started >= 0)
		FATAL("grad_sync_gather: a step is under way (bucket %d started): finish it "
		      "first", gs->last_started);
	if (gs->size == 1)
		return 0.0;
	t0 = now_s();
	for (int b = 0; b < gs->n_buckets; b++) {
		const struct bucket *bk = &gs->buckets[b];

		if (bk->count == 0)
			continue;
		for (int r = 0; r < gs->size; r++)
			gs->displs[r] = (int)(bk->starts[r] - bk->offset); /* < count <= INT_MAX */
		gs->bytes_sent += (p - 1.0) / p * (double)(sizeof(float) * bk->count);
		/* collective: all ranks of comm, buckets in the same order on each */
		CHECK_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data + bk->offset,
					 bk->counts, gs->displs, MPI_FLOAT, gs->comm));
	}
	return now_s() - t0;
}

int grad_sync_buckets(const struct grad_sync *gs)
{
	return gs->n_buckets;
}

void grad_sync_bucket(const struct grad_sync *gs, int b, size_t *offset, size_t *count)
{
	ENSURE(b >= 0 && b < gs->n_buckets);
	*offset = gs->buckets[b].offset;
	*count = gs->buckets[b].count;
}

void grad_sync_shard_of(const struct grad_sync *gs, int b, int rank, size_t *offset,
			size_t *count)
{
	ENSURE(b >= 0 && b < gs->n_buckets);
	ENSURE(rank >= 0 && rank < gs->size);
	*offset = gs->buckets[b].starts[rank];
	*count = (size_t)gs->buckets[b].counts[rank];
}

void grad_sync_shard(const struct grad_sync *gs, int b, size_t *offset, size_t *count)
{
	grad_sync_shard_of(gs, b, gs->rank, offset, count);
}

size_t grad_sync_shard_floats(const struct grad_sync *gs)
{
	return gs->shard_floats;
}

double grad_sync_bytes_sent(const struct grad_sync *gs)
{
	return gs->bytes_sent;
}
