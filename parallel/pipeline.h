/*
 * pipeline: the 1F1B schedule of one pipeline stage, as a pure list of operations
 * (no MPI, testable alone). Stage s of P runs min(P - s - 1, m) warm-up forwards,
 * then alternates one forward and one backward while forwards remain, then the
 * remaining backwards (cool-down). So a stage holds at most P - s micro-batches of
 * activations at once, never all m of them, and backwards run in micro-batch order.
 * The caller turns each op into compute plus the point-to-point transfers with the
 * neighbouring stages. Knows nothing of RetNet.
 */
#ifndef RN_PIPELINE_H
#define RN_PIPELINE_H

enum pipeline_op_kind { PIPELINE_FORWARD, PIPELINE_BACKWARD };

struct pipeline_op {
	enum pipeline_op_kind kind;
	int micro; /* micro-batch index, 0 .. m-1 */
};

/* Writes the 2m ops of stage `stage` (of `stages`) for m micro-batches into ops. */
void pipeline_1f1b(struct pipeline_op *ops, int stage, int stages, int micro_batches);
/* Micro-batches whose activations a stage holds at once under 1F1B. */
int pipeline_max_in_flight(int stage, int stages, int micro_batches);
/* The idle fraction of 1F1B with equal stage times: (P - 1) / (m + P - 1). */
double pipeline_bubble_fraction(int stages, int micro_batches);

#endif
