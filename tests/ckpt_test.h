/*
 * ckpt_test: what test_ckpt and test_ckpt_groups share. Collective checks (every
 * rank calls them; rank 0 counts and prints), and a synthetic sharded state: six
 * tensors split by rows, by columns or replicated, in the three groups the trainer
 * saves ("model", "optimizer/exp_avg", "optimizer/exp_avg_sq"), whose values are a
 * pure function of (tensor, group, global index, version), so that any layout knows
 * what it must read. Header-only, for these two tests only.
 */
#ifndef RN_TEST_CKPT_TEST_H
#define RN_TEST_CKPT_TEST_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "checkpoints/ckpt.h"
#include "common/alloc.h"
#include "common/rng.h"
#include "parallel/mpi_setup.h"
#include "tests/harness.h"

static int rank, world;
static char root[256];
static char err[CKPT_ERR_LEN];

/* ---- checks: every rank calls check(); rank 0 counts and prints --------- */

static inline bool all_true(bool ok)
{
	int v = ok;

	MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	return v;
}

static inline void count(bool ok, const char *what)
{
	if (ok) {
		test_passed_count++;
		printf("ok   %s\n", what);
	} else {
		test_failed_count++;
		fprintf(stderr, "FAIL %s\n", what);
	}
}

/* collective: passes when cond holds on every rank. */
static inline void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void check(bool cond, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	bool ok = all_true(cond);

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!cond)
		fprintf(stderr, "  [rank %d] failed here: %s\n", rank, what);
	if (rank == 0)
		count(ok, what);
}

/* rank 0 only (files): not collective. */
static inline void check0(bool cond, const char *what)
{
	count(cond, what);
}

/* collective: rc == -1 on every rank, the same message everywhere, holding the needles. */
static inline void check_refused(int rc, const char *label, const char *n1, const char *n2)
{
	uint64_t h = 1469598103934665603ull, v[2];

	for (const char *p = err; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	v[0] = h;
	v[1] = ~h;
	MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
	check(rc == -1 && v[0] == ~v[1] && strstr(err, n1) && (!n2 || strstr(err, n2)),
	      "%s: refused: %s", label, rc == -1 ? err : "(returned 0)");
}

/* ---- synthetic state ------------------------------------------------------ */

enum mode { NATURAL, COLS, WHOLE };

struct spec {
	const char *name;
	int ndim;
	int64_t rows, cols;
	int natural; /* split dim in NATURAL mode; -1: replicated (listed by part 0) */
};

static const struct spec specs[] = {
	{"embedding", 2, 37, 16, 0},
	{"layers/0/retention/wq", 2, 24, 20, 1},
	{"layers/0/retention/wo", 2, 20, 24, 0},
	{"layers/0/ln1/gain", 1, 20, 1, -1},
	{"layers/0/ffn/b1", 1, 30, 1, 0},
	{"lm_head", 2, 16, 37, -1},
};
#define NSPECS ((int)(sizeof(specs) / sizeof(specs[0])))

#define NGROUPS 3
static const char *const group_names[NGROUPS] = {"model", "optimizer/exp_avg",
						 "optimizer/exp_avg_sq"};

/* This rank's slices of each group: group g's are s[g][0 .. g[g].n - 1] unless a
 * test points g[g].slices elsewhere. */
struct state {
	struct ckpt_slice s[NGROUPS][NSPECS + 1]; /* + 1: room for a slice listed twice */
	struct ckpt_group g[NGROUPS];
	int ng;   /* groups passed: NGROUPS, or 1 (the model alone) */
	int made; /* slices made in each group, freed by state_free */
};

static inline float value_at(const char *name, int g, int version, int64_t r, int64_t c,
			     int64_t cols)
{
	return (float)rng_normal((uint64_t)version * 4 + (uint64_t)g, rng_stream_of(name),
				 (uint64_t)(r * cols + c));
}

/* s = slice sl of group g, its buffer filled with version's values (version < 0:
 * zeroed, to load into). */
static inline void slice_fill(struct ckpt_slice *s, const struct layout_slice *sl, int g,
			      int version)
{
	uint64_t s0[2], c0[2];

	memset(s, 0, sizeof(*s));
	s->slice = *sl;
	s->data = xcalloc(layout_slice_numel(sl), sizeof(float));
	layout_slice_hyperslab(sl, s0, c0);
	for (uint64_t r = 0; version >= 0 && r < c0[0]; r++)
		for (uint64_t c = 0; c < c0[1]; c++)
			s->data[r * c0[1] + c] = value_at(sl->name, g, version, (int64_t)(s0[0] + r),
							  (int64_t)(s0[1] + c), sl->global_shape[1]);
}

/* Points the groups at their slices, n each, all owned by this rank. */
static inline void state_groups(struct state *st, int ng, int n)
{
	st->ng = ng;
	for (int g = 0; g < NGROUPS; g++) {
		memset(&st->g[g], 0, sizeof(st->g[g]));
		snprintf(st->g[g].name, sizeof(st->g[g].name), "%s", group_names[g]);
		st->g[g].slices = st->s[g];
		st->g[g].n = g < ng ? n : 0;
		st->g[g].owner = true;
	}
}

/* This rank's slices over `parts` parts (it is part idx), the same in every group;
 * version < 0: zeroed buffers to load into. with_opt = false: the model alone. */
static inline void state_make(struct state *st, enum mode mode, int parts, int idx,
			      int version, bool with_opt)
{
	int n = 0;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NSPECS; i++) {
		const struct spec *sp = &specs[i];
		int dim = mode == WHOLE ? -1 : mode == COLS ? sp->ndim - 1 : sp->natural;
		int64_t start = 0, len = 0;
		struct layout_slice sl;

		if (dim < 0 && mode != WHOLE && idx != 0)
			continue;
		if (dim >= 0)
			layout_even_range(dim == 0 ? sp->rows : sp->cols, parts, idx, &start, &len);
		if (dim >= 0 && len == 0)
			continue;
		if (layout_slice_init(&sl, sp->name, sp->ndim, sp->rows, sp->cols, dim, start, len))
			abort();
		for (int g = 0; g < (with_opt ? NGROUPS : 1); g++)
			slice_fill(&st->s[g][n], &sl, g, version);
		n++;
	}
	st->made = n;
	state_groups(st, with_opt ? NGROUPS : 1, n);
}

