/*
 * schedule: the learning rate at an iteration: linear warm-up from 0 over
 * warmup_iters, then linear or cosine decay to min_lr at decay_iters, constant
 * after. Pure functions; knows nothing else.
 */
#ifndef RN_SCHEDULE_H
#define RN_SCHEDULE_H

#include <stdint.h>

enum lr_decay_style { LR_DECAY_CONSTANT, LR_DECAY_LINEAR, LR_DECAY_COSINE };

struct lr_schedule {
	double lr, min_lr;
	int64_t warmup_iters, decay_iters;
	enum lr_decay_style style;
};

/* Learning rate of iteration it (0-based: the first update is it = 0). */
double lr_at(const struct lr_schedule *s, int64_t it);

#endif
