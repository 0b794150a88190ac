/*
 * train_ckpt: what a retnet checkpoint holds and how the trainer and the evaluator
 * put it there and take it back, on top of checkpoints/ckpt.h (the sharded HDF5
 * files). Tensors: every parameter with its AdamW moments, each rank its own slices
 * (the first data-parallel replica writes; tensors replicated across a
 * tensor-parallel group are written by its rank 0). Attributes: the model
 * configuration and tokenizer (so the evaluator needs nothing else), the layout it
 * was written with, the iteration, the AdamW step, the data loader position and the
 * seed (the only randomness of training), so that a resumed run repeats the
 * uninterrupted one to the bit. Loads onto any layout: each rank reads the slices
 * its own layout gives it. Does not decide when to save.
 */
#ifndef RN_TRAIN_CKPT_H
#define RN_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "parallel/grid.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

/* What the file says about the model and how it was written. */
struct ckpt_info {
	int64_t iteration;
	struct model_config cfg; /* micro_batch is not recorded (0) */
	struct tokenizer tok;
	int64_t tp, pp, dp;      /* the layout that wrote it */
	int64_t adam_step;
	struct loader_state loader;
	char path[1024];         /* the file */
};

/* The iteration to load: `iteration` if >= 0, else the one DIR/latest names.
 * collective over comm (rank 0 reads, then broadcasts). 0, or -1 with err. */
int train_ckpt_resolve(const char *dir, int64_t iteration, int64_t *out, MPI_Comm comm,
		       char *err, size_t errlen);

/* The attributes of iteration `iteration` in dir, checked with
 * train_ckpt_check_info. collective over comm. 0, or -1 with err. */
int train_ckpt_read_info(const char *dir, int64_t iteration, struct ckpt_info *info,
			 MPI_Comm comm, char *err, size_t errlen);

/*
 * Pure. Are the values a checkpoint's attributes hold ones a model can be built
 * from? The configuration within the ranges retnet-train accepts for its flags
 * (trainer/config.c) and with the same cross-field rules, the tokenizer's
 * vocabulary equal to the model's, the layout and the AdamW step in range. A file
 * is data: whatever it says must end in this one-line error, never in an ENSURE
 * of model_init or a division by zero. 0, or -1 with "<path>: <attribute>: <rule>".
 */
int train_ckpt_check_info(const struct ckpt_info *info, char *err, size_t errlen);

/*
 * Pure. The model the evaluator or the generator builds from a checked checkpoint:
 * its configuration with seq_len and chunk replaced when > 0 (a chunk that no
 * longer divides a shorter seq_len shrinks to it when not given), micro_batch set,
 * checked against a TP x PP layout. 0, or -1 with err naming the flag or the rule.
 */
int train_ckpt_model_config(const struct ckpt_info *info, int64_t seq_len, int64_t chunk,
			    int64_t micro_batch, int64_t tp, int64_t pp,
			    struct model_config *mc, char *err, size_t errlen);

/* collective over the whole grid. */
int train_ckpt_save(const char *dir, int64_t iteration, int compression_level,
		    int keep_last, const struct model *m, const struct adamw *opt,
		    const struct loader *train, const struct grid *g, char *err, size_t errlen);

/*
 * collective over the whole grid. Reads m's parameters (and, with opt, the AdamW
 * moments) of iteration `iteration`; the caller has checked the configuration with
 * train_ckpt_read_info. 0, or -1 with err naming the tensor or the rule.
 */
int train_ckpt_load(const char *dir, int64_t iteration, struct model *m, struct adamw *opt,
		    const struct grid *g, char *err, size_t errlen);

/*
 * For the evaluator and the generator: a model of configuration cfg (usually the
 * checkpoint's, with seq_len, chunk and micro_batch set by the caller) on grid g's
 * layout, with one micro-batch slot, its parameters loaded from iteration
 * `iteration`. collective over the whole grid. 0, or -1 with err (model freed).
 */
int train_ckpt_build_model(struct model *m, const char *dir, int64_t iteration,
			   const struct model_config *cfg, const struct grid *g, char *err,
			   size_t errlen);

#endif
