#include "tests/ref/matmul_ref.h"

void ref_matmul(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k,
		int64_t lda, int64_t ldb, int64_t ldc, bool trans_a, bool trans_b,
		bool accumulate)
{
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = accumulate ? c[i * ldc + j] : 0.0;

			for (int64_t p = 0; p < k; p++) {
				double x = trans_a ? a[p * lda + i] : a[i * lda + p];
				double y = trans_b ? b[j * ldb + p] : b[p * ldb + j];

				s += x * y;
			}
			c[i * ldc + j] = s;
		}
}
