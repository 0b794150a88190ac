/* syscall(SYS_gettid) for the writer's own priority */
#define _GNU_SOURCE
#include "checkpoints/ckpt_async.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

#define ASYNC_PATH_MAX 1024

struct ckpt_async {
	MPI_Comm comm;             /* the writer's own */
	pthread_t writer;
	bool busy;
	int64_t iteration;

	/* the copy the writer saves */
	char dir[ASYNC_PATH_MAX];
	struct ckpt_options opt;
	struct ckpt_group *groups; /* [ngroups], slices pointing into `values` */
	struct ckpt_slice **slices;/* [ngroups] */
	int ngroups, cap_groups, *cap_slices;
	struct ckpt_attr *attrs;
	int nattrs, cap_attrs;
	unsigned char *values;     /* the owned slices' values, back to back (bytes) */
	size_t cap_values;         /* bytes */

	int rc;                    /* the writer's result */
	char err[CKPT_ERR_LEN];
};

/* Stands in for the data of a slice this rank does not write: ckpt_save reads no
 * value of a slice that is not an owner's non-replica slice. */
static float not_written;

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static size_t elem_bytes(const struct ckpt_group *g)
{
	return g->dtype == CKPT_UINT16 ? sizeof(uint16_t) : sizeof(float);
}

static double now_s(void)
{
	struct timespec ts;

	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &ts));
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct ckpt_async *ckpt_async_create(MPI_Comm comm)
{
	struct ckpt_async *a = xcalloc(1, sizeof(*a));

	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Comm_dup(comm, &a->comm));
	CHECK_MPI(MPI_Comm_set_errhandler(a->comm, MPI_ERRORS_RETURN));
	a->iteration = -1;
	return a;
}

void ckpt_async_destroy(struct ckpt_async *a)
{
	char err[CKPT_ERR_LEN];

	if (!a)
		return;
	(void)ckpt_async_wait(a, NULL, err, sizeof(err));
	for (int g = 0; g < a->cap_groups; g++)
		free(a->slices[g]);
	free(a->slices);
	free(a->cap_slices);
	free(a->groups);
	free(a->attrs);
	free(a->values);
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Comm_free(&a->comm));
	free(a);
}

/* The writer yields its core to training: with every core training, a writer at
 * training's priority time-slices against it, and since training's collectives run
 * in lockstep, one rank's lost slice stalls every rank (that cost more than the save
 * itself). At the lowest priority it takes what training leaves (waits on I/O,
 * a core not training) and the rest when the next save or the end waits for it.
 * Linux applies setpriority to one thread; elsewhere it may lower the whole process,
 * so it is Linux only. Failure only loses the hint. */
static void lower_writer_priority(void)
{
#ifdef __linux__
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19))
		log_warn("ckpt_async: setpriority failed (%s): the checkpoint writer keeps "
			 "training's priority", strerror(errno));
#endif
}

static void *write_checkpoint(void *arg)
{
	struct ckpt_async *a = arg;

	lower_writer_priority();
	/* collective: all ranks' writers, over the writer's communicator */
	a->rc = ckpt_save(a->dir, a->iteration, a->groups, a->ngroups, a->attrs, a->nattrs,
			  &a->opt, a->comm, a->err, sizeof(a->err));
	return NULL;
}

