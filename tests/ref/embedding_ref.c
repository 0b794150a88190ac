#include "tests/ref/embedding_ref.h"

void ref_embedding_forward(double *dst, const double *table, const int32_t *tokens,
			   int64_t rows, int64_t width)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < width; j++)
			dst[r * width + j] = table[(int64_t)tokens[r] * width + j];
}

void ref_embedding_backward(double *dtable, const double *ddst, const int32_t *tokens,
			    int64_t rows, int64_t width)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < width; j++)
			dtable[(int64_t)tokens[r] * width + j] += ddst[r * width + j];
}
