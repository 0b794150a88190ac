/*
 * train_guard: the checks that keep a long run honest.
 *
 * A step whose loss or gradient norm is not finite on any rank is skipped by every
 * rank (one decision for the whole job), with a warning; --max-skipped-iters such
 * steps in a row end the run. An optional periodic check compares a hash of the
 * parameters across each data-parallel group: replicas apply the same all-reduced
 * gradient, so any difference is a fault (hardware, or a bug) and ends the run
 * naming the first rank that differs. --inject-fault drives both in the tests.
 */
#ifndef RN_TRAIN_GUARD_H
#define RN_TRAIN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallel/grid.h"
#include "trainer/params.h"
#include "trainer/spec.h"

struct train_guard {
	int64_t max_skipped;       /* consecutive skips that end the run */
	int64_t hash_interval;     /* 0: no replica check */
	enum spec_fault fault;
	int64_t fault_first, fault_last; /* 1-based */
	int64_t skipped_in_a_row, skipped_total;
};

void train_guard_init(struct train_guard *tg, const struct run_spec *s);

/* Before the step's loss and norm are checked: --inject-fault nan-grad poisons the
 * gradient element `at` on the last rank at its iteration (it is 0-based here). */
void train_guard_inject_grad(const struct train_guard *tg, int64_t it, struct param_set *p,
			     size_t at, const struct grid *g);

/*
 * Should iteration `it` (0-based) update the parameters? false when any rank saw a
 * non-finite loss or gradient norm: counts the skip and warns. Returns -1 with a
 * line in err when this skip is the --max-skipped-iters'th in a row.
 * collective: all ranks
 */
int train_guard_step_ok(struct train_guard *tg, int64_t it, double loss, double grad_norm,
			const struct grid *g, bool *ok, char *err, size_t errlen);

/*
 * After the update of iteration `it`: every --check-weight-hash-across-dp-replicas-
 * interval steps, do all data-parallel replicas hold bit-identical parameters?
 * 0, or -1 with a line in err (the same on every rank) naming the first rank that
 * differs. collective: all ranks
 */
int train_guard_check_replicas(const struct train_guard *tg, int64_t it, struct param_set *p,
			       const struct grid *g, char *err, size_t errlen);

#endif
