/*
 * params: the registry of a rank's parameter tensors in one flat float block.
 *
 * Each tensor has a self-explaining name ("layers/3/retention/wq"), its GLOBAL shape,
 * and the slice of it this rank holds (a range of rows or of columns, or all of it).
 * Parameters and gradients live in two flat blocks with the same offsets, so the
 * optimizer, the gradient all-reduce and the checkpoint see one array each.
 * Initialisation is a pure function of (seed, name, global element index) through
 * the counter-based generator of common/rng.h: a rank that holds a slice makes
 * exactly the values the single-rank run has there, whatever the layout.
 * Knows nothing of the network's wiring, of MPI or of files.
 */
#ifndef RN_PARAMS_H
#define RN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/layout.h"

enum param_init {
	PARAM_INIT_ZERO,
	PARAM_INIT_ONE,
	PARAM_INIT_NORMAL,  /* N(0, scale) */
	PARAM_INIT_XAVIER,  /* U(-b, b), b = scale * sqrt(6 / (fan_in + fan_out)) */
};

#define PARAM_NAME_MAX LAYOUT_NAME_MAX

struct param_desc {
	struct layout_slice slice; /* name, global shape and the part this rank holds */
	bool sharded;              /* this rank holds a range of its rows or columns;
				      false: all of it, as its whole TP group does */
	enum param_init init;
	double init_scale;
	bool weight_decay;         /* AdamW decays matrices only */
	size_t offset, numel;      /* into the flat blocks */
};

struct param_set {
	struct param_desc *desc;
	int count, cap;
	size_t total;    /* floats in each flat block */
	float *data;     /* (total) */
	float *grad;     /* (total) */
};

void param_set_init(struct param_set *set);
/* Register a tensor (before param_set_alloc). Returns its index. */
int param_set_add(struct param_set *set, const char *name, int ndim, int64_t rows,
		  int64_t cols, int split_dim, int64_t split_start, int64_t split_len,
		  enum param_init init, double init_scale, bool weight_decay);
/* Allocate data and grad (zeroed) once all tensors are registered. */
void param_set_alloc(struct param_set *set);
void param_set_free(struct param_set *set);

/* Fill every tensor from the seed as its desc says. */
void param_set_init_values(struct param_set *set, uint64_t seed);
void param_set_zero_grad(struct param_set *set);

/* Index of a named tensor, or -1. */
/* A 64-bit hash of the exact bits of every value (same values, same hash). */
uint64_t param_set_hash(const struct param_set *set);
int param_set_find(const struct param_set *set, const char *name);
float *param_data(const struct param_set *set, int index);
float *param_grad(const struct param_set *set, int index);

#endif
