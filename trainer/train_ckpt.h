/*
 * train_ckpt: what a retnet checkpoint holds and how the programs put it there and
 * take it back, on top of checkpoints/ckpt.h (the sharded HDF5 files). State
 * groups: the model's parameters, declared from its registry, and the AdamW
 * moments, declared by the optimizer; each rank its own slices (the first
 * data-parallel replica writes; tensors replicated across a tensor-parallel group
 * are written by its rank 0). Attributes: the model's parameters of the run
 * specification (trainer/spec.h: every row with a checkpoint attribute), the
 * tokenizer (its id and vocabulary, and a BPE one's merge table as the uint16
 * dataset /tokenizer/merges, written by rank 0 and read by every rank, its hash
 * checked against the id: so the evaluator needs nothing else; a GPT-2 one's table
 * the same way as /tokenizer/table; the end-of-document id), the layout it was
 * written with,
 * the iteration, the AdamW step, the data loader position and the seed (the only
 * randomness of training), so that a resumed run repeats the uninterrupted one to
 * the bit. Loads onto any layout: each rank reads the slices its own layout gives
 * it. Does not decide when to save.
 */
#ifndef RN_TRAIN_CKPT_H
#define RN_TRAIN_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "checkpoints/ckpt_async.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "parallel/grid.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/spec.h"

/* What the file says about the model and how it was written. */
struct ckpt_info {
	int64_t iteration;
	struct run_spec model;   /* the saved rows, origin SPEC_CHECKPOINT; nothing else */
	struct tokenizer tok;    /* with a BPE one's merges (pointing into `merges`), unless
				    the file predates checkpoints that carry them */
	int64_t n_merges;        /* attribute tokenizer/n_merges: rows of /tokenizer/merges
				    (0: bytes); -1: absent, a checkpoint written before
				    checkpoints carried the table */
	uint16_t *merges;        /* owned: (n_merges, 2), or NULL (train_ckpt_info_free) */
	int64_t eod_id;          /* attribute tokenizer/eod_id; -1: none, or absent (a
				    checkpoint written before the attribute) */
	int64_t table_bytes;     /* attribute tokenizer/table_bytes: a GPT-2 tokenizer's
				    table (data/gpt2bpe.h), the dataset /tokenizer/table of
				    (table_bytes / 4, 2) uint16 holding its bytes; 0: none */
	uint16_t *table;         /* owned: that table, or NULL */
	int64_t tp, pp, dp, cp;  /* the layout that wrote it */
	int64_t adam_step;
	struct loader_state loader;
	char path[1024];         /* the file */
};

/* The iteration to load: `iteration` if >= 0, else the one DIR/latest names.
 * collective over comm (rank 0 reads, then broadcasts). 0, or -1 with err. */
int train_ckpt_resolve(const char *dir, int64_t iteration, int64_t *out, MPI_Comm comm,
		       char *err, size_t errlen);

/*
 * The attributes of iteration `iteration` in dir, checked with
 * train_ckpt_check_info, and a BPE tokenizer's merge table: every rank reads it, and
 * a table whose hash is not the one in the tokenizer's id, that uses an id before it
 * is defined, or whose size is not the vocabulary's is refused. A checkpoint written
 * before checkpoints carried the table (no tokenizer/n_merges) is read without one:
 * info->tok then has no merges (the caller decides what it can do without them).
 * info must be zeroed or freed with train_ckpt_info_free. collective over comm. 0,
 * or -1 with err ("<file>: <what>: <rule>").
 */
int train_ckpt_read_info(const char *dir, int64_t iteration, struct ckpt_info *info,
			 MPI_Comm comm, char *err, size_t errlen);
/* Releases the merge table of a read_info; info->tok then has no merges. */
void train_ckpt_info_free(struct ckpt_info *info);
/* Does the checkpoint lack the merge table its BPE tokenizer needs (written before
 * checkpoints carried it)? */
bool train_ckpt_lacks_merges(const struct ckpt_info *info);

/*
 * Pure. Are the values a checkpoint's attributes hold ones a model can be built
 * from? The model's within the ranges and rules of the run specification
 * (spec_validate), the tokenizer's vocabulary equal to the model's, the layout and
 * the AdamW step in range. A file is data: whatever it says must end in this
 * one-line error, never in an ENSURE of model_create or a division by zero. 0, or
 * -1 with "<path>: <attribute>: <rule>".
 */
int train_ckpt_check_info(const struct ckpt_info *info, char *err, size_t errlen);

/* The checkpoint of iteration `iteration` in dir: the model (its spec's saved rows),
 * its parameters, opt's moments, train's position and tokenizer (with a BPE one's
 * merge table, from the shards). With async, a copy is taken and
 * written in the background (ckpt_async_start: a failure of the save in flight is
 * returned here, or by ckpt_async_wait); NULL writes it before returning.
 * collective over the whole grid. */
int train_ckpt_save(const char *dir, int64_t iteration, int compression_level,
		    int keep_last, const struct run_spec *spec, struct model *m,
		    const struct adamw *opt, const struct loader *train, const struct grid *g,
		    struct ckpt_async *async, char *err, size_t errlen);

/*
 * collective over the whole grid. Reads m's parameters (and, with opt, the AdamW
 * moments) of iteration `iteration`; the caller has checked the model with
 * train_ckpt_read_info. 0, or -1 with err naming the tensor or the rule.
 */
int train_ckpt_load(const char *dir, int64_t iteration, struct model *m, struct adamw *opt,
		    const struct grid *g, char *err, size_t errlen);

#endif
