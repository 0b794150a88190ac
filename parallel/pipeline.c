#include "parallel/pipeline.h"

#include <stdlib.h>

#include "common/alloc.h"
#include "common/check.h"

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

void pipeline_1f1b(struct pipeline_op *ops, int stage, int stages, int micro_batches)
{
	const int warmup = min_int(stages - stage - 1, micro_batches);
	int n = 0, next_fwd = 0, next_bwd = 0;

	for (int i = 0; i < warmup; i++)
		ops[n++] = (struct pipeline_op){PIPELINE_FORWARD, 0, next_fwd++};
	while (next_fwd < micro_batches) {
		ops[n++] = (struct pipeline_op){PIPELINE_FORWARD, 0, next_fwd++};
		ops[n++] = (struct pipeline_op){PIPELINE_BACKWARD, 0, next_bwd++};
	}
	while (next_bwd < micro_batches)
		ops[n++] = (struct pipeline_op){PIPELINE_BACKWARD, 0, next_bwd++};
}

int pipeline_max_in_flight(int stage, int stages, int micro_batches)
{
	return min_int(stages - stage, micro_batches);
}

bool pipeline_interleaved_valid(int stages, int chunks, int micro_batches)
{
	if (stages < 1 || chunks < 1 || micro_batches < 1)
		return false;
	return chunks == 1 || micro_batches % stages == 0;
}

/* The k-th forward (or backward) of a stage: micro-batches go in groups of P, each
 * group through chunk 0, 1, ... (backward: v - 1, ..., 0) before the next group. */
static struct pipeline_op nth_op(enum pipeline_op_kind kind, int k, int stages, int chunks)
{
	const int group = k / (stages * chunks), in_group = k % (stages * chunks);
	int chunk = in_group / stages;

	if (kind == PIPELINE_BACKWARD)
		chunk = chunks - 1 - chunk;
	return (struct pipeline_op){kind, chunk, group * stages + in_group % stages};
}

void pipeline_interleaved(struct pipeline_op *ops, int stage, int stages, int chunks,
			  int micro_batches)
{
	const int total = chunks * micro_batches;
	int warmup, n = 0, next_fwd = 0, next_bwd = 0;

	ENSURE(pipeline_interleaved_valid(stages, chunks, micro_batches));
	if (chunks == 1) {
		pipeline_1f1b(ops, stage, stages, micro_batches);
		return;
	}
	/* Megatron-LM's count: the forwards that reach the last virtual stage before this
	 * stage's first backward can start, plus one round of the pipeline for the
	 * lower chunks; with m = P every forward goes first. */
	warmup = micro_batches == stages ? total
					 : min_int(2 * (stages - stage - 1) + (chunks - 1) * stages,
						   total);
	for (int i = 0; i < warmup; i++)
		ops[n++] = nth_op(PIPELINE_FORWARD, next_fwd++, stages, chunks);
	while (next_fwd < total) {
		ops[n++] = nth_op(PIPELINE_FORWARD, next_fwd++, stages, chunks);
		ops[n++] = nth_op(PIPELINE_BACKWARD, next_bwd++, stages, chunks);
	}
	while (next_bwd < total)
		ops[n++] = nth_op(PIPELINE_BACKWARD, next_bwd++, stages, chunks);
}

int pipeline_chunk_in_flight(int stage, int stages, int chunks, int micro_batches, int chunk)
{
	const int n = 2 * chunks * micro_batches;
	struct pipeline_op *ops = xcalloc((size_t)n, sizeof(*ops));
	int held = 0, peak = 0;

	pipeline_interleaved(ops, stage, stages, chunks, micro_batches);
	for (int i = 0; i < n; i++) {
		if (ops[i].chunk != chunk)
			continue;
		held += ops[i].kind == PIPELINE_FORWARD ? 1 : -1;
		if (held > peak)
			peak = held;
	}
	free(ops);
	return peak;
}

double pipeline_bubble_fraction(int stages, int chunks, int micro_batches)
{
	return (double)(stages - 1) / (double)(chunks * micro_batches + stages - 1);
}
