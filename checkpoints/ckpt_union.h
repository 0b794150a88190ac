/*
 * ckpt_union: the tensors of one collective checkpoint call, as every rank sees them.
 *
 * Every rank's slices are all-gathered as records (tensor name, global shape, the
 * hyperslab held, which of the three groups have a buffer, and a role flag: writer
 * when saving, primary when loading) and grouped by tensor name. A tensor's records
 * must agree on its global shape and name it once per rank; the records with the
 * role set must tile the tensor exactly once (no overlap, no hole). Every rank builds
 * the same list in the same (name) order, which is the order of the collective HDF5
 * calls in ckpt.c. Ranks may list different tensors (pipeline stages, a replicated
 * tensor listed on one rank only).
 *
 * Does no I/O and knows nothing of HDF5; the gather is the only collective call.
 */
#ifndef RN_CKPT_UNION_H
#define RN_CKPT_UNION_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

/* Groups, bit g of a mask: model, exp_avg, exp_avg_sq. */
#define CKPT_NGROUPS 3

/* One rank's slice of one tensor. */
struct ckpt_rec {
	char name[LAYOUT_NAME_MAX];
	int32_t rank, index; /* owner and its entry index */
	int32_t mask;        /* groups with a buffer on the owner */
	int32_t role;        /* writer (save) or primary (load) */
	int32_t ndim, pad;
	int64_t gshape[2];   /* (rows, cols); cols = 1 for 1-D */
	uint64_t start[2], count[2];
};

/* A tensor: the records [first, first + nrec), sorted by rank. */
struct ckpt_tensor {
	const struct ckpt_rec *first;
	const struct ckpt_rec *first_role; /* lowest-ranked record with the role, or NULL */
	int nrec;
	int mask;  /* saving: the writers' groups; loading: every group any rank asks for */
	int local; /* this rank's entry index, or -1 */
};

/* The buffer of group g of an entry (NULL if not given). */
float *ckpt_entry_group(const struct ckpt_entry *e, int g);

/* collective: every rank's records, sorted by (name, rank); *total of them. */
struct ckpt_rec *ckpt_union_gather(MPI_Comm comm, const struct ckpt_entry *entries, int n,
				   bool role, int *total);
/* The tensors of sorted records, checked (shapes, duplicates; with same_groups, all
 * role records give the same groups). NULL with msg set on a failure. */
struct ckpt_tensor *ckpt_union_build(const struct ckpt_rec *recs, int total, int rank,
				     bool same_groups, int *count, char *msg, size_t len);
/* Do the records with the role tile t exactly once? who names them in msg. */
int ckpt_union_check_tiling(const struct ckpt_tensor *t, const char *who, char *msg,
			    size_t len);
/* "(rows, cols)" or "(rows)". */
void ckpt_union_shape_str(char *buf, size_t len, int ndim, const int64_t shape[2]);

#endif
