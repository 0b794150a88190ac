/*
 * ckpt: checkpoints as one shared HDF5 file per iteration, written and read
 * collectively over MPI-IO, published atomically. docs/checkpoint-format.md is the
 * reader's description of the files; this is the writer's contract.
 *
 *   DIR/iter_0000100.h5   a complete checkpoint (7-digit iteration, as Megatron)
 *   DIR/latest            "100\n": the newest complete checkpoint
 *   DIR/iter_N.h5.tmp, DIR/latest.tmp: a save in progress or killed; ignored on load,
 *                         removed by the next save
 *
 * State comes in named groups, each declared by the module that owns it: the model
 * its parameters ("model"), the optimizer its moments ("optimizer/exp_avg",
 * "optimizer/exp_avg_sq"). Tensor "layers/3/retention/wq" of GLOBAL shape (rows,
 * cols) in group "model" is the dataset /model/layers/3/retention/wq: float32 LE (or
 * uint16 LE in a group declared so: small tables of ids, such as a tokenizer's),
 * chunked along its owners' slabs, shuffle + deflate (optional) and Fletcher32. Each
 * rank passes, per group, the slices it holds (checkpoints/layout.h: rectangles of
 * the global tensor) and whether it owns them, so a checkpoint written with one
 * layout loads with any other, and each group may be split its own way: the model
 * by tensor-parallel columns, a ZeRO-1 optimizer's moments further by rows across
 * the data-parallel ranks, each rank the owner of its own shard. Ranks may list
 * different tensors (pipeline stages, a replicated tensor listed on one rank only):
 * the file holds their union.
 *
 * Save protocol (collective): write DIR/iter_N.h5.tmp, flush and close; rank 0 fsyncs
 * it, renames it to DIR/iter_N.h5, fsyncs DIR; rank 0 writes DIR/latest.tmp, fsyncs,
 * renames it to DIR/latest, fsyncs DIR; then older complete checkpoints beyond
 * keep_last are removed. A crash at any point leaves `latest` naming a complete file.
 * Internals: ckpt_args.h (the arguments), ckpt_union.h (who holds what), ckpt_dir.h
 * (the files), h5io.h (HDF5).
 *
 * Errors in the caller's arguments, the layout or the file are returned as -1 on
 * EVERY rank with the same one-line message "<what>: <rule>" in err (print it as
 * "retnet: error: %s"); every rank always runs the whole collective sequence. That
 * includes no room for the file: before creating it, rank 0 checks that an upper
 * bound of its size can be allocated (ckpt_dir_reserve). MPI failures and HDF5
 * failures that leave the ranks out of step end the job (fatal_at), and so does a
 * write, flush or close that fails once the file is open (the disk filled up after
 * the check, an I/O error): MPI-IO reports such a failure on some ranks only and
 * HDF5's collective calls then hang, so the failing rank removes the .tmp file,
 * prints "retnet: error: DIR/iter_N.h5.tmp: <what failed>, N MiB free on its file
 * system; the save is abandoned, latest is unchanged" and calls MPI_Abort.
 *
 * Does not decide when to save, which ranks own which state (the caller declares
 * that), or what the attributes mean; does not restore RNG or data-loader state
 * (pass them as attributes); never falls back to an older checkpoint by itself.
 *
 * Test hook: RETNET_CKPT_TEST_PAUSE=PHASE[:ITER] makes rank 0 of ckpt_save print one
 * line "retnet: ckpt test pause: after PHASE (iteration N)" to stderr and sleep 60 s
 * after PHASE (write: the first dataset of the .tmp file is written, the others
 * not yet; tmp: the .tmp file is closed; renamed: iter_N.h5 exists, latest not
 * yet moved; latest: latest moved, nothing pruned yet), for every save or only that
 * of iteration ITER, so that a crash test can kill the job inside each phase.
 * RETNET_CKPT_TEST_NO_RESERVE skips the room check, so that a test can make the
 * disk fill up in the middle of the writes.
 */
#ifndef RN_CKPT_H
#define RN_CKPT_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/layout.h"

#define CKPT_ERR_LEN 512         /* enough for every message ckpt writes */
#define CKPT_ATTR_KEY_MAX 64
#define CKPT_ATTR_STR_MAX 256
#define CKPT_FORMAT "retnet-ckpt"
#define CKPT_FORMAT_VERSION 1
#define CKPT_CHUNK_MAX_BYTES ((size_t)16 << 20)

#define CKPT_GROUP_NAME_MAX 64

/* The element type of a group's datasets. */
enum ckpt_dtype {
	CKPT_FLOAT32 = 0, /* float, H5T_IEEE_F32LE: every value finite */
	CKPT_UINT16,      /* uint16_t, H5T_STD_U16LE: ids (a tokenizer's merge table) */
};

/* One tensor slice of a group on this rank: dense (slice.shape[0], slice.shape[1])
 * values of the group's dtype. */
struct ckpt_slice {
	struct layout_slice slice;
	bool replica;  /* a copy of a slice another rank of the same call owns (a tensor
			  replicated across a tensor-parallel group): read on load, neither
			  written nor counted in the tiling checks */
	union {        /* (shape[0], shape[1]), never NULL: */
		float *data;   /* a CKPT_FLOAT32 group's */
		uint16_t *u16; /* a CKPT_UINT16 group's */
	};
};

