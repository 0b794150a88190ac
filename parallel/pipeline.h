/*
 * pipeline: the schedule of one pipeline stage, as a pure list of operations (no
 * MPI, testable alone). The caller turns each op into compute plus the
 * point-to-point transfers with the neighbouring stages. Knows nothing of RetNet.
 *
 * 1F1B: stage s of P runs min(P - s - 1, m) warm-up forwards, then alternates one
 * forward and one backward while forwards remain, then the remaining backwards
 * (cool-down). So a stage holds at most P - s micro-batches of activations at once,
 * never all m of them, and backwards run in micro-batch order.
 *
 * Interleaved 1F1B (Megatron-LM's schedule with virtual pipeline stages): the model
 * is cut into P x v chunks and stage s holds the v chunks s, s + P, s + 2P, ...
 * (its model chunk c is virtual stage c P + s); every micro-batch passes through
 * the P x v virtual stages in order, so it visits each stage v times. The k-th
 * forward of a stage runs micro-batch (k / (P v)) P + k % P on chunk
 * (k % (P v)) / P: P micro-batches on chunk 0, the same P on chunk 1, ..., then the
 * next P; the k-th backward the same micro-batch on chunk v - 1 - (k % (P v)) / P.
 * Stage s warms up with min(2 (P - s - 1) + (v - 1) P, v m) forwards (all v m when
 * m = P), then alternates one forward and one backward, then cools down. Needs m a
 * multiple of P (pipeline_interleaved_valid). A chunk's forwards, and its backwards,
 * run in micro-batch order; a stage finishes its chunks' last backwards in the
 * order v - 1, ..., 0. The bubble is about that of 1F1B divided by v:
 * (P - 1) / (v m + P - 1) when every chunk op takes the same time. With v = 1 it
 * is exactly 1F1B.
 */
#ifndef RN_PIPELINE_H
#define RN_PIPELINE_H

#include <stdbool.h>

enum pipeline_op_kind { PIPELINE_FORWARD, PIPELINE_BACKWARD };

struct pipeline_op {
	enum pipeline_op_kind kind;
	int chunk; /* the stage's model chunk, 0 .. v-1: virtual stage chunk * P + stage */
	int micro; /* micro-batch index, 0 .. m-1 */
};

/* Writes the 2m ops of stage `stage` (of `stages`) for m micro-batches into ops
 * (all of chunk 0). */
void pipeline_1f1b(struct pipeline_op *ops, int stage, int stages, int micro_batches);
/* Micro-batches whose activations a stage holds at once under 1F1B. */
int pipeline_max_in_flight(int stage, int stages, int micro_batches);

/* Can the interleaved schedule run m micro-batches over P stages of v chunks each?
 * v = 1 always; v > 1 needs m a multiple of P. */
bool pipeline_interleaved_valid(int stages, int chunks, int micro_batches);
/* Writes the 2 v m ops of stage `stage` (of `stages`, v = chunks) into ops;
 * pipeline_interleaved_valid must hold. */
void pipeline_interleaved(struct pipeline_op *ops, int stage, int stages, int chunks,
			  int micro_batches);
/* Micro-batches whose activations chunk `chunk` of a stage holds at once under the
 * interleaved schedule (its slots). Allocates a temporary list of ops. */
int pipeline_chunk_in_flight(int stage, int stages, int chunks, int micro_batches,
			     int chunk);

/* The idle fraction with equal op times: (P - 1) / (v m + P - 1); v = 1: 1F1B's. */
double pipeline_bubble_fraction(int stages, int chunks, int micro_batches);

#endif
