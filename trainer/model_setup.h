/*
 * model_setup: the memory side of model_create, apart from the math in model.c:
 * which layers a pipeline stage holds, the parameter registry with each rank's
 * tensor-parallel slices (global names and shapes, layout-independent values), and
 * the activation and workspace buffers, allocated once. Internal to trainer/.
 */
#ifndef RN_MODEL_SETUP_H
#define RN_MODEL_SETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model;

/* Layers [first, first + count) of stage `stage` of `stages`: as even as possible,
 * the first L % P stages one layer more. */
void model_setup_stage_layers(int64_t layers, int stages, int stage, int64_t *first,
			      int64_t *count);
/* Layers [first, first + count) of model chunk `chunk` of stage `stage`: with
 * per_chunk = N layers per virtual stage, virtual stage chunk * stages + stage, its N
 * layers; per_chunk 0: chunk 0, the stage's layers. */
void model_setup_chunk_layers(int64_t layers, int stages, int stage, int64_t per_chunk,
			      int chunk, int64_t *first, int64_t *count);

/* Lists m's chunks (m->nchunks of per_chunk layers each, or one: the stage's layers)
 * with slots[c] micro-batches for chunk c, and the stage's layer count. */
void model_setup_chunks(struct model *m, int64_t per_chunk, const int *slots);

/* Registers and allocates m->params, binds m->w and m->dw, lists the grad ranges. */
void model_setup_params(struct model *m);
/* Allocates the micro-batch slots and the backward workspace; returns the bytes. */
size_t model_setup_activations(struct model *m);
/* The bytes of the float32 outputs that bf16 writes as their copy alone. */
size_t model_setup_copied_outputs(const struct model *m);
void model_setup_free(struct model *m);

#endif