static inline void state_free(struct state *st)
{
	for (int g = 0; g < NGROUPS; g++)
		for (int i = 0; i < st->made; i++)
			free(st->s[g][i].data);
}

static inline void state_owner(struct state *st, bool owner)
{
	for (int g = 0; g < NGROUPS; g++)
		st->g[g].owner = owner;
}

/* collective: save or load st's groups, every group owned by this rank or none. */
static inline int state_save(struct state *st, const char *dir, int64_t it,
			     const struct ckpt_attr *a, int na, const struct ckpt_options *o,
			     bool owner)
{
	state_owner(st, owner);
	return ckpt_save(dir, it, st->g, st->ng, a, na, o, MPI_COMM_WORLD, err, sizeof(err));
}

static inline int state_load(struct state *st, const char *dir, int64_t it, struct ckpt_attr *a,
			     int na, bool owner)
{
	state_owner(st, owner);
	return ckpt_load(dir, it, st->g, st->ng, a, na, MPI_COMM_WORLD, err, sizeof(err));
}

/* Values that differ from version's, bitwise; the first few printed. */
static inline size_t state_diff(const struct state *st, int version, const char *label)
{
	size_t bad = 0;

	for (int g = 0; g < st->ng; g++) {
		for (int i = 0; i < st->g[g].n; i++) {
			const struct ckpt_slice *s = &st->g[g].slices[i];
			uint64_t s0[2], c0[2];

			layout_slice_hyperslab(&s->slice, s0, c0);
			for (uint64_t k = 0; k < c0[0] * c0[1]; k++) {
				float want = value_at(s->slice.name, g, version,
						      (int64_t)(s0[0] + k / c0[1]),
						      (int64_t)(s0[1] + k % c0[1]),
						      s->slice.global_shape[1]);

				if (memcmp(&s->data[k], &want, sizeof(float)) && bad++ < 5)
					fprintf(stderr, "  [rank %d] %s: /%s/%s [%llu]: got %.9g "
						"want %.9g\n", rank, label, group_names[g],
						s->slice.name, (unsigned long long)k, s->data[k],
						want);
			}
		}
	}
	return bad;
}

/* ---- files -------------------------------------------------------------- */

static inline const char *sub(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", root, name);
	return p;
}

static inline bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static inline bool iter_exists(const char *dir, int64_t it)
{
	char p[1024];

	ckpt_path(p, sizeof(p), dir, it);
	return file_exists(p);
}

static inline int64_t latest_of(const char *dir)
{
	int64_t it = -1;
	char e[CKPT_ERR_LEN];

	return ckpt_latest(dir, &it, e, sizeof(e)) ? -1 : it;
}

static inline void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char p[1024];

	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= (int)sizeof(p))
			continue;
		if (unlink(p) < 0)
			remove_tree(p);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

/* ---- the program around the tests ----------------------------------------- */

/* MPI up, a fresh directory root (rank 0 makes it, every rank knows it). */
static inline void ckpt_test_begin(int *argc, char ***argv, const char *prog)
{
	mpi_setup_init(argc, argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	if (rank != 0 && !freopen("/dev/null", "w", stdout))
		exit(1);
	if (rank == 0) {
		snprintf(root, sizeof(root), "/tmp/rn_%s.XXXXXX", prog);
		if (!mkdtemp(root))
			abort();
		printf("%s: %d ranks, in %s\n", prog, world, root);
	}
	MPI_Bcast(root, sizeof(root), MPI_CHAR, 0, MPI_COMM_WORLD);
}

/* The totals over every rank; root removed unless a test failed and RN_KEEP_TMP is
 * set. Returns the exit status. */
static inline int ckpt_test_end(void)
{
	int totals[2] = {test_passed_count, test_failed_count};

	MPI_Allreduce(MPI_IN_PLACE, totals, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0) {
		if (totals[1] == 0 || !getenv("RN_KEEP_TMP"))
			remove_tree(root);
		printf("%d passed, %d failed\n", totals[0], totals[1]);
	}
	mpi_setup_finalize();
	return totals[1] ? 1 : 0;
}

#endif
