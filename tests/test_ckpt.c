/* checkpoints/ckpt: save and load over MPI at 1, 2 and 4 ranks. Synthetic tensors
 * split by rows, by columns and replicated (values a pure function of name, group,
 * global index and a version number, so any layout knows what it must read):
 * (1) a round trip at one layout is bit-identical, attributes included; (2) a save
 * with data-parallel replicas (which hold DIFFERENT values, so a replica that wrote
 * would show) loads at other layouts, and save A -> load B -> save B gives the same
 * datasets; (3) overlapping or holed layouts and non-finite values are refused,
 * leaving the directory untouched; (4) a flipped byte in a chunk, a truncated file,
 * a shape mismatch, missing datasets/attributes/pointers are errors naming what is
 * wrong; (5) keep_last prunes only after a complete save, and stale .tmp files are
 * ignored then removed. Every check is agreed by all ranks; rank 0 prints. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoints/ckpt.h"
#include "common/alloc.h"
#include "common/rng.h"
#include "parallel/mpi_setup.h"
#include "tests/harness.h"

static int rank, world;
static char root[256];
static char err[CKPT_ERR_LEN];

/* ---- checks: every rank calls check(); rank 0 counts and prints --------- */

static bool all_true(bool ok)
{
	int v = ok;

	MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	return v;
}

static void count(bool ok, const char *what)
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
static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool cond, const char *fmt, ...)
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
static void check0(bool cond, const char *what)
{
	count(cond, what);
}

/* collective: rc == -1 on every rank, the same message everywhere, holding the needles. */
static void check_refused(int rc, const char *label, const char *n1, const char *n2)
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

struct state {
	struct ckpt_entry e[NSPECS];
	int n;
};

static float value_at(const char *name, int g, int version, int64_t r, int64_t c, int64_t cols)
{
	return (float)rng_normal((uint64_t)version * 4 + (uint64_t)g, rng_stream_of(name),
				 (uint64_t)(r * cols + c));
}

static float *group_buf(struct ckpt_entry *e, int g)
{
	return g == 0 ? e->model : g == 1 ? e->exp_avg : e->exp_avg_sq;
}

/* This rank's slices over `parts` parts (it is part idx); version < 0: zeroed buffers
 * to load into. with_opt = false leaves the optimizer groups NULL. */
static void state_make(struct state *st, enum mode mode, int parts, int idx, int version,
		       bool with_opt)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NSPECS; i++) {
		const struct spec *sp = &specs[i];
		struct ckpt_entry *e = &st->e[st->n];
		int dim = mode == WHOLE ? -1 : mode == COLS ? sp->ndim - 1 : sp->natural;
		int64_t start = 0, len = 0;
		uint64_t s0[2], c0[2];

		if (dim < 0 && mode != WHOLE && idx != 0)
			continue;
		if (dim >= 0)
			layout_even_range(dim == 0 ? sp->rows : sp->cols, parts, idx, &start, &len);
		if (dim >= 0 && len == 0)
			continue;
		if (layout_slice_init(&e->slice, sp->name, sp->ndim, sp->rows, sp->cols, dim,
				      start, len))
			abort();
		layout_slice_hyperslab(&e->slice, s0, c0);
		for (int g = 0; g < 3; g++) {
			float *b;

			if (g > 0 && !with_opt)
				continue;
			b = xcalloc(layout_slice_numel(&e->slice), sizeof(float));
			*(g == 0 ? &e->model : g == 1 ? &e->exp_avg : &e->exp_avg_sq) = b;
			for (uint64_t r = 0; version >= 0 && r < c0[0]; r++)
				for (uint64_t c = 0; c < c0[1]; c++)
					b[r * c0[1] + c] = value_at(sp->name, g, version,
								    (int64_t)(s0[0] + r),
								    (int64_t)(s0[1] + c), sp->cols);
		}
		st->n++;
	}
}