/* Grows the tables of the copy to hold `groups` (set-up sized: the same every save). */
static void reserve(struct ckpt_async *a, const struct ckpt_group *groups, int ngroups,
		    int nattrs, size_t values)
{
	if (ngroups > a->cap_groups) {
		a->groups = realloc(a->groups, sizeof(*a->groups) * (size_t)ngroups);
		a->slices = realloc(a->slices, sizeof(*a->slices) * (size_t)ngroups);
		a->cap_slices = realloc(a->cap_slices, sizeof(*a->cap_slices) * (size_t)ngroups);
		CHECK_PTR(a->groups);
		CHECK_PTR(a->slices);
		CHECK_PTR(a->cap_slices);
		for (int g = a->cap_groups; g < ngroups; g++) {
			a->slices[g] = NULL;
			a->cap_slices[g] = 0;
		}
		a->cap_groups = ngroups;
	}
	for (int g = 0; g < ngroups; g++)
		if (groups[g].n > a->cap_slices[g]) {
			free(a->slices[g]);
			a->slices[g] = xcalloc((size_t)groups[g].n, sizeof(*a->slices[g]));
			a->cap_slices[g] = groups[g].n;
		}
	if (nattrs > a->cap_attrs) {
		free(a->attrs);
		a->attrs = xcalloc((size_t)nattrs, sizeof(*a->attrs));
		a->cap_attrs = nattrs;
	}
	if (values > a->cap_values) {
		free(a->values);
		a->values = xaligned_alloc(values);
		a->cap_values = values;
	}
}

int ckpt_async_start(struct ckpt_async *a, const char *dir, int64_t iteration,
		     const struct ckpt_group *groups, int ngroups, const struct ckpt_attr *attrs,
		     int nattrs, const struct ckpt_options *opt, char *err, size_t errlen)
{
	size_t values = 0, at = 0;
	int rc;

	rc = ckpt_async_wait(a, NULL, err, errlen);
	if (rc)
		return rc;
	ENSURE(ngroups >= 0 && nattrs >= 0 && strlen(dir) < sizeof(a->dir));
	/* bytes, each slice's start aligned to 8 so floats after ids stay aligned */
	for (int g = 0; g < ngroups; g++)
		for (int i = 0; groups[g].owner && i < groups[g].n; i++)
			if (!groups[g].slices[i].replica)
				values += ALIGN8(size_mul_checked(
					layout_slice_numel(&groups[g].slices[i].slice),
					elem_bytes(&groups[g]), "asynchronous checkpoint copy"));
	reserve(a, groups, ngroups, nattrs, values);
	for (int g = 0; g < ngroups; g++) {
		a->groups[g] = groups[g];
		a->groups[g].slices = a->slices[g];
		for (int i = 0; i < groups[g].n; i++) {
			const struct ckpt_slice *s = &groups[g].slices[i];
			struct ckpt_slice *c = &a->slices[g][i];
			const size_t n = layout_slice_numel(&s->slice) * elem_bytes(&groups[g]);

			*c = *s;
			c->data = &not_written;
			if (!groups[g].owner || s->replica)
				continue;
			if (groups[g].dtype == CKPT_UINT16) {
				c->u16 = (uint16_t *)(void *)(a->values + at);
				memcpy(c->u16, s->u16, n);
			} else {
				c->data = (float *)(void *)(a->values + at);
				memcpy(c->data, s->data, n);
			}
			at += ALIGN8(n);
		}
	}
	memcpy(a->attrs, attrs, sizeof(*attrs) * (size_t)nattrs);
	snprintf(a->dir, sizeof(a->dir), "%s", dir);
	a->ngroups = ngroups;
	a->nattrs = nattrs;
	a->opt = opt ? *opt : (struct ckpt_options){0, 0};
	a->iteration = iteration;
	a->rc = 0;
	a->err[0] = '\0';
	if (pthread_create(&a->writer, NULL, write_checkpoint, a))
		FATAL("pthread_create: cannot start the checkpoint writer");
	a->busy = true;
	return 0;
}

int ckpt_async_wait(struct ckpt_async *a, double *waited, char *err, size_t errlen)
{
	double t0 = now_s();

	if (waited)
		*waited = 0.0;
	if (!a->busy)
		return 0;
	if (pthread_join(a->writer, NULL))
		FATAL("pthread_join: cannot join the checkpoint writer");
	a->busy = false;
	if (waited)
		*waited = now_s() - t0;
	if (a->rc)
		snprintf(err, errlen, "%s", a->err);
	return a->rc;
}

bool ckpt_async_busy(const struct ckpt_async *a)
{
	return a->busy;
}

int64_t ckpt_async_iteration(const struct ckpt_async *a)
{
	return a->iteration;
}
