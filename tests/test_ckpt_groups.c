/* checkpoints/ckpt: named state groups, each with its own slices and owners, at 1, 2
 * and 4 ranks (the synthetic state of tests/ckpt_test.h). (1) The group lists:
 * ranks passing other groups or another order, a group given twice, one group
 * inside another, malformed or too long names, a dataset inside another: each
 * refused with one agreed line, nothing written. (2) A ZeRO-1 layout: the model
 * split by tensor-parallel columns and owned by the first data-parallel replica, the
 * AdamW moments further split by rows across the data-parallel ranks (rectangles
 * from layout_slice_rows), each rank the owner of its shard and tensors the TP group
 * replicates listed as replicas: it round-trips bit-identical, loads at other
 * layouts, a file of another layout loads into it, and an overlap or a hole in a
 * moment group is refused naming the dataset and the ranks. (3) Coverage on load:
 * an owned group with more datasets in the file than its owners load is refused; the
 * same group owned by nobody, or not passed at all, loads; a group the file does not
 * have is a missing dataset. (4) A uint16 group (a tokenizer's merge table: ids,
 * written by rank 0 alone, read by every rank) beside the float model, saved
 * synchronously and in the background: the ids load back exactly on every rank and
 * ckpt_verify passes; a dataset read as the other element type, and ranks
 * disagreeing on a group's dtype, are refused. Every check is agreed by all ranks;
 * rank 0 prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoints/ckpt_async.h"
#include "tests/ckpt_test.h"

static const struct ckpt_options lvl1 = {1, 0};

/* ---- (1) group lists ------------------------------------------------------ */

static void test_group_lists(void)
{
	const char *dir = sub("g1");
	struct state s, l;
	struct ckpt_group keep;
	int rc, last = world - 1;

	state_make(&s, NATURAL, world, rank, 1, true);
	rc = state_save(&s, dir, 1, NULL, 0, &lvl1, true);
	check(rc == 0, "a good save first%s%s", rc ? ": " : "", rc ? err : "");

	if (world > 1) {
		/* the last rank swaps the two moments */
		if (rank == last) {
			keep = s.g[1];
			s.g[1] = s.g[2];
			s.g[2] = keep;
		}
		rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
		check_refused(rc, "the last rank passing the groups in another order",
			      "disagree on the state groups of the save", "same order");
		state_make(&l, NATURAL, world, rank, -1, true);
		if (rank == last) {
			keep = l.g[1];
			l.g[1] = l.g[2];
			l.g[2] = keep;
		}
		rc = state_load(&l, dir, 1, NULL, 0, true);
		check_refused(rc, "the same on load", "disagree on the state groups of the load",
			      NULL);
		state_free(&l);
		state_free(&s);
		state_make(&s, NATURAL, world, rank, 1, true);
		if (rank == last)
			s.ng = 2;
		rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
		check_refused(rc, "the last rank passing two of the three groups",
			      "disagree on the state groups", NULL);
		s.ng = NGROUPS;
	}

	snprintf(s.g[2].name, sizeof(s.g[2].name), "optimizer/exp_avg");
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "a group given twice", "group optimizer/exp_avg: given twice", NULL);
	snprintf(s.g[2].name, sizeof(s.g[2].name), "optimizer");
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "one group inside another",
		      "groups optimizer/exp_avg and optimizer: one inside the other", NULL);
	snprintf(s.g[2].name, sizeof(s.g[2].name), "optimizer//exp_avg_sq");
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "a malformed group name", "group \"optimizer//exp_avg_sq\"",
		      "segments");
	memset(s.g[2].name, 'x', sizeof(s.g[2].name));
	rc = state_save(&s, dir, 2, NULL, 0, &lvl1, true);
	check_refused(rc, "a group name of 64 characters (no NUL)", "xxxxxxxx",
		      "shorter than 64 bytes");
	snprintf(s.g[2].name, sizeof(s.g[2].name), "%s", group_names[2]);

	/* the longest names: 63 + 63 characters, a dataset path of 129 bytes */
	{
		struct ckpt_group one = s.g[0];
		struct ckpt_slice x;
		struct layout_slice sl;
		char name[64];

		memset(name, 'n', 63);
		name[63] = '\0';
		memset(one.name, 'g', 63);
		one.name[63] = '\0';
		if (layout_slice_init(&sl, name, 1, 2, 1, -1, 0, 0))
			abort();
		slice_fill(&x, &sl, 0, 1);
		one.slices = &x;
		one.n = rank == 0;
		one.owner = true;
		rc = ckpt_save(dir, 3, &one, 1, NULL, 0, &lvl1, MPI_COMM_WORLD, err, sizeof(err));
		check(rc == 0, "a group and a tensor of 63 characters each%s%s", rc ? ": " : "",
		      rc ? err : "");
		memset(x.data, 0, 2 * sizeof(float));
		rc = ckpt_load(dir, 3, &one, 1, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
		check(rc == 0 && (rank != 0 || x.data[1] == value_at(name, 0, 1, 1, 0, 1)),
		      "... load back%s%s", rc ? ": " : "", rc ? err : "");
		free(x.data);
	}

	/* the last rank lists a tensor at a path the dataset embedding already takes */
	{
		struct layout_slice sl;

		if (layout_slice_init(&sl, "embedding/x", 1, 3, 1, -1, 0, 0))
			abort();
		slice_fill(&s.s[0][s.made], &sl, 0, 1);
		if (rank == last)
			s.g[0].n++;
		rc = state_save(&s, dir, 4, NULL, 0, &lvl1, true);
		check_refused(rc, "a dataset inside another",
			      "/model/embedding/x", "inside dataset /model/embedding");
		s.g[0].n = s.made;
		free(s.s[0][s.made].data);
	}
	if (rank == 0)
		check0(!iter_exists(dir, 2) && !iter_exists(dir, 4) && latest_of(dir) == 3,
		       "refused saves wrote nothing");
	state_free(&s);
}

