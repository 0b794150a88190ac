/* float64 plain-C reference for the theta-shift rotation. Tests only. */
#ifndef RN_ROTARY_REF_H
#define RN_ROTARY_REF_H

#include <stdint.h>

/* pos * 1/10000^linspace(0, 1, head_dim/2)[i] */
double ref_rotary_angle(int64_t pos, int64_t i, int64_t head_dim);

/* In place on (batch * seq_len) rows of stride ld; row r is position
 * first_pos + r % seq_len; direction +1 rotates by a, -1 by -a. */
void ref_rotary_apply(double *x, int64_t batch, int64_t seq_len, int64_t heads,
		      int64_t head_dim, int64_t ld, int64_t first_pos, int direction);

#endif
