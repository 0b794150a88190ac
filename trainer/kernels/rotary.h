/*
 * rotary: the theta-shift rotation of Q and K (xPos/RoPE-like) at absolute positions.
 * For each head, each lane pair (2i, 2i+1), i = 0..head_dim/2-1, at position n:
 *
 *   angle_i = 10000^(-i / (head_dim/2 - 1)),  a = n * angle_i (computed in double)
 *   out[2i]   = x[2i] cos a - x[2i+1] sin a
 *   out[2i+1] = x[2i+1] cos a + x[2i] sin a
 *
 * The cos/sin table is made once per (seq_len, head_dim, first position) and reused.
 * Backward is the rotation by -a. Knows nothing of MPI.
 */
#ifndef RN_ROTARY_H
#define RN_ROTARY_H

#include <stdint.h>

struct rotary_table {
	int64_t seq_len, head_dim, first_pos;
	float *cos_a; /* (seq_len, head_dim/2) */
	float *sin_a; /* (seq_len, head_dim/2) */
};

/* head_dim must be even and >= 4 (the exponent divides by head_dim/2 - 1). */
void rotary_table_init(struct rotary_table *table, int64_t seq_len, int64_t head_dim,
		       int64_t first_pos);
void rotary_table_free(struct rotary_table *table);
/* The same table for positions first_pos .. first_pos + seq_len - 1, in place
 * (streaming and generation move it along without allocating). */
void rotary_table_reposition(struct rotary_table *table, int64_t first_pos);

/*
 * In place on x: (batch * seq_len) rows with row stride ld; `heads` heads of
 * head_dim lanes starting at column 0. Row r is position first_pos + r % seq_len.
 * direction +1 rotates (forward), -1 rotates back (backward of the rotation). Each
 * rotated value is then multiplied by scale (1 for none): a scaling of the operand
 * folded into the same pass, and its own backward with direction -1.
 */
void rotary_apply(float *x, const struct rotary_table *table, int64_t batch, int64_t heads,
		  int64_t ld, int direction, float scale);
/*
 * The same rotation of x written to x16 alone, as bfloat16 (bf16.h: the roundings of
 * the values rotary_apply would store), at the same places (row stride ld; nothing
 * past the heads is written); x is left as it is. For a rotated gradient that only
 * bf16 products read.
 */
void rotary_apply_copy(const float *x, uint16_t *x16, const struct rotary_table *table,
		       int64_t batch, int64_t heads, int64_t ld, int direction, float scale);

#endif
