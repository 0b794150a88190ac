#include "checkpoints/ckpt_union.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

static int rec_cmp(const void *a, const void *b)
{
	const struct ckpt_rec *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

/* collective: every rank's records, sorted by (path, rank). */
struct ckpt_rec *ckpt_union_gather(MPI_Comm comm, const struct ckpt_group *groups, int ngroups,
				   int *total)
{
	int rank, size, n = 0;
	struct ckpt_rec *mine, *all;
	int *counts, *displs;
	size_t sum = 0;

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	CHECK_MPI(MPI_Comm_size(comm, &size));
	for (int g = 0; g < ngroups; g++) {
		ENSURE(groups[g].n <= INT32_MAX / (int)sizeof(struct ckpt_rec) - n);
		n += groups[g].n;
	}
	/* calloc: the padding goes over the wire too */
	mine = xcalloc((size_t)n + 1, sizeof(*mine));
	for (int g = 0, k = 0; g < ngroups; g++) {
		for (int i = 0; i < groups[g].n; i++, k++) {
			const struct ckpt_slice *s = &groups[g].slices[i];
			struct ckpt_rec *r = &mine[k];
			int len = snprintf(r->path, sizeof(r->path), "/%s/%s", groups[g].name,
					   s->slice.name);

			ENSURE(len > 0 && (size_t)len < sizeof(r->path));
			r->rank = rank;
			r->group = g;
			r->index = i;
			r->tensor = (int32_t)strlen(groups[g].name) + 2;
			r->role = groups[g].owner && !s->replica;
			r->ndim = s->slice.ndim;
			r->gshape[0] = s->slice.global_shape[0];
			r->gshape[1] = s->slice.global_shape[1];
			layout_slice_hyperslab(&s->slice, r->start, r->count);
		}
	}
	counts = xcalloc((size_t)size, sizeof(int));
	displs = xcalloc((size_t)size, sizeof(int));
	counts[rank] = n * (int)sizeof(struct ckpt_rec);
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, counts, 1, MPI_INT, comm));
	for (int r = 0; r < size; r++) {
		displs[r] = (int)sum;
		sum += (size_t)counts[r];
		ENSURE(sum <= INT32_MAX);
	}
	all = xcalloc(sum / sizeof(struct ckpt_rec) + 1, sizeof(*all));
	CHECK_MPI(MPI_Allgatherv(mine, counts[rank], MPI_BYTE, all, counts, displs, MPI_BYTE,
				 comm));
	*total = (int)(sum / sizeof(struct ckpt_rec));
	qsort(all, (size_t)*total, sizeof(*all), rec_cmp);
	free(counts);
	free(displs);
	free(mine);
	return all;
}

void ckpt_union_shape_str(char *buf, size_t len, int ndim, const int64_t s[2])
{
	if (ndim == 1)
		snprintf(buf, len, "(%" PRId64 ")", s[0]);
	else
		snprintf(buf, len, "(%" PRId64 ", %" PRId64 ")", s[0], s[1]);
}

/*
 * Do the records of t with role set tile the dataset exactly once? Their areas must
 * add up to the tensor's and no two may overlap (the slices are rectangles).
 * Pairwise, but only among one dataset's holders: the ranks that share a tensor
 * (tensor- times data-parallel degree for a sharded optimizer), not the world.
 */
int ckpt_union_check_tiling(const struct ckpt_tensor *t, char *msg, size_t len)
{
	const struct ckpt_rec *r = t->first;
	uint64_t area = 0, want = (uint64_t)r->gshape[0] * (uint64_t)r->gshape[1];

	for (int i = 0; i < t->nrec; i++) {
		if (!r[i].role)
			continue;
		area += r[i].count[0] * r[i].count[1];
		for (int j = 0; j < i; j++) {
			bool rows = r[i].start[0] < r[j].start[0] + r[j].count[0] &&
				    r[j].start[0] < r[i].start[0] + r[i].count[0];
			bool cols = r[i].start[1] < r[j].start[1] + r[j].count[1] &&
				    r[j].start[1] < r[i].start[1] + r[i].count[1];

			if (!r[j].role || !rows || !cols)
				continue;
			return log_fail(msg, len, "dataset %s: the slices of ranks %d and %d overlap "
				    "(rows %" PRIu64 "+%" PRIu64 ", cols %" PRIu64 "+%" PRIu64
				    " and rows %" PRIu64 "+%" PRIu64 ", cols %" PRIu64 "+%" PRIu64
				    "): its owners must hold each value once", r->path, r[j].rank,
				    r[i].rank, r[j].start[0], r[j].count[0], r[j].start[1],
				    r[j].count[1], r[i].start[0], r[i].count[0], r[i].start[1],
				    r[i].count[1]);
		}
	}
	if (area != want)
		return log_fail(msg, len, "dataset %s: its owners hold %" PRIu64 " of its %" PRIu64
			    " values (a hole): together they must cover it exactly once",
			    r->path, area, want);
	return 0;
}

