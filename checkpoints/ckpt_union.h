/*
 * ckpt_union: the datasets of one collective checkpoint call, as every rank sees them.
 *
 * Every rank's slices are all-gathered as records, one per (group, tensor) slice:
 * the dataset's path, its global shape, the hyperslab held and a role flag (an
 * owner's non-replica slice), and grouped by dataset. A dataset's records must agree
 * on its global shape and name it once per rank, and no dataset may lie inside
 * another ("a" and "a/b", which HDF5 cannot hold both). Every rank builds the same
 * list in the same (path) order, which is the order of the collective HDF5 calls in
 * ckpt.c. Ranks may list different tensors (pipeline stages, a replicated tensor
 * listed on one rank only). Whether the records with the role must tile a dataset
 * exactly once is the caller's call (ckpt_union_check_tiling).
 *
 * Does no I/O and knows nothing of HDF5; the gather is the only collective call.
 * Assumes the groups were checked (ckpt_args.h): valid names, none inside another,
 * the same list on every rank.
 */
#ifndef RN_CKPT_UNION_H
#define RN_CKPT_UNION_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

/* "/" group "/" tensor and its NUL: every checked pair of names fits. */
#define CKPT_DATASET_MAX (1 + CKPT_GROUP_NAME_MAX + LAYOUT_NAME_MAX)

/* One rank's slice of one dataset. */
struct ckpt_rec {
	char path[CKPT_DATASET_MAX]; /* "/optimizer/exp_avg/layers/0/retention/wq" */
	int32_t rank;        /* the rank that listed it */
	int32_t group;       /* index in the call's groups */
	int32_t index;       /* index in that group's slices on `rank` */
	int32_t tensor;      /* offset of the tensor's name in path */
	int32_t role;        /* an owner's non-replica slice */
	int32_t ndim;
	int64_t gshape[2];   /* (rows, cols); cols = 1 for 1-D */
	uint64_t start[2], count[2];
};

/* A dataset: the records [first, first + nrec), sorted by rank. */
struct ckpt_tensor {
	const struct ckpt_rec *first;
	const struct ckpt_rec *first_role; /* lowest-ranked record with the role, or NULL */
	int nrec;
	int group; /* index in the call's groups */
	int local; /* this rank's slice index in that group, or -1 */
};

/* The tensor's own name ("layers/0/retention/wq") of a record. */
static inline const char *ckpt_rec_tensor(const struct ckpt_rec *r)
{
	return r->path + r->tensor;
}

/* collective: every rank's records, sorted by (path, rank); *total of them. */
struct ckpt_rec *ckpt_union_gather(MPI_Comm comm, const struct ckpt_group *groups, int ngroups,
				   int *total);
/* The datasets of sorted records, checked (shapes, duplicates, one inside another).
 * NULL with msg set on a failure. */
struct ckpt_tensor *ckpt_union_build(const struct ckpt_rec *recs, int total, int rank,
				     int *count, char *msg, size_t len);
/* The dataset at path among ts (sorted), or NULL. */
const struct ckpt_tensor *ckpt_union_find(const struct ckpt_tensor *ts, int nt,
					  const char *path);
/* Do the records with the role tile t exactly once? 0, or -1 with msg naming the
 * dataset (and the ranks of an overlap). */
int ckpt_union_check_tiling(const struct ckpt_tensor *t, char *msg, size_t len);
/* "(rows, cols)" or "(rows)". */
void ckpt_union_shape_str(char *buf, size_t len, int ndim, const int64_t shape[2]);

#endif
