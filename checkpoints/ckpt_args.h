/*
 * ckpt_args: the checks every ckpt_save and ckpt_load starts with, on what the
 * caller passes: the directory and iteration, the state groups (names, nesting,
 * slices), the attributes and options; then that every rank passes the same; and,
 * when saving, that the values an owner writes are finite.
 *
 * Messages are one line "<what>: <rule>" of at most CKPT_ERR_LEN bytes, written into
 * msg. Does not check how the ranks' slices fit together (ckpt_union.h) or anything
 * in a file.
 */
#ifndef RN_CKPT_ARGS_H
#define RN_CKPT_ARGS_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

#define CKPT_DIR_MAX 900 /* leaves room for "/iter_NNNNNNN.h5.tmp" in a path */

/* Is s '/'-separated segments of [A-Za-z0-9_.-], none empty, "." or "..", and NUL-
 * terminated within max bytes? */
bool ckpt_args_valid_name(const char *s, size_t max);

/*
 * This rank's arguments: dir (not empty, at most CKPT_DIR_MAX bytes), iteration
 * (>= 0), the groups (valid names, none repeated or inside another, slices that are
 * rectangles of their global shape, with data), the attributes (valid keys, known
 * types, none twice; saving: no reserved key, strings NUL-terminated, floats
 * finite) and, when saving (opt != NULL), the options. 0, or -1 with msg.
 */
int ckpt_args_check(const char *dir, int64_t iteration, const struct ckpt_group *groups,
		    int ngroups, const struct ckpt_attr *attrs, int nattrs,
		    const struct ckpt_options *opt, int rank, char *msg);

/*
 * collective over comm. Do all ranks pass the same directory, iteration, options
 * (opt != NULL: saving) and attribute keys and types (saving: values too), and the
 * same group names and dtypes in the same order? Compared by hash. 0, or -1 on every rank with
 * the same msg.
 */
int ckpt_args_same_everywhere(MPI_Comm comm, const char *dir, int64_t iteration,
			      const struct ckpt_group *groups, int ngroups,
			      const struct ckpt_attr *attrs, int nattrs,
			      const struct ckpt_options *opt, char *msg);

/* Are the floats this rank writes (its owned float32 groups' non-replica slices)
 * finite? A NaN in a checkpoint is a silent loss. 0, or -1 with msg naming the dataset. */
int ckpt_args_check_finite(const struct ckpt_group *groups, int ngroups, int rank, char *msg);

#endif
