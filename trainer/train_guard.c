#include "trainer/train_guard.h"

#include <math.h>

#include "common/check.h"
#include "common/log.h"
#include "parallel/comm.h"
#include "trainer/params.h"

void train_guard_init(struct train_guard *tg, const struct run_spec *s)
{
	*tg = (struct train_guard){
		.max_skipped = s->max_skipped_iters,
		.hash_interval = s->check_weight_hash_interval,
	};
	if (s->inject_fault[0])
		(void)spec_parse_fault(s->inject_fault, &tg->fault, &tg->fault_first,
				       &tg->fault_last);
}

static bool fault_now(const struct train_guard *tg, enum spec_fault kind, int64_t it,
		      const struct grid *g)
{
	return tg->fault == kind && it + 1 >= tg->fault_first && it + 1 <= tg->fault_last &&
	       g->world_rank == g->world_size - 1;
}

void train_guard_inject_grad(const struct train_guard *tg, int64_t it, struct param_set *p,
			     size_t at, const struct grid *g)
{
	if (fault_now(tg, SPEC_FAULT_NAN_GRAD, it, g)) {
		ENSURE(at < p->total);
		p->grad[at] = NAN;
		log_warn("--inject-fault: iteration %lld: a NaN in one gradient", (long long)(it + 1));
	}
}

int train_guard_step_ok(struct train_guard *tg, int64_t it, double loss, double grad_norm,
			const struct grid *g, bool *ok, char *err, size_t errlen)
{
	/* collective: all ranks; the loss lives on the last stage, the norm may differ
	 * between tensor-parallel ranks in their replicated part */
	const int first = comm_first_rank_with(g->world, !isfinite(loss) || !isfinite(grad_norm));

	*ok = first < 0;
	if (*ok) {
		tg->skipped_in_a_row = 0;
		return 0;
	}
	tg->skipped_in_a_row++;
	tg->skipped_total++;
	if (g->world_rank == first)
		log_warn("iteration %lld: loss %g, gradient norm %g: not finite, step skipped "
			 "(%lld in a row, %lld in all; --max-skipped-iters %lld)",
			 (long long)(it + 1), loss, grad_norm, (long long)tg->skipped_in_a_row,
			 (long long)tg->skipped_total, (long long)tg->max_skipped);
	if (tg->skipped_in_a_row >= tg->max_skipped)
		return log_fail(err, errlen, "--max-skipped-iters: %lld steps in a row had a "
				"non-finite loss or gradient (the last at iteration %lld): the run "
				"diverged; resume from an earlier checkpoint with a lower --lr",
				(long long)tg->skipped_in_a_row, (long long)(it + 1));
	return 0;
}

int train_guard_check_replicas(const struct train_guard *tg, int64_t it, struct param_set *p,
			       const struct grid *g, char *err, size_t errlen)
{
	uint64_t mine, replica0;
	int first;

	if (fault_now(tg, SPEC_FAULT_DRIFT, it, g)) {
		p->data[p->total / 2] += 1e-3f;
		log_warn("--inject-fault: iteration %lld: one parameter perturbed", (long long)(it + 1));
	}
	if (tg->hash_interval <= 0 || (it + 1) % tg->hash_interval != 0)
		return 0;
	mine = replica0 = param_set_hash(p);
	/* collective: the data x context plane (the ranks holding the same parameters),
	 * then all ranks */
	comm_bcast(g->replicas.comm, &replica0, sizeof(replica0), 0);
	first = comm_first_rank_with(g->world, mine != replica0);
	if (first < 0)
		return 0;
	return log_fail(err, errlen, "--check-weight-hash-across-dp-replicas-interval: at "
			"iteration %lld rank %d holds parameters that differ from its data-parallel "
			"replica 0 (a hardware fault or a bug): stopping",
			(long long)(it + 1), first);
}
