/* checkpoints/ckpt: save and load over MPI at 1, 2 and 4 ranks, with the trainer's
 * three state groups (tests/ckpt_test.h: tensors split by rows, by columns and
 * replicated, values a pure function of name, group, global index and a version
 * number, so any layout knows what it must read): (1) a round trip at one layout is
 * bit-identical, attributes included; (2) a save where data-parallel copies own
 * nothing (and hold DIFFERENT values, so a copy that wrote would show) loads at other
 * layouts, and save A -> load B -> save B gives the same datasets; (3) overlapping or
 * holed layouts (an owner leaving out its slice of one group included), a tensor
 * listed twice and non-finite values are refused, leaving the directory untouched;
 * (4) a flipped byte in a chunk, a truncated file, a shape mismatch, missing
 * datasets/attributes/pointers, owners that do not cover the file are errors naming
 * what is wrong; (5) keep_last prunes only after a complete save, and stale .tmp
 * files are ignored then removed. Every check is agreed by all ranks; rank 0
 * prints. Named groups sharded their own way: test_ckpt_groups.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "tests/ckpt_test.h"

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
		rc = state_save(&a, dir, 100, at, 3, &opt, true);
		check(rc == 0, "save, rows/cols/replicated over %d ranks, level %d%s%s", world,
		      level, rc ? ": " : "", rc ? err : "");
		state_make(&b, NATURAL, world, rank, -1, true);
		make_attrs(got, 0);
		rc = state_load(&b, dir, 100, got, 4, true);
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
	rc = state_save(&s, a_dir, 7, at, 3, &lvl1, dp_rank == 0);
	check(rc == 0, "save at TP=%d x DP=%d (replicas do not write)%s%s", tp, dp,
	      rc ? ": " : "", rc ? err : "");
	state_free(&s);

	struct {
		enum mode mode;
		int parts, idx;
		bool owner;
		const char *what;
	} loads[] = {
		{WHOLE, 1, 0, rank == 0, "every rank the whole tensors"},
		{COLS, world, rank, true, "split by columns over all ranks"},
		{NATURAL, 2, rank % 2, rank < 2, "split 2 ways (rows/cols as saved)"},
		{COLS, 3, rank % 3, rank < 3, "split 3 ways by columns (uneven)"},
	};
	for (size_t k = 0; k < sizeof(loads) / sizeof(loads[0]); k++) {
		state_make(&l, loads[k].mode, loads[k].parts, loads[k].idx, -1, true);
		rc = state_load(&l, a_dir, 7, NULL, 0, loads[k].owner && world >= loads[k].parts);
		check(rc == 0 && state_diff(&l, 2, loads[k].what) == 0,
		      "saved at TP=%d x DP=%d, loaded %s: the right values%s%s", tp, dp,
		      loads[k].what, rc ? ": " : "", rc ? err : "");
		state_free(&l);
	}

	/* save at A, load at B (columns over all ranks), save at B: the same datasets */
	state_make(&l, COLS, world, rank, -1, true);
	make_attrs(got, 0);
	rc = state_load(&l, a_dir, 7, got, 3, true);
	if (rc == 0)
		rc = state_save(&l, b_dir, 7, got, 3, &lvl1, true);
	check(rc == 0, "load at B and save again%s%s", rc ? ": " : "", rc ? err : "");
	state_free(&l);
	{
		struct state x, y;
		bool same = true;

		state_make(&x, WHOLE, 1, 0, -1, true);
		state_make(&y, WHOLE, 1, 0, -1, true);
		rc = state_load(&x, a_dir, 7, at, 3, rank == 0);
		rc |= state_load(&y, b_dir, 7, got, 3, rank == 0);
		for (int i = 0; i < x.made; i++)
			for (int g = 0; g < NGROUPS; g++)
				same &= !memcmp(x.s[g][i].data, y.s[g][i].data,
						layout_slice_numel(&x.s[g][i].slice) * sizeof(float));
		same &= at[0].i == got[0].i && at[1].f == got[1].f && !strcmp(at[2].s, got[2].s);
		check(rc == 0 && same, "save A -> load B -> save B: datasets and attributes "
		      "identical (read back whole)");
		state_free(&x);
		state_free(&y);
	}
}

/* ---- (3) refused saves ---------------------------------------------------- */

/* Moves the first row of slice i by dstart and grows it by dshape rows, in every
 * group (they share one layout). */
static void move_rows(struct state *st, int i, int64_t dstart, int64_t dshape)
{
	for (int g = 0; g < NGROUPS; g++) {
		st->s[g][i].slice.start[0] += dstart;
		st->s[g][i].slice.shape[0] += dshape;
	}
}

