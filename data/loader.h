/*
 * loader: training and evaluation windows over memory-mapped token shards, the
 * same on every data-parallel layout.
 *
 * Stream. The shards given to loader_init() are concatenated, in the order given,
 * into one logical token stream of N tokens (a shard boundary is not a document
 * boundary: the byte tokenizer has no document marker, and one stream wastes no
 * remainder per shard). All shards must carry the same tokenizer.
 *
 * Windows. Window w (0 <= w < W, W = floor((N - 1) / T), T = seq_len) is stream
 * tokens [w*T, w*T + T]: T + 1 tokens, inputs = the first T, targets = the last T
 * (inputs shifted by one). Windows do not overlap except in that one shared token
 * (stride T). The N - 1 - W*T tokens after the last window are never a target:
 * loader_remainder_tokens(). A corpus with N < T + 1 is an error.
 *
 * Training order. Epoch e is a permutation P_e of the W windows: a 6-round Feistel
 * network keyed by (seed, e) through common/rng.h (Philox), with cycle walking
 * down to [0, W). It is a pure function of (seed, e, i): nothing of size W is
 * stored, and resuming needs only (epoch, position). The epochs follow each other
 * as one endless sequence of global windows: the k-th global window of the run is
 * P_e(i) with e = k / W, i = k % W. Every window is seen exactly once per epoch.
 *
 * Global batch contract. The caller passes the GLOBAL batch G (windows per
 * optimizer step, summed over all data-parallel ranks) to every call.
 * Global batch s consists of global windows s*G .. s*G + G - 1 (they may run
 * into the next epoch). Data-parallel rank r of D gets the contiguous sub-range
 *     [floor(r*G/D), floor((r+1)*G/D))
 * of them, in that order, as rows of its (rows, T) inputs and targets; all ranks
 * advance by G. So the ranks are disjoint, together see every window of the step,
 * and the single-rank run with batch G returns in one call exactly the rows of
 * ranks 0, 1, ..., D-1 concatenated: D = 2 with G/D = 2 rows each equals D = 1
 * with 4 rows, in the same order. A rank splits its rows into micro-batches
 * itself (micro-batch m = rows [m*B, (m+1)*B)), so gradient accumulation does not
 * change which windows a step sees. Pipeline-parallel and tensor-parallel peers
 * of one data-parallel rank pass the same dp_rank and get the same rows.
 *
 * Resume. loader_state_get() is the position at a step boundary; setting it on a
 * loader over the same corpus, seq_len and seed (checked) continues with exactly
 * the windows the uninterrupted run would have seen, whatever the D of either run.
 *
 * Evaluation order. loader_seq_next() walks windows 0 .. W-1 in corpus order;
 * data-parallel rank r takes the contiguous range [floor(r*W/D), floor((r+1)*W/D)).
 * Its cursor is separate from the training one.
 *
 * Cost. loader_init() validates every shard it maps (shard_open_checked(): one
 * full read for the checksum and the token range), on every rank. After that a
 * batch is a copy of G/D windows out of the page cache; nothing is allocated.
 *
 * Does not: read text, tokenize, know about MPI (dp_rank and dp_size are plain
 * ints), pad a short final window, or mark document boundaries.
 */
#ifndef RN_LOADER_H
#define RN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/shard.h"
#include "data/tokenizer.h"

/* The resumable position: plain integers, stored as such in checkpoints. */
struct loader_state {
	uint64_t epoch;		/* epochs completed */
	uint64_t position;	/* next window of epoch's permutation, in [0, n_windows) */
	uint64_t n_windows;	/* of the corpus it came from: checked on set */
	uint64_t seq_len;	/* checked on set */
	uint64_t seed;		/* checked on set */
};

/* Fields are read-only for callers. */
struct loader {
	struct shard *shards;	/* (nshards), open and validated */
	int nshards;
	uint64_t *starts;	/* (nshards + 1): stream offset of each shard; [nshards] = n_tokens */
	uint64_t n_tokens;	/* N, the whole stream */
	uint64_t source_bytes;	/* text bytes behind the N tokens (sum of the headers) */
	uint64_t n_windows;	/* W */
	struct tokenizer tok;	/* shared by all shards */
	int seq_len;		/* T */
	int dp_rank, dp_size;
	uint64_t seed;
	uint64_t epoch, position;		/* training cursor */
	uint64_t seq_begin, seq_end, seq_next;	/* this rank's evaluation windows */
	unsigned half_bits;			/* Feistel half width: 2^(2h) >= W */
};

/* --- lifecycle --- */

/*
 * Open and validate every shard (shard_open_checked()), check they share one
 * tokenizer, and lay out the windows. Returns 0, or a negative errno with one
 * line "<file(s)>: <rule>" in err (bad shard, tokenizer mismatch between
 * shards, corpus shorter than one window of seq_len + 1 tokens, bad seq_len or
 * dp_rank/dp_size); ld then holds nothing.
 */
int loader_init(struct loader *ld, const char *const *paths /* (npaths) */, int npaths,
		int seq_len, int dp_rank, int dp_size, uint64_t seed, char *err,
		size_t err_len);
void loader_free(struct loader *ld);

/* --- training --- */

/* Rows this rank gets per step: floor((r+1)*G/D) - floor(r*G/D). */
int loader_local_rows(const struct loader *ld, int global_batch);

/*
 * The next global batch (see the contract above): writes this rank's rows into
 * inputs and targets, advances every rank's cursor by global_batch, returns the
 * number of rows written (loader_local_rows()). global_batch >= 1.
 */
int loader_next_batch(struct loader *ld, int32_t *inputs /* (rows, T) */,
		      int32_t *targets /* (rows, T) */, int global_batch);

void loader_state_get(const struct loader *ld, struct loader_state *st);
/*
 * Resume from st. Returns 0, or -EINVAL with one line in err when st was taken
 * on another corpus size, seq_len or seed, or its position is out of range.
 */
int loader_state_set(struct loader *ld, const struct loader_state *st, char *err,
		     size_t err_len);

/* The window at position i of epoch's permutation (i < n_windows). */
uint64_t loader_permute(const struct loader *ld, uint64_t epoch, uint64_t i);
/* Copy window w: inputs = tokens [w*T, w*T+T), targets = [w*T+1, w*T+T]. */
void loader_read_window(const struct loader *ld, uint64_t w, int32_t *inputs /* (T) */,
			int32_t *targets /* (T) */);

/* --- evaluation --- */

/* Restart this rank's walk over its windows. */
void loader_seq_rewind(struct loader *ld);
/* Up to max_rows next windows in corpus order; returns the rows written, 0 at the end. */
int loader_seq_next(struct loader *ld, int32_t *inputs /* (max_rows, T) */,
		    int32_t *targets /* (max_rows, T) */, int max_rows);
/* Windows this rank walks in sequential mode. */
uint64_t loader_seq_windows(const struct loader *ld);
/* Tokens after the last window, never a target: N - 1 - W*T. */
uint64_t loader_remainder_tokens(const struct loader *ld);

#endif
