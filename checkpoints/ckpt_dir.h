/*
 * ckpt_dir: the files of a checkpoint directory and the order in which they are made
 * durable. POSIX only: no HDF5, no MPI (ckpt.c calls these on rank 0 between its
 * collective phases).
 *
 *   DIR/iter_%07d.h5       a complete checkpoint       DIR/iter_%07d.h5.tmp   in progress
 *   DIR/latest             "<iteration>\n"             DIR/latest.tmp         in progress
 *
 * Publishing iteration N: fsync the closed .tmp file, rename it to iter_N.h5, fsync
 * DIR; write latest.tmp, fsync it, rename it to latest, fsync DIR. Removal (stale
 * .tmp files, pruning) only ever touches names of exactly these forms.
 *
 * Test hooks (documented in ckpt.h): RETNET_CKPT_TEST_PAUSE=PHASE[:ITER] sleeps 60 s
 * after PHASE (write in ckpt.c; tmp, renamed, latest of ckpt_dir_publish);
 * RETNET_CKPT_TEST_NO_RESERVE makes ckpt_dir_reserve succeed without looking.
 *
 * Files and directories are created with modes 0666 and 0777: the user's umask
 * decides (as for the HDF5 file, which MPI-IO creates).
 *
 * Does not create or read the HDF5 file and does not decide when to save.
 */
#ifndef RN_CKPT_DIR_H
#define RN_CKPT_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* DIR/iter_%07d.h5 (or .h5.tmp) into buf; -1 if it does not fit. */
int ckpt_dir_file(char *buf, size_t len, const char *dir, int64_t iteration, bool tmp);
/* mkdir -p DIR, then remove its stale iter_*.h5.tmp and latest.tmp. 0 or -1 + msg. */
int ckpt_dir_prepare(const char *dir, char *msg, size_t len);
/*
 * Is there room for a file of `bytes` at path (DIR/iter_N.h5.tmp)? fallocate(2)s
 * them in path, which meets a full disk, a quota and RLIMIT_FSIZE (with SIGXFSZ
 * ignored) alike, then truncates it again; where the file system cannot allocate
 * ahead, compares with statvfs's free space and the file-size limit. A check before
 * any HDF5 call, not a reservation: the space can still go to someone else.
 * 0, or -1 with msg "PATH: no room for the checkpoint (about N MiB): <errno text>,
 * M MiB free on its file system" (path removed).
 */
int ckpt_dir_reserve(const char *path, uint64_t bytes, char *msg, size_t len);
/* Appends ", N MiB free on its file system" (path's directory) and, if there is
 * one, ", file-size limit (ulimit -f) M MiB" to msg, if it fits. */
void ckpt_dir_note_free_space(char *msg, size_t len, const char *path);
/* The RETNET_CKPT_TEST_PAUSE hook of phase `phase` (call it on one rank). */
void ckpt_dir_test_pause(const char *phase, int64_t iteration);
/* Make the closed DIR/iter_N.h5.tmp the checkpoint and point latest at it. */
int ckpt_dir_publish(const char *dir, int64_t iteration, char *msg, size_t len);
/* Keep the keep - 1 newest complete checkpoints older than `newest` (which `latest`
 * names), remove the other older ones; newer ones are left alone. keep = 0 keeps all.
 * Failures are warnings (log_warn): the new checkpoint is complete already. */
void ckpt_dir_prune(const char *dir, int64_t newest, int keep);
/* The iteration DIR/latest names, checking that its file exists. 0 or -1 + msg. */
int ckpt_dir_latest(const char *dir, int64_t *iteration, char *msg, size_t len);

#endif
