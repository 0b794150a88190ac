/*
 * checkpoints/layout without MPI: the slices layout_slice_init makes (whole, a row
 * range, a column range) and refuses; layout_slice_rows (a range of rows of a
 * block, as a rectangle of the same global tensor), composed with itself and on
 * 1-D tensors, and its refusals; and that the even row shards of a column slice
 * tile that slice exactly once, which is what a ZeRO-1 optimizer's shards rely on.
 */
#include <stdbool.h>
#include <string.h>

#include "checkpoints/layout.h"
#include "tests/harness.h"

/* Does s sit at (r0, c0) with local shape (rows, cols) in a (gr, gc) tensor? */
static bool is_block(const struct layout_slice *s, int64_t gr, int64_t gc, int64_t r0,
		     int64_t c0, int64_t rows, int64_t cols)
{
	uint64_t start[2], count[2];

	layout_slice_hyperslab(s, start, count);
	return s->global_shape[0] == gr && s->global_shape[1] == gc && s->start[0] == r0 &&
	       s->start[1] == c0 && s->shape[0] == rows && s->shape[1] == cols &&
	       start[0] == (uint64_t)r0 && start[1] == (uint64_t)c0 &&
	       count[0] == (uint64_t)rows && count[1] == (uint64_t)cols &&
	       layout_slice_numel(s) == (size_t)(rows * cols);
}

#define EXPECT_BLOCK(s, gr, gc, r0, c0, rows, cols, label)                              \
	EXPECT_TRUE(is_block(s, gr, gc, r0, c0, rows, cols),                            \
		    "%s: got global (%lld, %lld) start (%lld, %lld) shape (%lld, %lld), "  \
		    "want (%lld, %lld) (%lld, %lld) (%lld, %lld)", label,                   \
		    (long long)(s)->global_shape[0], (long long)(s)->global_shape[1],       \
		    (long long)(s)->start[0], (long long)(s)->start[1],                     \
		    (long long)(s)->shape[0], (long long)(s)->shape[1], (long long)(gr),    \
		    (long long)(gc), (long long)(r0), (long long)(c0), (long long)(rows),   \
		    (long long)(cols))

static void test_init(void)
{
	struct layout_slice s;

	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, -1, 0, 0) == 0, "whole: refused");
	EXPECT_BLOCK(&s, 24, 20, 0, 0, 24, 20, "whole");
	EXPECT_TRUE(!strcmp(s.name, "w") && s.ndim == 2, "whole: name \"%s\", ndim %d", s.name,
		    s.ndim);
	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, 0, 7, 5) == 0, "rows: refused");
	EXPECT_BLOCK(&s, 24, 20, 7, 0, 5, 20, "rows 7+5");
	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, 1, 10, 10) == 0, "cols: refused");
	EXPECT_BLOCK(&s, 24, 20, 0, 10, 24, 10, "cols 10+10");
	EXPECT_TRUE(layout_slice_init(&s, "b", 1, 30, 99, 0, 15, 15) == 0, "1-D: refused");
	EXPECT_BLOCK(&s, 30, 1, 15, 0, 15, 1, "1-D elements 15+15 (cols ignored)");

	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, 1, 15, 6) == -1, "cols 15+6 of 20");
	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, 0, -1, 2) == -1, "rows -1+2");
	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 24, 20, 0, 3, 0) == -1, "rows 3+0");
	EXPECT_TRUE(layout_slice_init(&s, "b", 1, 30, 1, 1, 0, 1) == -1, "1-D split by cols");
	EXPECT_TRUE(layout_slice_init(&s, "w", 3, 2, 2, -1, 0, 0) == -1, "ndim 3");
	EXPECT_TRUE(layout_slice_init(&s, "w", 2, 0, 2, -1, 0, 0) == -1, "no rows");
	EXPECT_TRUE(layout_slice_init(&s, "0123456789012345678901234567890123456789012345678901"
				      "234567890123", 1, 2, 1, -1, 0, 0) == -1, "64-byte name");
}