static void test_refused_saves(void)
{
	const char *dir = sub("t3");
	struct state s;
	int rc, last = world - 1;

	state_make(&s, NATURAL, world, rank, 3, true);
	rc = state_save(&s, dir, 1, NULL, 0, &lvl1, true);
	check(rc == 0, "a good save first");

	/* embedding is split by rows: widen or shrink the last rank's range */
	if (world > 1 && rank == last)
		move_rows(&s, 0, -1, 1);
	if (world > 1) {
		rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
		check_refused(rc, "overlapping rows", "embedding", "overlap");
	}
	if (world > 1 && rank == last)
		move_rows(&s, 0, 1, -1);
	if (rank == last)
		move_rows(&s, 0, 0, -1);
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "a hole (one row missing)", "embedding", "hole");
	if (rank == last)
		move_rows(&s, 0, 0, 1);
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, rank != last);
	check_refused(rc, "the last rank owns nothing (and is no replica)", "hole", NULL);

	if (rank == last)
		s.s[1][1].data[3] = 0.0f / 0.0f;
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "a NaN", "/optimizer/exp_avg/layers/0/retention/wq", "non-finite");
	if (rank == last) {
		s.s[1][1].data[3] = 0.5f;
		s.s[0][0].data[0] = 1.0f / 0.0f;
	}
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "an infinity", "/model/embedding", "non-finite");
	if (rank == last)
		s.s[0][0].data[0] = 0.25f;

	{
		struct ckpt_attr a[1] = {{.key = "iteration", .type = CKPT_I64}};

		rc = state_save(&s, dir, 2, a, 1, &lvl1, true);
		check_refused(rc, "a reserved attribute key", "iteration", "reserved");
		snprintf(a[0].key, sizeof(a[0].key), "config//x");
		rc = state_save(&s, dir, 2, a, 1, &lvl1, true);
		check_refused(rc, "a malformed key", "config//x", NULL);
	}
	if (world > 1) {
		struct state t;

		rc = state_save(&s, dir, rank == last ? 3 : 2, NULL, 0, &lvl1, true);
		check_refused(rc, "ranks passing different iterations", "disagree", NULL);

		state_make(&t, NATURAL, world, rank, 3, true);
		/* wo is split by rows: the last rank claims 25 columns (its buffer is not
		 * read: the layout is refused before any value is looked at) */
		for (int g = 0; rank == last && g < NGROUPS; g++)
			t.s[g][2].slice.global_shape[1] = t.s[g][2].slice.shape[1] = 25;
		rc = state_save(&t, dir, 2, NULL, 0, &lvl1, true);
		check_refused(rc, "two global shapes for one tensor", "layers/0/retention/wo",
			      "global shape");
		state_free(&t);
	}
	{
		/* the room state_make leaves after the last slice; its data is not read */
		struct ckpt_slice without[NSPECS];

		if (rank == last) {
			s.s[0][s.made] = s.s[0][0];
			s.g[0].n++;
		}
		rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
		check_refused(rc, "a tensor listed twice by one rank", "/model/embedding",
			      "listed twice");
		s.g[0].n = s.made;

		/* an owner leaving out its slice of one group: a hole in that group (on
		 * one rank, a tensor nobody lists is just not in the group) */
		memcpy(without, s.s[1], sizeof(without));
		without[1] = without[s.made - 1];
		if (world > 1 && rank == last) {
			s.g[1].slices = without;
			s.g[1].n = s.made - 1;
		}
		if (world > 1) {
			rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
			check_refused(rc, "an owner without its exp_avg slice of a tensor",
				      "/optimizer/exp_avg/layers/0/retention/wq", "hole");
		}
		s.g[1].slices = s.s[1];
		s.g[1].n = s.made;
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
	rc = state_save(&s, dir, 1, NULL, 0, &lvl1, true);
	rc |= state_save(&s, dir2, 1, NULL, 0, &lvl1, true);
	check(rc == 0, "two good saves to damage");

	/* shape mismatch: wq loaded as 24 x 21 */
	state_make(&l, NATURAL, world, rank, -1, true);
	for (int g = 0; g < NGROUPS; g++)
		for (int i = 0; i < l.made; i++)
			if (!strcmp(l.s[g][i].slice.name, "layers/0/retention/wq") &&
			    layout_slice_init(&l.s[g][i].slice, "layers/0/retention/wq", 2, 24, 21,
					      1, l.s[g][i].slice.start[1], 1))
				abort();
	rc = state_load(&l, dir, 1, NULL, 0, false);
	check_refused(rc, "a global shape mismatch", "(24, 20)", "(24, 21)");
	state_free(&l);

	state_make(&l, NATURAL, world, rank, -1, true);
	for (int g = 0; rank == 0 && g < NGROUPS; g++)
		snprintf(l.s[g][0].slice.name, sizeof(l.s[g][0].slice.name), "layers/9/missing");
	rc = state_load(&l, dir, 1, NULL, 0, false);
	check_refused(rc, "a tensor not in the file", "layers/9/missing", "not in the checkpoint");
	state_free(&l);

	memset(a, 0, sizeof(a));
	snprintf(a[0].key, sizeof(a[0].key), "config/none");
	state_make(&l, NATURAL, world, rank, -1, false);
	rc = state_load(&l, dir, 1, a, 1, true);
	check_refused(rc, "a missing attribute", "config/none", "missing");
	/* one older files lack: its value is kept and it says so */
	a[0].optional = true;
	a[0].i = 42;
	rc = state_load(&l, dir, 1, a, 1, true);
	check(rc == 0 && a[0].missing && a[0].i == 42, "an optional attribute the file lacks "
	      "keeps its value (rc %d, missing %d, value %lld)", rc, a[0].missing,
	      (long long)a[0].i);
	memset(a, 0, sizeof(a));
	snprintf(a[0].key, sizeof(a[0].key), "format");
	rc = state_load(&l, dir, 1, a, 1, true);
	check_refused(rc, "an attribute of another type", "format", "not an integer");
	rc = state_load(&l, dir, 8, NULL, 0, true);
	check_refused(rc, "an iteration that was never saved", "iter_0000008.h5", "cannot open");
	state_free(&l);

	/* coverage on load: owners that leave a hole, or skip a tensor */
	state_make(&l, NATURAL, world, rank, -1, false);
	rc = state_load(&l, dir, 1, NULL, 0, rank != world - 1);
	if (world > 1)
		check_refused(rc, "owners with a hole", "owners", "hole");
	state_free(&l);
	state_make(&l, NATURAL, world, rank, -1, false);
	for (int i = 0; i < l.g[0].n; i++)
		if (!strcmp(l.s[0][i].slice.name, "lm_head")) {
			struct ckpt_slice t = l.s[0][i];

			l.s[0][i] = l.s[0][l.g[0].n - 1];
			l.s[0][--l.g[0].n] = t;
		}
	rc = state_load(&l, dir, 1, NULL, 0, true);
	check_refused(rc, "a tensor no owner loads", "/model/lm_head", "no owner of group model");
	state_free(&l);

	/* a flipped byte in wq's first chunk: Fletcher32 */
	ckpt_path(file, sizeof(file), dir, 1);
	if (rank == 0)
		flipped = flip_chunk_byte(file, "/model/layers/0/retention/wq") == 0;
	MPI_Bcast(&flipped, 1, MPI_INT, 0, MPI_COMM_WORLD);
	check(flipped, "flipped a byte inside the first chunk (H5Dget_chunk_info)");
	state_make(&l, NATURAL, world, rank, -1, true);
	rc = state_load(&l, dir, 1, NULL, 0, true);
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
	rc = state_load(&l, dir2, 1, NULL, 0, true);
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

		rc = state_save(&s, dir, it, NULL, 0, &keep2, true);
		if (rank == 0)
			ok &= rc == 0 && present(dir, want, it > 1 ? 2 : 1, 9) &&
			      latest_of(dir) == it;
	}
	if (rank == 0)
		check0(ok, "keep_last 2 over 5 saves: the two newest remain each time");

	/* a refused save prunes nothing */
	if (rank == 0)
		s.s[0][0].data[0] = 0.0f / 0.0f;
	rc = state_save(&s, dir, 6, NULL, 0, &keep1, true);
	check(rc == -1, "a refused save (NaN) with keep_last 1");
	if (rank == 0) {
		int64_t want[2] = {4, 5};

		check0(present(dir, want, 2, 9) && latest_of(dir) == 5,
		       "nothing pruned by a save that did not complete");
		s.s[0][0].data[0] = 0.5f;
		/* leftovers of a killed save */
		fclose(fopen(sub("t5/iter_0000009.h5.tmp"), "w"));
		fclose(fopen(sub("t5/latest.tmp"), "w"));
		check0(latest_of(dir) == 5, "stale .tmp files are ignored by ckpt_latest");
	}
	MPI_Barrier(MPI_COMM_WORLD);
	rc = state_save(&s, dir, 7, NULL, 0, &keep0, true);
	check(rc == 0, "save 7 with keep_last 0");
	if (rank == 0) {
		int64_t want[3] = {4, 5, 7};

		check0(present(dir, want, 3, 9), "keep_last 0 keeps everything");
		check0(!file_exists(sub("t5/iter_0000009.h5.tmp")) &&
		       !file_exists(sub("t5/latest.tmp")),
		       "the next save removed stale .tmp files");
	}
	rc = state_save(&s, dir, 3, NULL, 0, &keep1, true);
	if (rank == 0) {
		int64_t want[4] = {3, 4, 5, 7};

		check0(rc == 0 && present(dir, want, 4, 9) && latest_of(dir) == 3,
		       "saving an older iteration (a resumed run) prunes none of the newer ones");
	}
	state_free(&s);
}

/* ---- driver --------------------------------------------------------------- */

int main(int argc, char **argv)
{
	ckpt_test_begin(&argc, &argv, "test_ckpt");
	test_round_trip();
	test_reshard();
	test_refused_saves();
	test_damage();
	test_keep_last();
	return ckpt_test_end();
}