/* ---- (2) ZeRO-1 ----------------------------------------------------------- */

struct grid2 {
	int tp, dp, tp_rank, dp_rank;
};

static struct grid2 grid2_of(void)
{
	struct grid2 g;

	g.tp = world % 2 == 0 ? world / 2 : world;
	g.dp = world / g.tp;
	g.tp_rank = rank % g.tp;
	g.dp_rank = rank / g.tp;
	return g;
}

/*
 * This rank's state in a ZeRO-1 layout: the model by TP (its natural splits; a
 * tensor the TP group replicates is listed by every TP rank, a replica on all but
 * the first) owned by DP rank 0, whose copies hold model_version and the others 99;
 * the moments are rows of those TP slices split evenly across the DP ranks, each
 * rank owning its shard. version < 0: zeroed, to load into.
 */
static void zero1_make(struct state *st, const struct grid2 *g, int version)
{
	int n0 = 0, n1 = 0;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NSPECS; i++) {
		const struct spec *sp = &specs[i];
		bool replicated = sp->natural < 0;
		int dim = sp->natural;
		int64_t start = 0, len = 0, first, count;
		struct layout_slice sl, shard;

		if (dim >= 0)
			layout_even_range(dim == 0 ? sp->rows : sp->cols, g->tp, g->tp_rank, &start,
					  &len);
		if (layout_slice_init(&sl, sp->name, sp->ndim, sp->rows, sp->cols, dim, start, len))
			abort();
		slice_fill(&st->s[0][n0], &sl, 0,
			   version < 0 ? -1 : g->dp_rank == 0 ? version : 99);
		st->s[0][n0++].replica = replicated && g->tp_rank != 0;

		layout_even_range(sl.shape[0], g->dp, g->dp_rank, &first, &count);
		if (count == 0)
			continue;
		if (layout_slice_rows(&shard, &sl, first, count))
			abort();
		for (int k = 1; k < NGROUPS; k++) {
			slice_fill(&st->s[k][n1], &shard, k, version);
			st->s[k][n1].replica = replicated && g->tp_rank != 0;
		}
		n1++;
	}
	st->made = n0 > n1 ? n0 : n1;
	state_groups(st, NGROUPS, n1);
	st->g[0].n = n0;
	st->g[0].owner = g->dp_rank == 0;
}

