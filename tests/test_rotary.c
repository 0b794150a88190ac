/*
 * The theta-shift rotation against the float64 reference: the cos/sin table (also at
 * first_pos = 100000, where an angle formed in float is off by ~4e-3 rad), the
 * rotation in both directions with row stride wider than the heads (padding left
 * alone), the backward (rotation by -a) against central differences of
 * L = sum(rot(x) .* W), the round trip, and the preserved norm of every lane pair.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/rotary_ref.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/rotary.h"

#define SEED 4242
#define FD_STEP 1e-6

static void fill(float *f, double *d, int64_t n, uint64_t stream, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)(lo + (hi - lo) * rng_uniform(SEED, stream, (uint64_t)i));
		if (d)
			d[i] = f[i];
	}
}

static void check_table(int64_t seq_len, int64_t head_dim, int64_t first_pos)
{
	const int64_t half = head_dim / 2, n = seq_len * half;
	struct rotary_table t;
	double *c = xmalloc(sizeof(double) * n), *s = xmalloc(sizeof(double) * n);
	char label[128];

	rotary_table_init(&t, seq_len, head_dim, first_pos);
	EXPECT_TRUE(t.seq_len == seq_len && t.head_dim == head_dim && t.first_pos == first_pos,
		    "table fields not recorded");
	for (int64_t r = 0; r < seq_len; r++)
		for (int64_t i = 0; i < half; i++) {
			double a = ref_rotary_angle(first_pos + r, i, head_dim);

			c[r * half + i] = cos(a);
			s[r * half + i] = sin(a);
		}
	/* Only the rounding of each value to float: half an ulp of 1 is 3e-8. */
	snprintf(label, sizeof(label), "table cos seq=%ld head_dim=%ld first_pos=%ld",
		 (long)seq_len, (long)head_dim, (long)first_pos);
	EXPECT_CLOSE(t.cos_a, c, n, 0, 6e-8, label);
	snprintf(label, sizeof(label), "table sin seq=%ld head_dim=%ld first_pos=%ld",
		 (long)seq_len, (long)head_dim, (long)first_pos);
	EXPECT_CLOSE(t.sin_a, s, n, 0, 6e-8, label);
	rotary_table_free(&t);
	EXPECT_TRUE(t.cos_a == NULL && t.sin_a == NULL, "rotary_table_free leaves pointers");
	free(c), free(s);
}

/* rotary_apply_copy: the bf16 roundings of what rotary_apply stored in rotated, at
 * the same places, nothing past the heads written, and x left as it was. */
static void check_copy(const char *tag, const float *x, const float *rotated,
		       const struct rotary_table *t, int64_t batch, int64_t heads, int64_t ld,
		       int dir, float scale)
{
	const int64_t rows = batch * t->seq_len, n = rows * ld, width = heads * t->head_dim;
	float *x2 = xmalloc(sizeof(float) * n);
	uint16_t *copy = xmalloc(sizeof(uint16_t) * n);
	int64_t bad = -1;

	memcpy(x2, x, sizeof(float) * n);
	memset(copy, 0xff, sizeof(uint16_t) * n);
	rotary_apply_copy(x2, copy, t, batch, heads, ld, dir, scale);
	for (int64_t i = 0; i < n && bad < 0; i++) {
		uint16_t want = i % ld < width ? bf16_from_f32_one(rotated[i]) : 0xffff;

		if (copy[i] != want)
			bad = i;
	}
	EXPECT_TRUE(bad < 0 && memcmp(x, x2, sizeof(float) * n) == 0,
		    "%s direction %d: rotary_apply_copy wrong at %ld, or x changed", tag, dir,
		    (long)bad);
	free(x2), free(copy);
}

