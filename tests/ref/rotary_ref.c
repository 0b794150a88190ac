#include "tests/ref/rotary_ref.h"

#include <math.h>

double ref_rotary_angle(int64_t pos, int64_t i, int64_t head_dim)
{
	double t = (double)i / (double)(head_dim / 2 - 1); /* linspace(0, 1, head_dim/2) */

	return (double)pos / pow(10000.0, t);
}

void ref_rotary_apply(double *x, int64_t batch, int64_t seq_len, int64_t heads,
		      int64_t head_dim, int64_t ld, int64_t first_pos, int direction)
{
	for (int64_t r = 0; r < batch * seq_len; r++)
		for (int64_t h = 0; h < heads; h++)
			for (int64_t i = 0; i < head_dim / 2; i++) {
				double a = direction * ref_rotary_angle(first_pos + r % seq_len,
									i, head_dim);
				double *v = x + r * ld + h * head_dim + 2 * i;
				double x0 = v[0], x1 = v[1];

				v[0] = x0 * cos(a) - x1 * sin(a);
				v[1] = x1 * cos(a) + x0 * sin(a);
			}
}