static void zero1_owners(struct state *st, const struct grid2 *g)
{
	st->g[0].owner = g->dp_rank == 0;
	st->g[1].owner = st->g[2].owner = true;
}

static void test_zero1(void)
{
	const struct grid2 g = grid2_of();
	const char *dir = sub("g2"), *plain = sub("g2_plain");
	struct state s, l;
	int rc, last = world - 1;

	zero1_make(&s, &g, 6);
	rc = ckpt_save(dir, 1, s.g, NGROUPS, NULL, 0, &lvl1, MPI_COMM_WORLD, err, sizeof(err));
	check(rc == 0, "ZeRO-1 at TP=%d x DP=%d: save (moments sharded by rows over DP)%s%s",
	      g.tp, g.dp, rc ? ": " : "", rc ? err : "");

	zero1_make(&l, &g, -1);
	rc = ckpt_load(dir, 1, l.g, NGROUPS, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
	check(rc == 0 && state_diff(&l, 6, "ZeRO-1 -> ZeRO-1") == 0,
	      "ZeRO-1: loaded at the same layout, every value bit-identical (DP copies of "
	      "the model too)%s%s", rc ? ": " : "", rc ? err : "");
	state_free(&l);

	struct {
		enum mode mode;
		int parts, idx;
		bool owner;
		const char *what;
	} loads[] = {
		{WHOLE, 1, 0, rank == 0, "every rank the whole tensors"},
		{COLS, world, rank, true, "every group split by columns over all ranks"},
	};
	for (size_t k = 0; k < sizeof(loads) / sizeof(loads[0]); k++) {
		state_make(&l, loads[k].mode, loads[k].parts, loads[k].idx, -1, true);
		rc = state_load(&l, dir, 1, NULL, 0, loads[k].owner);
		check(rc == 0 && state_diff(&l, 6, loads[k].what) == 0,
		      "ZeRO-1 file loaded with %s: the right values%s%s", loads[k].what,
		      rc ? ": " : "", rc ? err : "");
		state_free(&l);
	}

	/* the other way: a file of another layout into the ZeRO-1 shards */
	state_make(&l, NATURAL, world, rank, 7, true);
	rc = state_save(&l, plain, 1, NULL, 0, &lvl1, true);
	state_free(&l);
	zero1_make(&l, &g, -1);
	if (!rc)
		rc = ckpt_load(plain, 1, l.g, NGROUPS, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
	check(rc == 0 && state_diff(&l, 7, "plain -> ZeRO-1") == 0,
	      "a file split over all ranks loaded into the ZeRO-1 shards%s%s", rc ? ": " : "",
	      rc ? err : "");
	state_free(&l);

	/* the last rank's shard of wq's exp_avg one row up: it overlaps the shard of the
	 * DP rank before it, in the same TP column slice */
	if (g.dp > 1) {
		char ranks[64];
		int i = 1; /* wq, the second tensor in every rank's list */

		if (rank == last) {
			s.s[1][i].slice.start[0]--;
			s.s[1][i].slice.shape[0]++;
		}
		snprintf(ranks, sizeof(ranks), "ranks %d and %d overlap", last - g.tp, last);
		rc = ckpt_save(dir, 2, s.g, NGROUPS, NULL, 0, &lvl1, MPI_COMM_WORLD, err,
			       sizeof(err));
		check_refused(rc, "ZeRO-1: two DP shards of a moment overlapping",
			      "dataset /optimizer/exp_avg/layers/0/retention/wq", ranks);
		if (rank == last) {
			s.s[1][i].slice.start[0]++;
			s.s[1][i].slice.shape[0]--;
		}
	}
	/* the last rank not owning its moment shards: a hole in the first of them */
	s.g[1].owner = rank != last;
	rc = ckpt_save(dir, 2, s.g, NGROUPS, NULL, 0, &lvl1, MPI_COMM_WORLD, err, sizeof(err));
	check_refused(rc, "ZeRO-1: a DP rank not owning its moment shards",
		      "dataset /optimizer/exp_avg/embedding", "hole");
	zero1_owners(&s, &g);
	if (rank == 0)
		check0(!iter_exists(dir, 2) && latest_of(dir) == 1,
		       "ZeRO-1: the refused saves wrote nothing");
	state_free(&s);
}

/* ---- (3) coverage on load ------------------------------------------------- */

static void test_coverage(void)
{
	const char *dir = sub("g3");
	struct state s, l;
	int rc;

	state_make(&s, NATURAL, world, rank, 8, true);
	rc = state_save(&s, dir, 1, NULL, 0, &lvl1, true);
	check(rc == 0, "a save of all three groups%s%s", rc ? ": " : "", rc ? err : "");
	state_free(&s);

	/* model and exp_avg, lm_head left out of exp_avg (rank 0 alone lists it) */
	state_make(&l, NATURAL, world, rank, -1, true);
	l.ng = 2;
	for (int i = 0; i < l.g[1].n; i++)
		if (!strcmp(l.s[1][i].slice.name, "lm_head")) {
			struct ckpt_slice t = l.s[1][i];

			l.s[1][i] = l.s[1][l.g[1].n - 1];
			l.s[1][--l.g[1].n] = t;
		}
	rc = state_load(&l, dir, 1, NULL, 0, true);
	check_refused(rc, "an owned group with a dataset in the file its owners do not load",
		      "tensor lm_head: /optimizer/exp_avg/lm_head is in the checkpoint",
		      "no owner of group optimizer/exp_avg loads it");
	l.g[1].owner = false;
	rc = ckpt_load(dir, 1, l.g, l.ng, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
	check(rc == 0 && state_diff(&l, 8, "exp_avg owned by nobody") == 0,
	      "the same group owned by nobody: read without the coverage checks%s%s",
	      rc ? ": " : "", rc ? err : "");
	state_free(&l);

	state_make(&l, NATURAL, world, rank, -1, false);
	rc = state_load(&l, dir, 1, NULL, 0, true);
	check(rc == 0 && state_diff(&l, 8, "the model alone") == 0,
	      "the model alone, owned: the file's other groups are not looked at%s%s",
	      rc ? ": " : "", rc ? err : "");
	snprintf(l.g[0].name, sizeof(l.g[0].name), "ema");
	rc = state_load(&l, dir, 1, NULL, 0, true);
	check_refused(rc, "a group the file does not have", "tensor embedding: not in the "
		      "checkpoint (no /ema/embedding)", NULL);
	state_free(&l);
}

/* ---- (4) a uint16 group ------------------------------------------------- */

#define TABLE_ROWS 700 /* (rows, 2) ids, as a merge table of 700 merges */

/* groups[0]: the model (this rank's slices of st); groups[1]: "tokenizer", a uint16
 * (TABLE_ROWS, 2) table "merges" in ids, owned (and, saving, listed) by rank 0 only. */
static void table_groups(struct ckpt_group g[2], struct ckpt_slice *t, uint16_t *ids,
			 struct state *st, bool saving)
{
	struct layout_slice sl;

	if (layout_slice_init(&sl, "merges", 2, TABLE_ROWS, 2, -1, 0, 0))
		abort();
	memset(t, 0, sizeof(*t));
	t->slice = sl;
	t->u16 = ids;
	g[0] = st->g[0];
	memset(&g[1], 0, sizeof(g[1]));
	snprintf(g[1].name, sizeof(g[1].name), "tokenizer");
	g[1].dtype = CKPT_UINT16;
	g[1].slices = t;
	g[1].n = !saving || rank == 0;
	g[1].owner = rank == 0;
}

static uint16_t id_at(int k)
{
	return (uint16_t)(k * 40503u + 7u); /* every bit pattern class, 65535 included */
}

static void test_uint16(void)
{
	const char *dir = sub("g4");
	struct state s, l;
	struct ckpt_group g[2];
	struct ckpt_slice t;
	uint16_t *ids = xcalloc(2 * TABLE_ROWS, sizeof(uint16_t));
	int rc, bad = 0;

	for (int k = 0; k < 2 * TABLE_ROWS; k++)
		ids[k] = rank == 0 ? id_at(k) : 0xdead; /* only rank 0's are written */
	ids[3] = 65535;
	state_make(&s, NATURAL, world, rank, 5, false);
	table_groups(g, &t, ids, &s, true);
	rc = ckpt_save(dir, 1, g, 2, NULL, 0, &lvl1, MPI_COMM_WORLD, err, sizeof(err));
	check(rc == 0, "a uint16 table written by rank 0 beside the model%s%s", rc ? ": " : "",
	      rc ? err : "");
	if (mpi_setup_threads_multiple()) {
		struct ckpt_async *a = ckpt_async_create(MPI_COMM_WORLD);

		rc = ckpt_async_start(a, dir, 2, g, 2, NULL, 0, &lvl1, err, sizeof(err));
		memset(ids, 0, 2 * TABLE_ROWS * sizeof(uint16_t)); /* the copy is written */
		if (!rc)
			rc = ckpt_async_wait(a, NULL, err, sizeof(err));
		ckpt_async_destroy(a);
		check(rc == 0, "... and in the background%s%s", rc ? ": " : "", rc ? err : "");
	}
	state_free(&s);

	for (int it = 1; it <= (mpi_setup_threads_multiple() ? 2 : 1); it++) {
		state_make(&l, NATURAL, world, rank, -1, false);
		memset(ids, 0, 2 * TABLE_ROWS * sizeof(uint16_t));
		table_groups(g, &t, ids, &l, false);
		rc = ckpt_load(dir, it, g, 2, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
		for (int k = 0; k < 2 * TABLE_ROWS; k++)
			bad += ids[k] != (k == 3 ? 65535 : id_at(k));
		check(rc == 0 && bad == 0 && state_diff(&l, 5, "model beside ids") == 0,
		      "iteration %d: every rank reads the ids exactly (%d differ)%s%s", it, bad,
		      rc ? ": " : "", rc ? err : "");
		state_free(&l);
	}
	if (rank == 0) {
		char path[600];
		struct ckpt_verify_info info;

		ckpt_path(path, sizeof(path), dir, 1);
		rc = ckpt_verify(path, &info, err, sizeof(err));
		check0(rc == 0 && info.values >= 2 * TABLE_ROWS,
		       "ckpt_verify reads the uint16 dataset with the float32 ones");
	}

	/* the ids read as floats, and the model's floats read as ids */
	state_make(&l, NATURAL, world, rank, -1, false);
	table_groups(g, &t, ids, &l, false);
	g[1].dtype = CKPT_FLOAT32;
	rc = ckpt_load(dir, 1, g, 2, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
	check_refused(rc, "a uint16 dataset read as float32",
		      "tensor merges: /tokenizer/merges is uint16 (700, 2), the slice expects "
		      "float32 (700, 2)", NULL);
	g[1].dtype = CKPT_UINT16;
	g[0].dtype = CKPT_UINT16;
	rc = ckpt_load(dir, 1, g, 2, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
	check_refused(rc, "a float32 dataset read as uint16", "/model/", "is float32");
	g[0].dtype = CKPT_FLOAT32;
	if (world > 1) {
		if (rank == world - 1)
			g[1].dtype = CKPT_FLOAT32;
		rc = ckpt_load(dir, 1, g, 2, NULL, 0, MPI_COMM_WORLD, err, sizeof(err));
		check_refused(rc, "ranks disagreeing on a group's dtype",
			      "disagree on the state groups of the load", "dtypes");
	}
	state_free(&l);
	free(ids);
}

int main(int argc, char **argv)
{
	ckpt_test_begin(&argc, &argv, "test_ckpt_groups");
	test_group_lists();
	test_zero1();
	test_coverage();
	test_uint16();
	return ckpt_test_end();
}