/* A named state group: tensor t of group "optimizer/exp_avg" is dataset
 * /optimizer/exp_avg/t. Declared by the state's owner. A name is '/'-separated
 * segments of [A-Za-z0-9_.-], shorter than CKPT_GROUP_NAME_MAX; no group of a call
 * may be another or lie inside it ("optimizer" with "optimizer/exp_avg"), so no two
 * groups' datasets share a path. */
struct ckpt_group {
	char name[CKPT_GROUP_NAME_MAX];
	enum ckpt_dtype dtype;           /* of every dataset of the group, the same on
					    every rank (default CKPT_FLOAT32) */
	const struct ckpt_slice *slices; /* this rank's slices (load writes into .data) */
	int n;                           /* how many (0: none of this group here) */
	bool owner; /* save: this rank writes its non-replica slices of the group (false:
		       a data-parallel copy of another rank's, joins with empty selections);
		       load: this rank's slices are among those that must cover the group */
};

enum ckpt_attr_type { CKPT_I64, CKPT_F64, CKPT_STR };

/* A scalar attribute. key "config/hidden_size" is attribute hidden_size of group
 * /config; a key without '/' is on the root group. Keys are [A-Za-z0-9_.-] segments. */
struct ckpt_attr {
	char key[CKPT_ATTR_KEY_MAX];
	enum ckpt_attr_type type;
	int64_t i;                  /* CKPT_I64 */
	double f;                   /* CKPT_F64 */
	char s[CKPT_ATTR_STR_MAX];  /* CKPT_STR, ASCII */
	/* load: an attribute older files lack; missing from the file, its value is left
	 * as given and `missing` set (otherwise a missing attribute is an error) */
	bool optional, missing;
};

/* opt = NULL means {0, 0}: no compression (see docs/checkpoint-format.md for what
 * deflate costs and saves), keep every checkpoint. */
struct ckpt_options {
	int compression_level; /* 0: no shuffle/deflate; 1..9: deflate level */
	int keep_last;         /* keep this many complete checkpoints (>= 1); 0 keeps all */
};

/* Statistics of ckpt_verify. */
struct ckpt_verify_info {
	int64_t iteration;
	int datasets;
	uint64_t values;        /* values read (float32 and uint16) */
	uint64_t stored_bytes;  /* in the file, after filters */
};

/*
 * collective over comm. Saves every group's tensors and the attributes (identical on
 * every rank) as iteration `iteration` in dir (created if missing). Every rank passes
 * the same groups (names, in the same order), each with its own slices of them. In
 * each group the owners' non-replica slices must tile every tensor exactly once. A
 * rank that does not own a group joins each of its collective calls with an empty
 * selection. Refused before anything is written: ranks passing different groups
 * (names, order or dtypes), a malformed or repeated group name or one group inside
 * another, a tensor listed twice by one rank or at a path inside another's, owners'
 * slices that do not tile a tensor (an overlap or a hole: the dataset and the ranks
 * are named), a non-finite float in an owner's slice, ranks disagreeing on a dataset's
 * global shape or on the
 * other arguments, a reserved or malformed key. Root
 * attributes written by ckpt itself: format, format_version, iteration, world_size,
 * compression_level. Returns 0 on every rank, or -1 on every rank with err set.
 */
int ckpt_save(const char *dir, int64_t iteration, const struct ckpt_group *groups, int ngroups,
	      const struct ckpt_attr *attrs, int nattrs, const struct ckpt_options *opt,
	      MPI_Comm comm, char *err, size_t errlen);

/*
 * Not collective (call it on one rank and broadcast, or on every rank of a shared
 * file system). The iteration DIR/latest names; an error if DIR or the pointer is
 * missing or malformed or the file it names does not exist.
 */
int ckpt_latest(const char *dir, int64_t *iteration, char *err, size_t errlen);

/*
 * collective over comm. Reads this rank's slices of iteration `iteration` into their
 * .data (any layout) and the values of attrs (keys and types given, the same list on
 * every rank; the root attributes above can be read too). groups: the same names in
 * the same order on every rank, as for ckpt_save, any of the file's groups. In a
 * group that some rank owns (the first data-parallel replica of a replicated state,
 * every rank of a sharded one), the owners' non-replica slices must tile every tensor
 * exactly once, and every dataset under /<group>/ in the file must be loaded by an
 * owner (a checkpoint with a tensor the model does not have is refused); a group
 * nobody owns is read without these checks. Errors, with nothing trusted: a missing
 * dataset or attribute, a type or global-shape mismatch (naming the tensor and both
 * shapes), a dataset of another element type than its group's, a read error
 * (Fletcher32 mismatch, truncated file) naming the tensor.
 * Returns 0 on every rank, or -1 on every rank with err set.
 */
int ckpt_load(const char *dir, int64_t iteration, const struct ckpt_group *groups, int ngroups,
	      struct ckpt_attr *attrs, int nattrs, MPI_Comm comm, char *err, size_t errlen);

/*
 * Not collective: opens path serially and reads every dataset in full (checksums
 * verified), checking that it is float32 and finite, or uint16, and that the root
 * attributes name this format. 0, or -1 with err set. info may be NULL.
 */
int ckpt_verify(const char *path, struct ckpt_verify_info *info, char *err, size_t errlen);

/* DIR/iter_%07d.h5 into buf; -1 if it does not fit. */
int ckpt_path(char *buf, size_t len, const char *dir, int64_t iteration);

#endif