static void check_apply(int64_t batch, int64_t seq_len, int64_t heads, int64_t head_dim,
			int64_t pad, int64_t first_pos)
{
	const int64_t ld = heads * head_dim + pad, rows = batch * seq_len, n = rows * ld;
	struct rotary_table t;
	float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
	float *w = xmalloc(sizeof(float) * n);
	double *xd = xmalloc(sizeof(double) * n), *yd = xmalloc(sizeof(double) * n);
	double *wd = xmalloc(sizeof(double) * n), *fd = xmalloc(sizeof(double) * n);
	double *row = xmalloc(sizeof(double) * ld), *nin = xmalloc(sizeof(double) * n / 2);
	double *nout = xmalloc(sizeof(double) * n / 2);
	int64_t npairs = 0;
	bool pad_kept = true;
	char label[200], tag[128];

	snprintf(tag, sizeof(tag),
		 "rotary batch=%ld seq=%ld heads=%ld head_dim=%ld ld=%ld pos0=%ld", (long)batch, (long)seq_len, (long)heads, (long)head_dim, (long)ld,
		 (long)first_pos);
	rotary_table_init(&t, seq_len, head_dim, first_pos);
	fill(x, xd, n, 1, -1.0, 1.0);
	fill(w, wd, n, 2, -1.0, 1.0);

	/* forward: +a */
	memcpy(y, x, sizeof(float) * n);
	memcpy(yd, xd, sizeof(double) * n);
	rotary_apply(y, &t, batch, heads, ld, 1, 1.0f);
	ref_rotary_apply(yd, batch, seq_len, heads, head_dim, ld, first_pos, 1);
	snprintf(label, sizeof(label), "%s fwd", tag);
	EXPECT_CLOSE(y, yd, n, 1e-6, 2e-7, label);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = heads * head_dim; j < ld; j++)
			pad_kept = pad_kept && y[r * ld + j] == x[r * ld + j];
	EXPECT_TRUE(pad_kept, "%s: columns past the heads were modified", tag);

	/* the norm of every lane pair is kept */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < heads * head_dim; j += 2) {
			const float *a = x + r * ld + j, *b = y + r * ld + j;

			nin[npairs] = hypot(a[0], a[1]);
			nout[npairs++] = hypot(b[0], b[1]);
		}
	snprintf(label, sizeof(label), "%s pair norms kept", tag);
	EXPECT_CLOSE(nout, nin, npairs, 3e-7, 1e-8, label);

	/* back: -a; first straight against the reference, then the round trip */
	memcpy(yd, xd, sizeof(double) * n);
	memcpy(y, x, sizeof(float) * n);
	rotary_apply(y, &t, batch, heads, ld, -1, 1.0f);
	ref_rotary_apply(yd, batch, seq_len, heads, head_dim, ld, first_pos, -1);
	snprintf(label, sizeof(label), "%s direction -1", tag);
	EXPECT_CLOSE(y, yd, n, 1e-6, 2e-7, label);
	memcpy(y, x, sizeof(float) * n);
	rotary_apply(y, &t, batch, heads, ld, 1, 1.0f);
	rotary_apply(y, &t, batch, heads, ld, -1, 1.0f);
	snprintf(label, sizeof(label), "%s round trip", tag);
	EXPECT_CLOSE(y, xd, n, 1e-6, 3e-7, label);

	/*
	 * Backward of the rotation: dx = R(-a) W. Central differences of
	 * L = sum(rot(x) .* W) through the reference, one row at a time (a value only
	 * moves its own row, which is position first_pos + r % seq_len).
	 */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < ld; j++) {
			const int64_t pos = first_pos + r % seq_len;
			double lp = 0.0, lm = 0.0;

			memcpy(row, xd + r * ld, sizeof(double) * ld);
			row[j] += FD_STEP;
			ref_rotary_apply(row, 1, 1, heads, head_dim, ld, pos, 1);
			for (int64_t k = 0; k < ld; k++)
				lp += row[k] * wd[r * ld + k];
			memcpy(row, xd + r * ld, sizeof(double) * ld);
			row[j] -= FD_STEP;
			ref_rotary_apply(row, 1, 1, heads, head_dim, ld, pos, 1);
			for (int64_t k = 0; k < ld; k++)
				lm += row[k] * wd[r * ld + k];
			fd[r * ld + j] = (lp - lm) / (2.0 * FD_STEP);
		}
	memcpy(yd, wd, sizeof(double) * n);
	ref_rotary_apply(yd, batch, seq_len, heads, head_dim, ld, first_pos, -1);
	snprintf(label, sizeof(label), "%s ref bwd vs fd", tag);
	EXPECT_CLOSE(yd, fd, n, 1e-6, 1e-8, label);
	memcpy(y, w, sizeof(float) * n);
	rotary_apply(y, &t, batch, heads, ld, -1, 1.0f);
	snprintf(label, sizeof(label), "%s bwd vs fd", tag);
	EXPECT_CLOSE(y, fd, n, 1e-6, 2e-7, label);

	/* A folded scale (retention's 1 / sqrt(dk) on K), both directions, against the
	 * reference rotation times the scale in double. */
	for (int dir = -1; dir <= 1; dir += 2) {
		const double sc = 1.0 / sqrt((double)head_dim);
		bool pad_same = true;

		memcpy(y, x, sizeof(float) * n);
		memcpy(yd, xd, sizeof(double) * n);
		rotary_apply(y, &t, batch, heads, ld, dir, (float)sc);
		ref_rotary_apply(yd, batch, seq_len, heads, head_dim, ld, first_pos, dir);
		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < ld; j++) {
				if (j < heads * head_dim)
					yd[r * ld + j] *= sc;
				else
					pad_same = pad_same && y[r * ld + j] == x[r * ld + j];
			}
		snprintf(label, sizeof(label), "%s direction %d, scale 1/sqrt(head_dim)", tag, dir);
		EXPECT_CLOSE(y, yd, n, 1e-6, 2e-7, label);
		EXPECT_TRUE(pad_same, "%s: a scaled rotation modified columns past the heads", tag);
		check_copy(tag, x, y, &t, batch, heads, ld, dir, (float)sc);
	}

	rotary_table_free(&t);
	free(x), free(y), free(w), free(xd), free(yd), free(wd), free(fd), free(row);
	free(nin), free(nout);
}

int main(void)
{
	check_table(37, 16, 0);
	check_table(37, 128, 0);
	check_table(13, 16, 100000);
	check_table(13, 128, 100000);
	check_table(5, 4, 123457);

	/* tiny model: heads 4 of dk 16; bench: 4 of 128; odd shapes, padded rows */
	check_apply(3, 5, 4, 16, 0, 0);
	check_apply(3, 5, 4, 16, 3, 0);
	check_apply(2, 7, 4, 128, 0, 0);
	check_apply(2, 7, 4, 128, 5, 100000);
	check_apply(1, 9, 4, 16, 0, 100000);
	check_apply(5, 3, 3, 6, 1, 7);
	check_apply(1, 1, 1, 4, 0, 0);
	check_apply(1, 3, 2, 1100, 3, 5); /* heads of more than one piece */
	return test_finish();
}
