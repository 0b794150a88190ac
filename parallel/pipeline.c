#include "parallel/pipeline.h"

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

void pipeline_1f1b(struct pipeline_op *ops, int stage, int stages, int micro_batches)
{
	const int warmup = min_int(stages - stage - 1, micro_batches);
	int n = 0, next_fwd = 0, next_bwd = 0;

	for (int i = 0; i < warmup; i++)
		ops[n++] = (struct pipeline_op){PIPELINE_FORWARD, next_fwd++};
	while (next_fwd < micro_batches) {
		ops[n++] = (struct pipeline_op){PIPELINE_FORWARD, next_fwd++};
		ops[n++] = (struct pipeline_op){PIPELINE_BACKWARD, next_bwd++};
	}
	while (next_bwd < micro_batches)
		ops[n++] = (struct pipeline_op){PIPELINE_BACKWARD, next_bwd++};
}

int pipeline_max_in_flight(int stage, int stages, int micro_batches)
{
	return min_int(stages - stage, micro_batches);
}

double pipeline_bubble_fraction(int stages, int micro_batches)
{
	return (double)(stages - 1) / (double)(micro_batches + stages - 1);
}
