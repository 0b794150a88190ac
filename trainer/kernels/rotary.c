/*
 * The angle n * angle_i is formed in double and only its cosine and sine are rounded
 * to float: at n = 10^5 a float angle is already off by ~4e-3 rad (the spacing of
 * floats near 10^5 is 2^-7), while the double one is off by ~1e-11.
 */
#include "trainer/kernels/rotary.h"

#include <math.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/check.h"
#include "trainer/kernels/bf16.h"
#include "trainer/kernels/simd.h"

void rotary_table_init(struct rotary_table *table, int64_t seq_len, int64_t head_dim,
		       int64_t first_pos)
{
	int64_t half = head_dim / 2;
	size_t count, bytes;

	ENSURE(seq_len > 0);
	ENSURE(head_dim >= 4 && head_dim % 2 == 0);
	count = size_mul_checked((size_t)seq_len, (size_t)half, "rotary table entries");
	bytes = size_mul_checked(count, sizeof(float), "rotary table bytes");
	table->seq_len = seq_len;
	table->head_dim = head_dim;
	table->cos_a = xaligned_alloc(bytes);
	table->sin_a = xaligned_alloc(bytes);
	rotary_table_reposition(table, first_pos);
}

void rotary_table_reposition(struct rotary_table *table, int64_t first_pos)
{
	const int64_t seq_len = table->seq_len, half = table->head_dim / 2;

	table->first_pos = first_pos;
#pragma omp parallel for schedule(static) if (seq_len > 1)
	for (int64_t r = 0; r < seq_len; r++) {
		double n = (double)(first_pos + r);

		for (int64_t i = 0; i < half; i++) {
			double a = n * pow(10000.0, -(double)i / (double)(half - 1));

			table->cos_a[r * half + i] = (float)cos(a);
			table->sin_a[r * half + i] = (float)sin(a);
		}
	}
}

void rotary_table_free(struct rotary_table *table)
{
	free(table->cos_a);
	free(table->sin_a);
	table->cos_a = NULL;
	table->sin_a = NULL;
}

/* Rows per block shared out to the threads (the block's loops are cloned for
 * AVX-512, trainer/kernels/simd.h). */
enum { ROTARY_ROW_BLOCK = 16 };
/* Lane pairs rotated at a time into the copy of rotary_apply_copy (bf16.h). */
enum { ROTARY_PIECE_PAIRS = BF16_COPY_PIECE / 2 };

/* One call's arrays: the rotation of src goes to dst (in place: dst = src) or, when
 * dst16 is given, to dst16 alone. */
struct rotate_call {
	const float *src;
	float *dst;
	uint16_t *dst16;
	const struct rotary_table *table;
	int64_t heads, ld;
	float sign, scale;
};

RN_SIMD_CLONES
static void rotate_rows(const struct rotate_call *rc, int64_t r0, int64_t r1)
{
	const int64_t seq_len = rc->table->seq_len, head_dim = rc->table->head_dim;
	const int64_t half = head_dim / 2, ld = rc->ld;
	const float sign = rc->sign, scale = rc->scale;
	float piece[2 * ROTARY_PIECE_PAIRS];

	for (int64_t r = r0; r < r1; r++) {
		const float *c = rc->table->cos_a + (r % seq_len) * half;
		const float *s = rc->table->sin_a + (r % seq_len) * half;

		for (int64_t h = 0; h < rc->heads; h++) {
			for (int64_t i0 = 0; i0 < half; i0 += ROTARY_PIECE_PAIRS) {
				const int64_t n = piece_len(i0, half, ROTARY_PIECE_PAIRS);
				const int64_t at = r * ld + h * head_dim + 2 * i0;
				const float *v = rc->src + at, *ci = c + i0, *sn = s + i0;
				float *out = rc->dst16 ? piece : rc->dst + at;

				/* `omp simd`: out may be v, element for element (each i reads
				 * its pair before writing it), which an overlap check would
				 * otherwise send down the scalar path. */
#pragma omp simd
				for (int64_t i = 0; i < n; i++) {
					float x0 = v[2 * i], x1 = v[2 * i + 1], si = sign * sn[i];

					out[2 * i] = (x0 * ci[i] - x1 * si) * scale;
					out[2 * i + 1] = (x1 * ci[i] + x0 * si) * scale;
				}
				if (rc->dst16)
					bf16_from_f32(rc->dst16 + at, piece, 2 * n);
			}
		}
	}
}

static void rotate(const struct rotate_call *rc, int64_t batch, int direction)
{
	const int64_t rows = batch * rc->table->seq_len;
	const int64_t nblk = (rows + ROTARY_ROW_BLOCK - 1) / ROTARY_ROW_BLOCK;

	ENSURE(direction == 1 || direction == -1);
	ENSURE(batch >= 0 && rc->heads >= 0);
	ENSURE(rc->ld >= rc->heads * rc->table->head_dim);
#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		const int64_t r0 = b * ROTARY_ROW_BLOCK;

		rotate_rows(rc, r0, rows - r0 < ROTARY_ROW_BLOCK ? rows : r0 + ROTARY_ROW_BLOCK);
	}
}

/* Rotating by -a: cos(-a) = cos a, sin(-a) = -sin a. */
static float sign_of(int direction)
{
	return direction > 0 ? 1.0f : -1.0f;
}

void rotary_apply(float *x, const struct rotary_table *table, int64_t batch, int64_t heads,
		  int64_t ld, int direction, float scale)
{
	const struct rotate_call rc = {
		.src = x, .dst = x, .table = table, .heads = heads, .ld = ld, .sign = sign_of(direction),
		.scale = scale,
	};

	rotate(&rc, batch, direction);
}

void rotary_apply_copy(const float *x, uint16_t *x16, const struct rotary_table *table,
		       int64_t batch, int64_t heads, int64_t ld, int direction, float scale)
{
	const struct rotate_call rc = {
		.src = x, .dst16 = x16, .table = table, .heads = heads, .ld = ld,
		.sign = sign_of(direction), .scale = scale,
	};

	ENSURE(x16);
	rotate(&rc, batch, direction);
}
