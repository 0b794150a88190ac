/*
 * optimizer: AdamW over the flat local parameter block, with decoupled weight decay
 * on the tensors whose desc says so (matrices), and the pieces of global-norm
 * clipping: the local sum of squares, which the caller reduces over the ranks that
 * hold distinct gradients, and the scale it then applies. Knows nothing of MPI.
 */
#ifndef RN_OPTIMIZER_H
#define RN_OPTIMIZER_H

#include <stdint.h>

#include "trainer/params.h"

struct adamw_config {
	double beta1, beta2, eps, weight_decay;
};

struct adamw {
	struct adamw_config cfg;
	int64_t step;  /* updates done so far */
	float *m, *v;  /* (params->total) first and second moments */
};

void adamw_init(struct adamw *opt, const struct adamw_config *cfg, const struct param_set *p);
void adamw_free(struct adamw *opt);

/* One update of every parameter from p->grad with learning rate lr. */
void adamw_step(struct adamw *opt, struct param_set *p, double lr);

/* Sum of squares of the gradient block, in double. */
double grad_sumsq_local(const struct param_set *p);
/* grad *= s */
void grad_scale(struct param_set *p, float s);
/* true iff every gradient value is finite. */
int grad_all_finite(const struct param_set *p);

#endif