static void test_rows(void)
{
	struct layout_slice col, r, rr, b, keep;

	/* rows 2..6 of a tensor-parallel column slice: a rectangle off both axes' origins */
	layout_slice_init(&col, "wq", 2, 24, 20, 1, 10, 10);
	EXPECT_TRUE(layout_slice_rows(&r, &col, 2, 5) == 0, "rows 2+5 of cols 10+10: refused");
	EXPECT_BLOCK(&r, 24, 20, 2, 10, 5, 10, "rows 2+5 of cols 10+10");
	EXPECT_TRUE(!strcmp(r.name, "wq") && r.ndim == 2, "name \"%s\" ndim %d kept", r.name,
		    r.ndim);
	/* rows of rows: local indices of the inner block */
	EXPECT_TRUE(layout_slice_rows(&rr, &r, 4, 1) == 0, "row 4 of rows 2+5: refused");
	EXPECT_BLOCK(&rr, 24, 20, 6, 10, 1, 10, "row 4 of (rows 2+5 of cols 10+10)");
	/* rows of a row slice */
	layout_slice_init(&b, "emb", 2, 37, 16, 0, 19, 18);
	EXPECT_TRUE(layout_slice_rows(&r, &b, 3, 15) == 0, "rows 3+15 of rows 19+18: refused");
	EXPECT_BLOCK(&r, 37, 16, 22, 0, 15, 16, "rows 3+15 of rows 19+18");
	/* a 1-D tensor: rows are elements */
	layout_slice_init(&b, "b1", 1, 30, 1, 0, 15, 15);
	EXPECT_TRUE(layout_slice_rows(&r, &b, 5, 10) == 0, "elements 5+10 of 15+15: refused");
	EXPECT_BLOCK(&r, 30, 1, 20, 0, 10, 1, "1-D: elements 5+10 of 15+15");
	EXPECT_TRUE(r.ndim == 1, "1-D stays 1-D (ndim %d)", r.ndim);
	/* in place */
	r = col;
	EXPECT_TRUE(layout_slice_rows(&r, &r, 23, 1) == 0, "in place: refused");
	EXPECT_BLOCK(&r, 24, 20, 23, 10, 1, 10, "in place: the last row of cols 10+10");

	/* refusals leave dst as it was */
	keep = r;
	EXPECT_TRUE(layout_slice_rows(&r, &col, 20, 5) == -1, "rows 20+5 of a 24-row block");
	EXPECT_TRUE(layout_slice_rows(&r, &col, -1, 2) == -1, "rows -1+2");
	EXPECT_TRUE(layout_slice_rows(&r, &col, 0, 0) == -1, "rows 0+0");
	EXPECT_TRUE(layout_slice_rows(&r, &col, 3, -2) == -1, "rows 3-2");
	EXPECT_TRUE(layout_slice_rows(&r, &rr, 1, 1) == -1, "row 1 of a 1-row block");
	EXPECT_TRUE(layout_slice_rows(&r, &col, INT64_MAX, 2) == -1, "rows INT64_MAX+2");
	EXPECT_TRUE(!memcmp(&r, &keep, sizeof(r)), "a refused range leaves dst untouched");
}

/* The even row shards of a column slice over 1..7 parts: each a rectangle inside the
 * slice, together covering each of its values exactly once. */
static void test_shards_tile(void)
{
	struct layout_slice col;
	int bad = 0;

	layout_slice_init(&col, "w1", 2, 13, 40, 1, 20, 20);
	for (int parts = 1; parts <= 7; parts++) {
		int hits[13][40] = {{0}};

		for (int i = 0; i < parts; i++) {
			struct layout_slice sh;
			int64_t first, count;

			layout_even_range(col.shape[0], parts, i, &first, &count);
			if (layout_slice_rows(&sh, &col, first, count))
				continue; /* an empty shard (more parts than rows): nothing held */
			if (sh.start[0] < 0 || sh.start[1] < 0 || sh.start[0] + sh.shape[0] > 13 ||
			    sh.start[1] + sh.shape[1] > 40) {
				if (bad++ < 10)
					fprintf(stderr, "  %d parts: shard %d at (%lld, %lld) of shape "
						"(%lld, %lld) is outside the tensor\n", parts, i,
						(long long)sh.start[0], (long long)sh.start[1],
						(long long)sh.shape[0], (long long)sh.shape[1]);
				continue;
			}
			for (int64_t r = 0; r < sh.shape[0]; r++)
				for (int64_t c = 0; c < sh.shape[1]; c++)
					hits[sh.start[0] + r][sh.start[1] + c]++;
		}
		for (int r = 0; r < 13; r++)
			for (int c = 0; c < 40; c++) {
				int want = c >= 20 ? 1 : 0;

				if (hits[r][c] != want && bad++ < 10)
					fprintf(stderr, "  %d parts: (%d, %d) held %d times, want %d\n",
						parts, r, c, hits[r][c], want);
			}
	}
	EXPECT_TRUE(bad == 0, "even row shards of cols 20+20 of (13, 40) tile it once: %d "
		    "values wrong", bad);
}

int main(void)
{
	test_init();
	test_rows();
	test_shards_tile();
	return test_finish();
}
