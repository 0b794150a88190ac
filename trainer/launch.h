/*
 * launch: how every retnet program starts and ends, so that none repeats it:
 *
 *   launch_begin            MPI start-up (a fatal error on any rank ends the job),
 *                           the program's flags from the run specification (and
 *                           --config), --help, spec_validate agreed by every rank
 *                           before any work, the process grid
 *   launch_read_checkpoint  the checkpoint --load names: its model adopted into
 *                           the specification and validated again (retnet-eval,
 *                           retnet-generate)
 *   launch_model            the model on this rank's part of the grid: precision,
 *                           form of retention, and the checkpoint's parameters
 *                           when one was read
 *   launch_end              the grid and MPI, shut down
 *
 * A user error anywhere in it is one line from the lowest failing rank and exit
 * status 2 on every rank. Does not read data or train: the programs do.
 */
#ifndef RN_LAUNCH_H
#define RN_LAUNCH_H

#include <stdbool.h>

#include "parallel/grid.h"
#include "trainer/spec.h"
#include "trainer/train_ckpt.h"

struct model;

struct launch {
	struct run_spec spec;
	struct grid grid;
	bool have_checkpoint;
	struct ckpt_info checkpoint; /* launch_read_checkpoint's */
};

/* collective over MPI_COMM_WORLD; exits 0 after --help, 2 on a user error. */
void launch_begin(struct launch *l, enum spec_program p, int *argc, char ***argv);
/* collective over the grid; exits 2 on a user error. */
void launch_read_checkpoint(struct launch *l);
/* The model with `slots` micro-batches in flight. collective over the grid. */
struct model *launch_model(struct launch *l, int slots);
/* The same with slots[c] on model chunk c (c < model_chunk_count). */
struct model *launch_model_chunked(struct launch *l, const int *slots);
void launch_end(struct launch *l);

#endif
