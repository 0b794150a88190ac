#include "trainer/schedule.h"

#include <math.h>

#define SCHEDULE_PI 3.14159265358979323846

double lr_at(const struct lr_schedule *s, int64_t it)
{
	double progress;

	/* As Megatron-LM: the first update already uses lr/warmup, not 0. */
	if (it < s->warmup_iters)
		return s->lr * (double)(it + 1) / (double)s->warmup_iters;
	if (s->style == LR_DECAY_CONSTANT)
		return s->lr;
	if (it >= s->decay_iters || s->decay_iters <= s->warmup_iters)
		return s->min_lr;
	progress = (double)(it - s->warmup_iters) / (double)(s->decay_iters - s->warmup_iters);
	if (s->style == LR_DECAY_LINEAR)
		return s->min_lr + (s->lr - s->min_lr) * (1.0 - progress);
	return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(SCHEDULE_PI * progress));
}
