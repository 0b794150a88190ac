#include "checkpoints/ckpt_union.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

float *ckpt_entry_group(const struct ckpt_entry *e, int g)
{
	return g == 0 ? e->model : g == 1 ? e->exp_avg : e->exp_avg_sq;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct ckpt_rec *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

/* collective: every rank's records, sorted by (name, rank). */
struct ckpt_rec *ckpt_union_gather(MPI_Comm comm, const struct ckpt_entry *entries, int n,
				   bool role, int *total)
{
	int rank, size;
	struct ckpt_rec *mine = xcalloc((size_t)n + 1, sizeof(*mine)), *all;
	int *counts, *displs;
	size_t sum = 0;

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	CHECK_MPI(MPI_Comm_size(comm, &size));
	for (int i = 0; i < n; i++) {
		const struct ckpt_entry *e = &entries[i];

		memcpy(mine[i].name, e->slice.name, sizeof(mine[i].name));
		mine[i].rank = rank;
		mine[i].index = i;
		for (int g = 0; g < CKPT_NGROUPS; g++)
			mine[i].mask |= ckpt_entry_group(e, g) ? 1 << g : 0;
		mine[i].role = role && !e->replica;
		mine[i].ndim = e->slice.ndim;
		mine[i].gshape[0] = e->slice.global_shape[0];
		mine[i].gshape[1] = e->slice.global_shape[1];
		layout_slice_hyperslab(&e->slice, mine[i].start, mine[i].count);
	}
	counts = xcalloc((size_t)size, sizeof(int));
	displs = xcalloc((size_t)size, sizeof(int));
	ENSURE((size_t)n <= INT32_MAX / sizeof(struct ckpt_rec));
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
 * Do the records of t with role set tile the tensor exactly once? Their areas must
 * add up to the tensor's and no two may overlap (the slices are rectangles).
 * Pairwise, but only among one tensor's holders: tensor-parallel degree, not world.
 */
int ckpt_union_check_tiling(const struct ckpt_tensor *t, const char *who, char *msg,
			    size_t len)
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
			return log_fail(msg, len, "tensor %s: the slices of ranks %d and %d overlap "
				    "(rows %" PRIu64 "+%" PRIu64 ", cols %" PRIu64 "+%" PRIu64
				    " and rows %" PRIu64 "+%" PRIu64 ", cols %" PRIu64 "+%" PRIu64
				    "): %s must hold each value once", r->name, r[j].rank,
				    r[i].rank, r[j].start[0], r[j].count[0], r[j].start[1],
				    r[j].count[1], r[i].start[0], r[i].count[0], r[i].start[1],
				    r[i].count[1], who);
		}
	}
	if (area != want)
		return log_fail(msg, len, "tensor %s: the %s hold %" PRIu64 " of its %" PRIu64
			    " values (a hole): together they must cover it exactly once",
			    r->name, who, area, want);
	return 0;
}

/*
 * The tensors of the sorted records, each checked: one global shape on every rank,
 * listed once per rank; mask = the groups of the records with the role (writers),
 * which must all give the same groups when `same_groups`.
 */
struct ckpt_tensor *ckpt_union_build(const struct ckpt_rec *recs, int total, int rank,
				     bool same_groups, int *count, char *msg, size_t len)
{
	struct ckpt_tensor *ts = xcalloc((size_t)total + 1, sizeof(*ts));
	int nt = 0, rc = 0;

	for (int i = 0; rc == 0 && i < total;) {
		struct ckpt_tensor *t = &ts[nt++];
		const struct ckpt_rec *a = &recs[i], *w = NULL;
		char sa[64], sb[64];

		t->first = a;
		t->local = -1;
		for (; rc == 0 && i < total && !strcmp(recs[i].name, a->name); i++, t->nrec++) {
			const struct ckpt_rec *b = &recs[i];

			if (b->ndim != a->ndim || b->gshape[0] != a->gshape[0] ||
			    b->gshape[1] != a->gshape[1]) {
				ckpt_union_shape_str(sa, sizeof(sa), a->ndim, a->gshape);
				ckpt_union_shape_str(sb, sizeof(sb), b->ndim, b->gshape);
				rc = log_fail(msg, len, "tensor %s: global shape %s on rank %d but %s "
					  "on rank %d", a->name, sa, a->rank, sb, b->rank);
			} else if (b != a && b[-1].rank == b->rank) {
				rc = log_fail(msg, len, "tensor %s: listed twice by rank %d", a->name,
					  b->rank);
			} else if (b->role && w && same_groups && b->mask != w->mask) {
				rc = log_fail(msg, len, "tensor %s: ranks %d and %d give different "
					  "groups (a model/exp_avg/exp_avg_sq buffer NULL on one)",
					  a->name, w->rank, b->rank);
			}
			w = b->role && !w ? b : w;
			/* saving: the writers' groups; loading: any rank's */
			t->mask |= b->role || !same_groups ? b->mask : 0;
			t->local = b->rank == rank ? b->index : t->local;
		}
		t->first_role = w;
	}
	if (rc) {
		free(ts);
		return NULL;
	}
	*count = nt;
	return ts;
}