static void state_free(struct state *st)
{
	for (int i = 0; i < st->n; i++)
		for (int g = 0; g < 3; g++)
			free(group_buf(&st->e[i], g));
}

/* Values that differ from version's, bitwise; the first few printed. */
static size_t state_diff(struct state *st, int version, const char *label)
{
	size_t bad = 0;

	for (int i = 0; i < st->n; i++) {
		struct ckpt_entry *e = &st->e[i];
		uint64_t s0[2], c0[2];

		layout_slice_hyperslab(&e->slice, s0, c0);
		for (int g = 0; g < 3; g++) {
			const float *b = group_buf(e, g);

			for (uint64_t k = 0; b && k < c0[0] * c0[1]; k++) {
				float want = value_at(e->slice.name, g, version,
						      (int64_t)(s0[0] + k / c0[1]),
						      (int64_t)(s0[1] + k % c0[1]),
						      e->slice.global_shape[1]);

				if (memcmp(&b[k], &want, sizeof(float)) && bad++ < 5)
					fprintf(stderr, "  [rank %d] %s: %s group %d [%llu]: got "
						"%.9g want %.9g\n", rank, label, e->slice.name, g,
						(unsigned long long)k, b[k], want);
			}
		}
	}
	return bad;
}

static const char *sub(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", root, name);
	return p;
}

