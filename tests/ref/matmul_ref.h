/* float64 plain-C references for the matmul tests. Tests only. */
#ifndef RN_MATMUL_REF_H
#define RN_MATMUL_REF_H

#include <stdbool.h>
#include <stdint.h>

/* c (+)= op(a) op(b), float64, row-major with leading dimensions. */
void ref_matmul(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k,
		int64_t lda, int64_t ldb, int64_t ldc, bool trans_a, bool trans_b,
		bool accumulate);

#endif
