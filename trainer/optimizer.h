/*
 * optimizer: AdamW over the parameter elements this rank updates, with decoupled
 * weight decay on the tensors whose desc says so (matrices), and the pieces of
 * global-norm clipping.
 *
 * The elements are pieces of the registry's tensors, each a range of whole rows of a
 * tensor's local block: every tensor whole, or this data-parallel rank's shard of a
 * distributed optimizer (ZeRO-1: the moments of an element live on one rank only).
 * adamw_shard_counts cuts a range of the flat block into near-even shards whose
 * boundaries fall on tensor rows, so that every piece is a rectangle of its tensor
 * and a checkpoint can hold it as such. The moments are kept for the pieces only.
 * Knows nothing of MPI: the caller reduces the gradient and gathers the parameters.
 */
#ifndef RN_OPTIMIZER_H
#define RN_OPTIMIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trainer/params.h"

struct adamw_config {
	double beta1, beta2, eps, weight_decay;
};

/* A range of whole rows of one tensor, and where its moments are. */
struct adamw_piece {
	int tensor;               /* its index in the registry */
	int64_t first_row, rows;  /* of the tensor's local block (shape[0] rows) */
	size_t offset, count;     /* its elements in the flat blocks */
	size_t state;             /* its first element in m and v */
};

struct adamw {
	struct adamw_config cfg;
	int64_t step;               /* updates done so far */
	struct adamw_piece *pieces; /* [npieces] in flat-block order */
	int npieces;
	bool sharded;               /* the pieces are this rank's share, not every tensor */
	size_t state_floats;        /* elements of m and v */
	float *m, *v;               /* (state_floats) first and second moments */
};

/* An element range [offset, offset + count) of the flat blocks. */
struct param_range {
	size_t offset, count;
};

/*
 * AdamW over the elements of p in the ranges own[0 .. nown) (NULL: all of p), which
 * must start and end on row boundaries of the tensors they cover (or in the padding
 * between tensors). Moments start at zero.
 */
void adamw_init(struct adamw *opt, const struct adamw_config *cfg, const struct param_set *p,
		const struct param_range *own, int nown);
void adamw_free(struct adamw *opt);

/* One update of the pieces' parameters from p->grad with learning rate lr. */
void adamw_step(struct adamw *opt, struct param_set *p, double lr);

/*
 * The squared gradient of the pieces, split as sums[0] over tensors split across
 * the tensor-parallel group (desc sharded) and sums[1] over replicated ones, in
 * double; the caller reduces them over the ranks that hold distinct pieces.
 */
void adamw_grad_sumsq(const struct adamw *opt, const struct param_set *p, double sums[2]);

/*
 * Cuts the range r of p's flat blocks into `parts` shards, as even as row boundaries
 * allow (a boundary inside a tensor moves to the nearest of its row boundaries, one
 * in the padding between tensors to the end of the tensor before it): counts[parts]
 * floats each, summing to r.count; shards may be empty.
 */
void adamw_shard_counts(const struct param_set *p, struct param_range r, int parts,
			size_t *counts);

/* Sum of squares of the gradient block, in double. */
double grad_sumsq_local(const struct param_set *p);
/* grad *= s */
void grad_scale(struct param_set *p, float s);
/* true iff every gradient value is finite. */
int grad_all_finite(const struct param_set *p);

#endif