static void make_attrs(struct ckpt_attr a[4], int version)
{
	memset(a, 0, 4 * sizeof(*a));
	snprintf(a[0].key, sizeof(a[0].key), "config/hidden_size");
	a[0].type = CKPT_I64;
	a[0].i = 512 + version;
	snprintf(a[1].key, sizeof(a[1].key), "loss");
	a[1].type = CKPT_F64;
	a[1].f = 2.5 + version / 3.0;
	snprintf(a[2].key, sizeof(a[2].key), "data/tokenizer");
	a[2].type = CKPT_STR;
	snprintf(a[2].s, sizeof(a[2].s), "bytes-v1 (%d)", version);
	snprintf(a[3].key, sizeof(a[3].key), "iteration");
	a[3].type = CKPT_I64;
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool iter_exists(const char *dir, int64_t it)
{
	char p[1024];

	ckpt_path(p, sizeof(p), dir, it);
	return file_exists(p);
}

static int64_t latest_of(const char *dir)
{
	int64_t it = -1;
	char e[CKPT_ERR_LEN];

	return ckpt_latest(dir, &it, e, sizeof(e)) ? -1 : it;
}

static const struct ckpt_options lvl1 = {1, 0};

/* ---- (1) and (2): round trips --------------------------------------------- */

static void test_round_trip(void)
{
	struct state a, b;
	struct ckpt_attr at[4], got[4];
	int rc;

	for (int level = 0; level <= 6; level += 6) {
		const struct ckpt_options opt = {level, 0};
		const char *dir = sub(level ? "t1_l6" : "t1_l0");

		state_make(&a, NATURAL, world, rank, 1, true);
		make_attrs(at, 1);
		rc = ckpt_save(dir, 100, a.e, a.n, at, 3, &opt, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check(rc == 0, "save, rows/cols/replicated over %d ranks, level %d%s%s", world,
		      level, rc ? ": " : "", rc ? err : "");
		state_make(&b, NATURAL, world, rank, -1, true);
		make_attrs(got, 0);
		rc = ckpt_load(dir, 100, b.e, b.n, got, 4, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check(rc == 0, "load at the same layout%s%s", rc ? ": " : "", rc ? err : "");
		check(state_diff(&b, 1, "same layout") == 0,
		      "same layout, level %d: every value bit-identical", level);
		check(got[0].i == at[0].i && !memcmp(&got[1].f, &at[1].f, sizeof(double)) &&
			      !strcmp(got[2].s, at[2].s) && got[3].i == 100,
		      "attributes: %lld, %.17g, \"%s\", iteration %lld", (long long)got[0].i,
		      got[1].f, got[2].s, (long long)got[3].i);
		check(latest_of(dir) == 100, "latest = 100");
		state_free(&a);
		state_free(&b);
	}
	if (rank == 0) {
		struct ckpt_verify_info info;
		char p[1024];

		ckpt_path(p, sizeof(p), sub("t1_l6"), 100);
		rc = ckpt_verify(p, &info, err, sizeof(err));
		check0(rc == 0 && info.datasets == 3 * NSPECS && info.iteration == 100,
		       "ckpt_verify reads all 18 datasets");
		printf("     verify: %d datasets, %llu values, %llu bytes stored\n",
		       info.datasets, (unsigned long long)info.values,
		       (unsigned long long)info.stored_bytes);
	}
}

static void test_reshard(void)
{
	const int tp = world % 2 == 0 ? world / 2 : world, dp = world / tp;
	const int tp_rank = rank % tp, dp_rank = rank / tp;
	const char *a_dir = sub("t2_a"), *b_dir = sub("t2_b");
	struct state s, l;
	struct ckpt_attr at[4], got[4];
	int rc;

	/* Replicas hold other values: had they written, the reads below would show it. */
	state_make(&s, NATURAL, tp, tp_rank, dp_rank == 0 ? 2 : 99, true);
	make_attrs(at, 2);
	rc = ckpt_save(a_dir, 7, s.e, s.n, at, 3, &lvl1, MPI_COMM_WORLD, dp_rank == 0, err,
		       sizeof(err));
	check(rc == 0, "save at TP=%d x DP=%d (replicas do not write)%s%s", tp, dp,
	      rc ? ": " : "", rc ? err : "");
	state_free(&s);

	struct {
		enum mode mode;
		int parts, idx;
		bool primary;
		const char *what;
	} loads[] = {
		{WHOLE, 1, 0, rank == 0, "every rank the whole tensors"},
		{COLS, world, rank, true, "split by columns over all ranks"},
		{NATURAL, 2, rank % 2, rank < 2, "split 2 ways (rows/cols as saved)"},
		{COLS, 3, rank % 3, rank < 3, "split 3 ways by columns (uneven)"},
	};
	for (size_t k = 0; k < sizeof(loads) / sizeof(loads[0]); k++) {
		state_make(&l, loads[k].mode, loads[k].parts, loads[k].idx, -1, true);
		rc = ckpt_load(a_dir, 7, l.e, l.n, NULL, 0, MPI_COMM_WORLD,
			       loads[k].primary && world >= loads[k].parts, err, sizeof(err));
		check(rc == 0 && state_diff(&l, 2, loads[k].what) == 0,
		      "saved at TP=%d x DP=%d, loaded %s: the right values%s%s", tp, dp,
		      loads[k].what, rc ? ": " : "", rc ? err : "");
		state_free(&l);
	}

	/* save at A, load at B (columns over all ranks), save at B: the same datasets */
	state_make(&l, COLS, world, rank, -1, true);
	make_attrs(got, 0);
	rc = ckpt_load(a_dir, 7, l.e, l.n, got, 3, MPI_COMM_WORLD, true, err, sizeof(err));
	if (rc == 0)
		rc = ckpt_save(b_dir, 7, l.e, l.n, got, 3, &lvl1, MPI_COMM_WORLD, true, err,
			       sizeof(err));
	check(rc == 0, "load at B and save again%s%s", rc ? ": " : "", rc ? err : "");
	state_free(&l);
	{
		struct state x, y;
		bool same = true;

		state_make(&x, WHOLE, 1, 0, -1, true);
		state_make(&y, WHOLE, 1, 0, -1, true);
		rc = ckpt_load(a_dir, 7, x.e, x.n, at, 3, MPI_COMM_WORLD, rank == 0, err,
			       sizeof(err));
		rc |= ckpt_load(b_dir, 7, y.e, y.n, got, 3, MPI_COMM_WORLD, rank == 0, err,
				sizeof(err));
		for (int i = 0; i < x.n; i++)
			for (int g = 0; g < 3; g++)
				same &= !memcmp(group_buf(&x.e[i], g), group_buf(&y.e[i], g),
						layout_slice_numel(&x.e[i].slice) * sizeof(float));
		same &= at[0].i == got[0].i && at[1].f == got[1].f && !strcmp(at[2].s, got[2].s);
		check(rc == 0 && same, "save A -> load B -> save B: datasets and attributes "
		      "identical (read back whole)");
		state_free(&x);
		state_free(&y);
	}
}

/* ---- (3) refused saves ---------------------------------------------------- */

static void test_refused_saves(void)
{
	const char *dir = sub("t3");
	struct state s;
	int rc, last = world - 1;

	state_make(&s, NATURAL, world, rank, 3, true);
	rc = ckpt_save(dir, 1, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check(rc == 0, "a good save first");

	/* embedding is split by rows: widen or shrink the last rank's range */
	if (world > 1 && rank == last) {
		s.e[0].slice.start[0]--;
		s.e[0].slice.shape[0]++;
	}
	if (world > 1) {
		rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check_refused(rc, "overlapping rows", "embedding", "overlap");
	}
	if (world > 1 && rank == last) {
		s.e[0].slice.start[0]++;
		s.e[0].slice.shape[0]--;
	}
	if (rank == last)
		s.e[0].slice.shape[0]--;
	rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check_refused(rc, "a hole (one row missing)", "embedding", "hole");
	if (rank == last)
		s.e[0].slice.shape[0]++;
	rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, rank != last, err,
		       sizeof(err));
	check_refused(rc, "the last rank not a writer (no replica)", "hole", NULL);

	if (rank == last)
		s.e[1].exp_avg[3] = 0.0f / 0.0f;
	rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check_refused(rc, "a NaN", "layers/0/retention/wq", "non-finite");
	if (rank == last) {
		s.e[1].exp_avg[3] = 0.5f;
		s.e[0].model[0] = 1.0f / 0.0f;
	}
	rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check_refused(rc, "an infinity", "embedding", "non-finite");
	if (rank == last)
		s.e[0].model[0] = 0.25f;

	{
		struct ckpt_attr a[1] = {{.key = "iteration", .type = CKPT_I64}};

		rc = ckpt_save(dir, 2, s.e, s.n, a, 1, &lvl1, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check_refused(rc, "a reserved attribute key", "iteration", "reserved");
		snprintf(a[0].key, sizeof(a[0].key), "config//x");
		rc = ckpt_save(dir, 2, s.e, s.n, a, 1, &lvl1, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check_refused(rc, "a malformed key", "config//x", NULL);
	}
	if (world > 1) {
		struct state t;

		rc = ckpt_save(dir, rank == last ? 3 : 2, s.e, s.n, NULL, 0, &lvl1,
			       MPI_COMM_WORLD, true, err, sizeof(err));
		check_refused(rc, "ranks passing different iterations", "disagree", NULL);

		state_make(&t, NATURAL, world, rank, 3, true);
		/* wo is split by rows: the last rank claims 25 columns (its buffer is not
		 * read: the layout is refused before any value is looked at) */
		if (rank == last)
			t.e[2].slice.global_shape[1] = t.e[2].slice.shape[1] = 25;
		rc = ckpt_save(dir, 2, t.e, t.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		check_refused(rc, "two global shapes for one tensor", "layers/0/retention/wo",
			      "global shape");
		state_free(&t);
	}
	{
		struct ckpt_entry twice[NSPECS + 1];
		float *keep = s.e[1].exp_avg;

		memcpy(twice, s.e, sizeof(s.e[0]) * (size_t)s.n);
		twice[s.n] = s.e[0];
		rc = ckpt_save(dir, 2, twice, rank == last ? s.n + 1 : s.n, NULL, 0, &lvl1,
			       MPI_COMM_WORLD, true, err, sizeof(err));
		check_refused(rc, "a tensor listed twice by one rank", "embedding",
			      "listed twice");
		if (world > 1 && rank == last)
			s.e[1].exp_avg = NULL;
		if (world > 1) {
			rc = ckpt_save(dir, 2, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
				       sizeof(err));
			check_refused(rc, "one writer without exp_avg for a tensor",
				      "layers/0/retention/wq", "different groups");
		}
		s.e[1].exp_avg = keep;
	}
	if (rank == 0) {
		check0(!iter_exists(dir, 2) && !iter_exists(dir, 3) && latest_of(dir) == 1,
		       "refused saves wrote nothing; latest still 1");
		check0(!file_exists(sub("t3/iter_0000002.h5.tmp")), "no .tmp left behind");
	}
	state_free(&s);
}

/* ---- (4) damaged files and bad loads ------------------------------------- */

/* Rank 0: flip one byte in the middle of the first chunk of dataset `name`. */
static int flip_chunk_byte(const char *file, const char *name)
{
	hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT), d;
	hsize_t offset[2], size = 0;
	hid_t space = -1;
	haddr_t addr = 0;
	unsigned mask;
	unsigned char byte;
	int fd, rc = -1;

	if (f < 0)
		return -1;
	d = H5Dopen2(f, name, H5P_DEFAULT);
	if (d >= 0 && H5Dget_chunk_info(d, space = H5Dget_space(d), 0, offset, &mask, &addr,
					     &size) >= 0)
		rc = 0;
	if (space >= 0)
		H5Sclose(space);
	H5Dclose(d);
	H5Fclose(f);
	fd = open(file, O_RDWR);
	if (rc || fd < 0 || pread(fd, &byte, 1, (off_t)(addr + size / 2)) != 1)
		return -1;
	byte ^= 0x10;
	rc = pwrite(fd, &byte, 1, (off_t)(addr + size / 2)) == 1 ? 0 : -1;
	close(fd);
	return rc;
}

static void test_damage(void)
{
	const char *dir = sub("t4"), *dir2 = sub("t4_trunc");
	char file[1024];
	struct state s, l;
	struct ckpt_attr a[1];
	int rc, flipped = 0;

	state_make(&s, NATURAL, world, rank, 4, true);
	rc = ckpt_save(dir, 1, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	rc |= ckpt_save(dir2, 1, s.e, s.n, NULL, 0, &lvl1, MPI_COMM_WORLD, true, err,
			sizeof(err));
	check(rc == 0, "two good saves to damage");

	/* shape mismatch: wq loaded as 24 x 21 */
	state_make(&l, NATURAL, world, rank, -1, true);
	for (int i = 0; i < l.n; i++)
		if (!strcmp(l.e[i].slice.name, "layers/0/retention/wq") &&
		    layout_slice_init(&l.e[i].slice, "layers/0/retention/wq", 2, 24, 21, 1,
				      l.e[i].slice.start[1], 1))
			abort();
	rc = ckpt_load(dir, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, false, err, sizeof(err));
	check_refused(rc, "a global shape mismatch", "(24, 20)", "(24, 21)");
	state_free(&l);

	state_make(&l, NATURAL, world, rank, -1, true);
	if (rank == 0)
		snprintf(l.e[0].slice.name, sizeof(l.e[0].slice.name), "layers/9/missing");
	rc = ckpt_load(dir, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, false, err, sizeof(err));
	check_refused(rc, "a tensor not in the file", "layers/9/missing", "not in the checkpoint");
	state_free(&l);

	memset(a, 0, sizeof(a));
	snprintf(a[0].key, sizeof(a[0].key), "config/none");
	state_make(&l, NATURAL, world, rank, -1, false);
	rc = ckpt_load(dir, 1, l.e, l.n, a, 1, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "a missing attribute", "config/none", "missing");
	snprintf(a[0].key, sizeof(a[0].key), "format");
	rc = ckpt_load(dir, 1, l.e, l.n, a, 1, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "an attribute of another type", "format", "not an integer");
	rc = ckpt_load(dir, 8, l.e, l.n, NULL, 0, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "an iteration that was never saved", "iter_0000008.h5", "cannot open");
	state_free(&l);

	/* coverage on load: primary ranks that leave a hole, or skip a tensor */
	state_make(&l, NATURAL, world, rank, -1, false);
	rc = ckpt_load(dir, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, rank != world - 1, err,
		       sizeof(err));
	if (world > 1)
		check_refused(rc, "primary ranks with a hole", "primary ranks", "hole");
	state_free(&l);
	state_make(&l, NATURAL, world, rank, -1, false);
	for (int i = 0; i < l.n; i++)
		if (!strcmp(l.e[i].slice.name, "lm_head")) {
			free(l.e[i].model);
			l.e[i] = l.e[--l.n];
		}
	rc = ckpt_load(dir, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "a tensor no primary rank loads", "lm_head", "no primary rank");
	state_free(&l);

	/* a flipped byte in wq's first chunk: Fletcher32 */
	ckpt_path(file, sizeof(file), dir, 1);
	if (rank == 0)
		flipped = flip_chunk_byte(file, "/model/layers/0/retention/wq") == 0;
	MPI_Bcast(&flipped, 1, MPI_INT, 0, MPI_COMM_WORLD);
	check(flipped, "flipped a byte inside the first chunk (H5Dget_chunk_info)");
	state_make(&l, NATURAL, world, rank, -1, true);
	rc = ckpt_load(dir, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "a corrupted chunk", "layers/0/retention/wq", "Fletcher32");
	state_free(&l);
	if (rank == 0) {
		rc = ckpt_verify(file, NULL, err, sizeof(err));
		check0(rc == -1 && strstr(err, "/model/layers/0/retention/wq"),
		       "ckpt_verify finds the corrupted chunk");
		printf("     %s\n", err);
	}

	/* a truncated file: HDF5 compares the end of file with the superblock's */
	ckpt_path(file, sizeof(file), dir2, 1);
	if (rank == 0) {
		struct stat st;

		rc = stat(file, &st) == 0 ? truncate(file, st.st_size * 2 / 3) : -1;
	}
	MPI_Barrier(MPI_COMM_WORLD);
	state_make(&l, NATURAL, world, rank, -1, true);
	rc = ckpt_load(dir2, 1, l.e, l.n, NULL, 0, MPI_COMM_WORLD, true, err, sizeof(err));
	check_refused(rc, "a truncated file", "iter_0000001.h5", "truncated");
	state_free(&l);
	state_free(&s);

	/* the pointer */
	int64_t none;

	rc = ckpt_latest(sub("t4_none"), &none, err, sizeof(err));
	check(rc == -1 && strstr(err, "t4_none"), "no directory: %s", err);
	if (rank == 0) {
		int64_t it;
		FILE *f;

		mkdir(sub("t4_ptr"), 0755);
		rc = ckpt_latest(sub("t4_ptr"), &it, err, sizeof(err));
		check0(rc == -1 && strstr(err, "latest"), "no latest pointer: refused");
		printf("     %s\n", err);
		f = fopen(sub("t4_ptr/latest"), "w");
		fputs("5\n", f);
		fclose(f);
		rc = ckpt_latest(sub("t4_ptr"), &it, err, sizeof(err));
		check0(rc == -1 && strstr(err, "iter_0000005.h5"),
		       "latest names a missing file: refused");
		printf("     %s\n", err);
		f = fopen(sub("t4_ptr/latest"), "w");
		fputs("12a\n", f);
		fclose(f);
		rc = ckpt_latest(sub("t4_ptr"), &it, err, sizeof(err));
		check0(rc == -1, "latest holds no number: refused");
	}
}

/* ---- (5) keep_last and stale files ---------------------------------------- */

static bool present(const char *dir, const int64_t *want, int n, int64_t upto)
{
	for (int64_t it = 0; it <= upto; it++) {
		bool w = false;

		for (int k = 0; k < n; k++)
			w |= want[k] == it;
		if (iter_exists(dir, it) != w)
			return false;
	}
	return true;
}

static void test_keep_last(void)
{
	const char *dir = sub("t5");
	const struct ckpt_options keep2 = {1, 2}, keep1 = {1, 1}, keep0 = {1, 0};
	struct state s;
	int rc;
	bool ok = true;

	state_make(&s, NATURAL, world, rank, 5, false);
	for (int64_t it = 1; it <= 5; it++) {
		int64_t want[2] = {it, it - 1};

		rc = ckpt_save(dir, it, s.e, s.n, NULL, 0, &keep2, MPI_COMM_WORLD, true, err,
			       sizeof(err));
		if (rank == 0)
			ok &= rc == 0 && present(dir, want, it > 1 ? 2 : 1, 9) &&
			      latest_of(dir) == it;
	}
	if (rank == 0)
		check0(ok, "keep_last 2 over 5 saves: the two newest remain each time");

	/* a refused save prunes nothing */
	if (rank == 0)
		s.e[0].model[0] = 0.0f / 0.0f;
	rc = ckpt_save(dir, 6, s.e, s.n, NULL, 0, &keep1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check(rc == -1, "a refused save (NaN) with keep_last 1");
	if (rank == 0) {
		int64_t want[2] = {4, 5};

		check0(present(dir, want, 2, 9) && latest_of(dir) == 5,
		       "nothing pruned by a save that did not complete");
		s.e[0].model[0] = 0.5f;
		/* leftovers of a killed save */
		fclose(fopen(sub("t5/iter_0000009.h5.tmp"), "w"));
		fclose(fopen(sub("t5/latest.tmp"), "w"));
		check0(latest_of(dir) == 5, "stale .tmp files are ignored by ckpt_latest");
	}
	MPI_Barrier(MPI_COMM_WORLD);
	rc = ckpt_save(dir, 7, s.e, s.n, NULL, 0, &keep0, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	check(rc == 0, "save 7 with keep_last 0");
	if (rank == 0) {
		int64_t want[3] = {4, 5, 7};

		check0(present(dir, want, 3, 9), "keep_last 0 keeps everything");
		check0(!file_exists(sub("t5/iter_0000009.h5.tmp")) &&
		       !file_exists(sub("t5/latest.tmp")),
		       "the next save removed stale .tmp files");
	}
	rc = ckpt_save(dir, 3, s.e, s.n, NULL, 0, &keep1, MPI_COMM_WORLD, true, err,
		       sizeof(err));
	if (rank == 0) {
		int64_t want[4] = {3, 4, 5, 7};

		check0(rc == 0 && present(dir, want, 4, 9) && latest_of(dir) == 3,
		       "saving an older iteration (a resumed run) prunes none of the newer ones");
	}
	state_free(&s);
}

/* ---- driver --------------------------------------------------------------- */

static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char p[1024];

	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (unlink(p) < 0)
			remove_tree(p);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

int main(int argc, char **argv)
{
	int totals[2];

	mpi_setup_init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	if (rank != 0 && !freopen("/dev/null", "w", stdout))
		return 1;
	if (rank == 0) {
		snprintf(root, sizeof(root), "/tmp/rn_test_ckpt.XXXXXX");
		if (!mkdtemp(root))
			abort();
		printf("test_ckpt: %d ranks, in %s\n", world, root);
	}
	MPI_Bcast(root, sizeof(root), MPI_CHAR, 0, MPI_COMM_WORLD);

	test_round_trip();
	test_reshard();
	test_refused_saves();
	test_damage();
	test_keep_last();

	totals[0] = test_passed_count;
	totals[1] = test_failed_count;
	MPI_Allreduce(MPI_IN_PLACE, totals, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0) {
		if (totals[1] == 0 || !getenv("RN_KEEP_TMP"))
			remove_tree(root);
		printf("%d passed, %d failed\n", totals[0], totals[1]);
	}
	mpi_setup_finalize();
	return totals[1] ? 1 : 0;
}
