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
 * Every tensor "layers/3/retention/wq" of GLOBAL shape (rows, cols) is stored as
 * /model/<name>, /optimizer/exp_avg/<name> and /optimizer/exp_avg_sq/<name>: float32
 * LE, chunked along the writers' slabs, shuffle + deflate (optional) and Fletcher32.
 * Each rank passes the slices it holds (checkpoints/layout.h), so a checkpoint
 * written with one tensor-parallel layout loads with any other: a slice is a
 * hyperslab of the global dataset. Ranks may list different tensors (pipeline
 * stages, a replicated tensor listed on one rank only): the file holds their union.
 *
 * Save protocol (collective): write DIR/iter_N.h5.tmp, flush and close; rank 0 fsyncs
 * it, renames it to DIR/iter_N.h5, fsyncs DIR; rank 0 writes DIR/latest.tmp, fsyncs,
 * renames it to DIR/latest, fsyncs DIR; then older complete checkpoints beyond
 * keep_last are removed. A crash at any point leaves `latest` naming a complete file.
 * Internals: ckpt_union.h (who holds what), ckpt_dir.h (the files), h5io.h (HDF5).
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
 * Does not decide when to save, which ranks are writers (the caller passes that), or
 * what the attributes mean; does not restore RNG or data-loader state (pass them as
 * attributes); never falls back to an older checkpoint by itself.
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

/* One tensor slice of this rank. The buffers are dense (slice.shape[0],
 * slice.shape[1]) floats; a NULL one skips that group for this tensor. */
struct ckpt_entry {
	struct layout_slice slice;
	/* true: this slice is a copy of one another rank of the same call owns (a
	 * tensor replicated across a tensor-parallel group): it is read on load but
	 * neither written nor counted in the tiling checks */
	bool replica;
	float *model;      /* (shape[0], shape[1]) */
	float *exp_avg;    /* (shape[0], shape[1]) */
	float *exp_avg_sq; /* (shape[0], shape[1]) */
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
	uint64_t values;        /* float32 values read */
	uint64_t stored_bytes;  /* in the file, after filters */
};

/*
 * collective over comm. Saves the union of every rank's entries and the attributes
 * (identical on every rank) as iteration `iteration` in dir (created if missing).
 * writer = false: this rank's data is a replica of a writer's (a data-parallel
 * copy); it joins every collective call with an empty selection. Refused before
 * anything is written: writers' slices of a tensor that do not tile it exactly once
 * (an overlap or a hole), a non-finite value, ranks disagreeing on a tensor's global
 * shape or on the arguments, a reserved or malformed key. Root attributes written by
 * ckpt itself: format, format_version, iteration, world_size, compression_level.
 * Returns 0 on every rank, or -1 on every rank with err set.
 */
int ckpt_save(const char *dir, int64_t iteration, const struct ckpt_entry *entries, int n,
	      const struct ckpt_attr *attrs, int nattrs, const struct ckpt_options *opt,
	      MPI_Comm comm, bool writer, char *err, size_t errlen);

/*
 * Not collective (call it on one rank and broadcast, or on every rank of a shared
 * file system). The iteration DIR/latest names; an error if DIR or the pointer is
 * missing or malformed or the file it names does not exist.
 */
int ckpt_latest(const char *dir, int64_t *iteration, char *err, size_t errlen);

/*
 * collective over comm. Reads this rank's slices of iteration `iteration` into the
 * entries' buffers (any layout; NULL buffers are skipped) and the values of attrs
 * (keys and types given, the same list on every rank; the root attributes above
 * can be read too). Errors, with nothing trusted: a missing dataset or attribute, a
 * type or global-shape mismatch (naming the tensor and both shapes), a read error
 * (Fletcher32 mismatch, truncated file) naming the tensor. primary = true on the
 * ranks whose slices together must cover every tensor exactly once (e.g. the first
 * data-parallel replica): then every /model tensor of the file must be loaded by a
 * primary rank too. Returns 0 on every rank, or -1 on every rank with err set.
 */
int ckpt_load(const char *dir, int64_t iteration, struct ckpt_entry *entries, int n,
	      struct ckpt_attr *attrs, int nattrs, MPI_Comm comm, bool primary, char *err,
	      size_t errlen);

/*
 * Not collective: opens path serially and reads every dataset in full (checksums
 * verified), checking that it is float32 and finite and that the root attributes
 * name this format. 0, or -1 with err set. info may be NULL.
 */
int ckpt_verify(const char *path, struct ckpt_verify_info *info, char *err, size_t errlen);

/* DIR/iter_%07d.h5 into buf; -1 if it does not fit. */
int ckpt_path(char *buf, size_t len, const char *dir, int64_t iteration);

#endif