/* The first of ts (sorted) whose path is >= key. */
static int lower_bound(const struct ckpt_tensor *ts, int nt, const char *key)
{
	int lo = 0, hi = nt;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (strcmp(ts[mid].first->path, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct ckpt_tensor *ckpt_union_find(const struct ckpt_tensor *ts, int nt,
					  const char *path)
{
	int i = lower_bound(ts, nt, path);

	return i < nt && !strcmp(ts[i].first->path, path) ? &ts[i] : NULL;
}

/* A dataset at a path another one needs as a group: HDF5 would fail to create the
 * second in the middle of the writes, so it is refused up front. The paths under
 * P/ are contiguous in sorted order, but not next to P ("P-x" sorts between). */
static int check_nesting(const struct ckpt_tensor *ts, int nt, char *msg, size_t len)
{
	char key[CKPT_DATASET_MAX + 1];

	for (int i = 0; i < nt; i++) {
		const char *p = ts[i].first->path;
		size_t n = strlen(p);
		int j;

		memcpy(key, p, n);
		key[n] = '/';
		key[n + 1] = '\0';
		j = lower_bound(ts, nt, key);
		if (j < nt && !strncmp(ts[j].first->path, key, n + 1))
			return log_fail(msg, len, "dataset %s (rank %d): inside dataset %s (rank %d): "
				    "a path is a dataset or a group, not both",
				    ts[j].first->path, ts[j].first->rank, p, ts[i].first->rank);
	}
	return 0;
}

/*
 * The datasets of the sorted records, each checked: one global shape on every rank,
 * listed once per rank; then no dataset inside another.
 */
struct ckpt_tensor *ckpt_union_build(const struct ckpt_rec *recs, int total, int rank,
				     int *count, char *msg, size_t len)
{
	struct ckpt_tensor *ts = xcalloc((size_t)total + 1, sizeof(*ts));
	int nt = 0, rc = 0;

	for (int i = 0; rc == 0 && i < total;) {
		struct ckpt_tensor *t = &ts[nt++];
		const struct ckpt_rec *a = &recs[i];
		char sa[64], sb[64];

		t->first = a;
		t->group = a->group;
		t->local = -1;
		for (; rc == 0 && i < total && !strcmp(recs[i].path, a->path); i++, t->nrec++) {
			const struct ckpt_rec *b = &recs[i];

			/* checked groups: a path names one group's tensor */
			ENSURE(b->group == a->group);
			if (b->ndim != a->ndim || b->gshape[0] != a->gshape[0] ||
			    b->gshape[1] != a->gshape[1]) {
				ckpt_union_shape_str(sa, sizeof(sa), a->ndim, a->gshape);
				ckpt_union_shape_str(sb, sizeof(sb), b->ndim, b->gshape);
				rc = log_fail(msg, len, "dataset %s: global shape %s on rank %d but %s "
					  "on rank %d", a->path, sa, a->rank, sb, b->rank);
			} else if (b != a && b[-1].rank == b->rank) {
				rc = log_fail(msg, len, "dataset %s: listed twice by rank %d", a->path,
					  b->rank);
			}
			if (b->role && !t->first_role)
				t->first_role = b;
			if (b->rank == rank)
				t->local = b->index;
		}
	}
	if (rc == 0)
		rc = check_nesting(ts, nt, msg, len);
	if (rc) {
		free(ts);
		return NULL;
	}
	*count = nt;
	return ts;
}
