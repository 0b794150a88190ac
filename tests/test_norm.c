/*
 * LayerNorm and retention's gated GroupNorm (swish(gate) * GroupNorm(src)) against
 * the float64 references: forward (output and the saved statistics), backward
 * against the reference backward and against central differences of
 * L = sum(dst .* W) taken through the reference forward, for every input and
 * parameter gradient; LayerNorm's backward accumulates, the gated GroupNorm's
 * overwrites. Shapes: odd widths, row counts not a multiple of 8, the model's widths
 * (64, 512) and heads (4 x 32, 4 x 256), rows and heads of more than one piece,
 * constant rows and rows with a large offset; LayerNorm's backward gives the same
 * bits whatever the thread count. With a bf16 copy of the output the kernels write
 * the same float32 bits, and the copy is the rounding of each (against
 * tests/ref/bf16_ref.c); written alone, the copy is the same.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "tests/harness.h"
#include "tests/ref/activation_ref.h"
#include "tests/ref/bf16_ref.h"
#include "tests/ref/norm_ref.h"
#include "trainer/kernels/norm.h"

#define SEED 20240611
#define FD_STEP 1e-6

/* layernorm_forward with a bf16 copy: the same float32 bits as without (dst), and
 * the copy is the rounding of each of them; the copy written alone (dst NULL) is the
 * same copy, with the same statistics. */
static void check_bf16_copy_forward(const char *tag, const float *dst, const float *src,
				    const float *gain, const float *bias, int64_t rows,
				    int64_t width)
{
	const int64_t n = rows * width;
	float *dst2 = xmalloc(sizeof(float) * n), *mean = xmalloc(sizeof(float) * rows);
	float *rstd = xmalloc(sizeof(float) * rows);
	float *mean2 = xmalloc(sizeof(float) * rows), *rstd2 = xmalloc(sizeof(float) * rows);
	uint16_t *dst16 = xmalloc(sizeof(uint16_t) * n);
	int64_t bad;

	layernorm_forward(dst2, dst16, mean, rstd, src, gain, bias, rows, width);
	EXPECT_TRUE(memcmp(dst, dst2, sizeof(float) * n) == 0,
		    "%s: layernorm_forward's float32 output changes with a bf16 copy", tag);
	bad = ref_bf16_copy_mismatch(dst16, dst2, n);
	EXPECT_TRUE(bad < 0, "%s: layernorm_forward's bf16 copy of dst[%ld]", tag, (long)bad);
	memset(dst16, 0xff, sizeof(uint16_t) * n);
	layernorm_forward(NULL, dst16, mean2, rstd2, src, gain, bias, rows, width);
	bad = ref_bf16_copy_mismatch(dst16, dst2, n);
	EXPECT_TRUE(bad < 0 && memcmp(mean, mean2, sizeof(float) * rows) == 0 &&
			    memcmp(rstd, rstd2, sizeof(float) * rows) == 0,
		    "%s: layernorm_forward's bf16 copy written alone: wrong at %ld or other "
		    "statistics",
		    tag, (long)bad);
	free(dst2), free(mean), free(rstd), free(mean2), free(rstd2), free(dst16);
}

/* Float values uniform in [lo, hi), and their exact double copies. */
static void fill(float *f, double *d, int64_t n, uint64_t stream, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)(lo + (hi - lo) * rng_uniform(SEED, stream, (uint64_t)i));
		if (d)
			d[i] = f[i];
	}
}

/* L = sum(LN(src) .* w) through the float64 reference; scratch holds rows * width. */
static double ln_objective(const double *src, const double *gain, const double *bias,
			   const double *w, int64_t rows, int64_t width, double *scratch)
{
	double l = 0.0;

	ref_layernorm_forward(scratch, NULL, NULL, src, gain, bias, rows, width);
	for (int64_t i = 0; i < rows * width; i++)
		l += scratch[i] * w[i];
	return l;
}

/* Central difference of ln_objective in x[i]; the caller picks which rows it sees. */
static double ln_fd(double *x, int64_t i, const double *src, const double *gain,
		    const double *bias, const double *w, int64_t rows, int64_t width,
		    double *scratch)
{
	double keep = x[i], lp, lm;

	x[i] = keep + FD_STEP;
	lp = ln_objective(src, gain, bias, w, rows, width, scratch);
	x[i] = keep - FD_STEP;
	lm = ln_objective(src, gain, bias, w, rows, width, scratch);
	x[i] = keep;
	return (lp - lm) / (2.0 * FD_STEP);
}

/*
 * The row statistics come from a double accumulation, so the forward is good to a
 * few float roundings; the backward rebuilds xhat from the float mean and rstd, so
 * its error grows with |mean| / std (offset rows get their own tolerance).
 */
static void check_layernorm(int64_t rows, int64_t width, double offset, int const_row,
			    double bwd_rtol, double bwd_atol)
{
	const int64_t n = rows * width;
	float *src = xmalloc(sizeof(float) * n), *dst = xmalloc(sizeof(float) * n);
	float *w = xmalloc(sizeof(float) * n), *dsrc = xmalloc(sizeof(float) * n);
	float *gain = xmalloc(sizeof(float) * width), *bias = xmalloc(sizeof(float) * width);
	float *dgain = xmalloc(sizeof(float) * width), *dbias = xmalloc(sizeof(float) * width);
	float *mean = xmalloc(sizeof(float) * rows), *rstd = xmalloc(sizeof(float) * rows);
	double *srcd = xmalloc(sizeof(double) * n), *dstd = xmalloc(sizeof(double) * n);
	double *wd = xmalloc(sizeof(double) * n), *dsrcd = xmalloc(sizeof(double) * n);
	double *gaind = xmalloc(sizeof(double) * width), *biasd = xmalloc(sizeof(double) * width);
	double *dgaind = xmalloc(sizeof(double) * width);
	double *dbiasd = xmalloc(sizeof(double) * width);
	double *meand = xmalloc(sizeof(double) * rows), *rstdd = xmalloc(sizeof(double) * rows);
	double *fd_src = xmalloc(sizeof(double) * n), *fd_gain = xmalloc(sizeof(double) * width);
	double *fd_bias = xmalloc(sizeof(double) * width), *scratch = xmalloc(sizeof(double) * n);
	double *want = xmalloc(sizeof(double) * n);
	float *pre = xmalloc(sizeof(float) * n), *pre_g = xmalloc(sizeof(float) * width);
	float *pre_b = xmalloc(sizeof(float) * width);
	char label[160], tag[96];

	snprintf(tag, sizeof(tag), "layernorm rows=%ld width=%ld offset=%g%s", (long)rows,
		 (long)width, offset, const_row ? " const-row" : "");
	fill(src, srcd, n, 1, offset - 1.0, offset + 1.0);
	if (const_row)
		for (int64_t j = 0; j < width; j++)
			src[width + j] = (float)(srcd[width + j] = offset + 0.25);
	fill(gain, gaind, width, 2, 0.5, 1.5);
	fill(bias, biasd, width, 3, -0.5, 0.5);
	fill(w, wd, n, 4, -1.0, 1.0);

	/* forward */
	layernorm_forward(dst, NULL, mean, rstd, src, gain, bias, rows, width);
	ref_layernorm_forward(dstd, meand, rstdd, srcd, gaind, biasd, rows, width);
	check_bf16_copy_forward(tag, dst, src, gain, bias, rows, width);
	snprintf(label, sizeof(label), "%s fwd dst", tag);
	EXPECT_CLOSE(dst, dstd, n, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "%s fwd mean", tag);
	EXPECT_CLOSE(mean, meand, rows, 1e-6, 1e-7, label);
	snprintf(label, sizeof(label), "%s fwd rstd", tag);
	EXPECT_CLOSE(rstd, rstdd, rows, 1e-6, 0, label);

	/* backward into zeroed outputs, against the reference */
	memset(dsrc, 0, sizeof(float) * n);
	memset(dgain, 0, sizeof(float) * width);
	memset(dbias, 0, sizeof(float) * width);
	layernorm_backward(dsrc, NULL, dgain, dbias, w, src, gain, mean, rstd, rows, width);
	ref_layernorm_backward(dsrcd, dgaind, dbiasd, wd, srcd, gaind, rows, width);
	snprintf(label, sizeof(label), "%s bwd dsrc vs ref", tag);
	EXPECT_CLOSE(dsrc, dsrcd, n, bwd_rtol, bwd_atol, label);
	snprintf(label, sizeof(label), "%s bwd dgain vs ref", tag);
	EXPECT_CLOSE(dgain, dgaind, width, bwd_rtol, bwd_atol, label);
	snprintf(label, sizeof(label), "%s bwd dbias vs ref", tag);
	EXPECT_CLOSE(dbias, dbiasd, width, 1e-6, 1e-6, label);

	/* central differences: a src value only moves its own row */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < width; j++)
			fd_src[r * width + j] =
				ln_fd(srcd + r * width, j, srcd + r * width, gaind, biasd,
				      wd + r * width, 1, width, scratch);
	for (int64_t j = 0; j < width; j++) {
		fd_gain[j] = ln_fd(gaind, j, srcd, gaind, biasd, wd, rows, width, scratch);
		fd_bias[j] = ln_fd(biasd, j, srcd, gaind, biasd, wd, rows, width, scratch);
	}
	/* The reference itself first (only the difference quotient's error here). */
	snprintf(label, sizeof(label), "%s ref dsrc vs fd", tag);
	EXPECT_CLOSE(dsrcd, fd_src, n, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "%s ref dgain vs fd", tag);
	EXPECT_CLOSE(dgaind, fd_gain, width, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "%s ref dbias vs fd", tag);
	EXPECT_CLOSE(dbiasd, fd_bias, width, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "%s bwd dsrc vs fd", tag);
	EXPECT_CLOSE(dsrc, fd_src, n, bwd_rtol, bwd_atol, label);
	snprintf(label, sizeof(label), "%s bwd dgain vs fd", tag);
	EXPECT_CLOSE(dgain, fd_gain, width, bwd_rtol, bwd_atol, label);
	snprintf(label, sizeof(label), "%s bwd dbias vs fd", tag);
	EXPECT_CLOSE(dbias, fd_bias, width, 1e-6, 1e-6, label);

	/* ACCUMULATES: outputs pre-filled with nonzero values receive the gradient on top */
	fill(pre, NULL, n, 5, -2.0, 2.0);
	fill(pre_g, NULL, width, 6, -2.0, 2.0);
	fill(pre_b, NULL, width, 7, -2.0, 2.0);
	memcpy(dsrc, pre, sizeof(float) * n);
	memcpy(dgain, pre_g, sizeof(float) * width);
	memcpy(dbias, pre_b, sizeof(float) * width);
	layernorm_backward(dsrc, NULL, dgain, dbias, w, src, gain, mean, rstd, rows, width);
	for (int64_t i = 0; i < n; i++)
		want[i] = pre[i] + dsrcd[i];
	snprintf(label, sizeof(label), "%s bwd dsrc accumulates", tag);
	EXPECT_CLOSE(dsrc, want, n, bwd_rtol, bwd_atol, label);
	for (int64_t j = 0; j < width; j++)
		want[j] = pre_g[j] + dgaind[j];
	snprintf(label, sizeof(label), "%s bwd dgain accumulates", tag);
	EXPECT_CLOSE(dgain, want, width, bwd_rtol, bwd_atol, label);
	for (int64_t j = 0; j < width; j++)
		want[j] = pre_b[j] + dbiasd[j];
	snprintf(label, sizeof(label), "%s bwd dbias accumulates", tag);
	EXPECT_CLOSE(dbias, want, width, 1e-6, 1e-6, label);

	/* the same bits on 1 thread and on 3 (the column sums run over fixed parts of rows) */
	{
		float *dsrc1 = xmalloc(sizeof(float) * n), *dgain1 = xmalloc(sizeof(float) * width);
		float *dbias1 = xmalloc(sizeof(float) * width);
		const int threads = omp_get_max_threads();

		omp_set_num_threads(1);
		memcpy(dsrc1, pre, sizeof(float) * n);
		memcpy(dgain1, pre_g, sizeof(float) * width);
		memcpy(dbias1, pre_b, sizeof(float) * width);
		layernorm_backward(dsrc1, NULL, dgain1, dbias1, w, src, gain, mean, rstd, rows,
				   width);
		omp_set_num_threads(3);
		memcpy(dsrc, pre, sizeof(float) * n);
		memcpy(dgain, pre_g, sizeof(float) * width);
		memcpy(dbias, pre_b, sizeof(float) * width);
		layernorm_backward(dsrc, NULL, dgain, dbias, w, src, gain, mean, rstd, rows, width);
		omp_set_num_threads(threads);
		EXPECT_TRUE(memcmp(dsrc, dsrc1, sizeof(float) * n) == 0 &&
				    memcmp(dgain, dgain1, sizeof(float) * width) == 0 &&
				    memcmp(dbias, dbias1, sizeof(float) * width) == 0,
			    "%s: layernorm_backward differs between 1 and 3 threads", tag);

		/* with a bf16 copy: the same float32 bits, and the copy of the sum */
		{
			uint16_t *dsrc16 = xmalloc(sizeof(uint16_t) * n);
			int64_t bad;

			memcpy(dsrc1, pre, sizeof(float) * n);
			memcpy(dgain1, pre_g, sizeof(float) * width);
			memcpy(dbias1, pre_b, sizeof(float) * width);
			layernorm_backward(dsrc1, dsrc16, dgain1, dbias1, w, src, gain, mean, rstd,
					   rows, width);
			EXPECT_TRUE(memcmp(dsrc, dsrc1, sizeof(float) * n) == 0 &&
					    memcmp(dgain, dgain1, sizeof(float) * width) == 0 &&
					    memcmp(dbias, dbias1, sizeof(float) * width) == 0,
				    "%s: layernorm_backward's float32 outputs change with a bf16 copy",
				    tag);
			bad = ref_bf16_copy_mismatch(dsrc16, dsrc1, n);
			EXPECT_TRUE(bad < 0, "%s: layernorm_backward's bf16 copy of dsrc[%ld]",
				    tag, (long)bad);
			free(dsrc16);
		}
		free(dsrc1), free(dgain1), free(dbias1);
	}

	free(src), free(dst), free(w), free(dsrc), free(gain), free(bias), free(dgain);
	free(dbias), free(mean), free(rstd), free(srcd), free(dstd), free(wd), free(dsrcd);
	free(gaind), free(biasd), free(dgaind), free(dbiasd), free(meand), free(rstdd);
	free(fd_src), free(fd_gain), free(fd_bias), free(scratch), free(want), free(pre);
	free(pre_g), free(pre_b);
}

/* L = sum((swish(gate) * GroupNorm(src)) .* w) over one (row, head) segment of gw
 * lanes, through the float64 references; n (gw) is scratch. */
static double gated_segment_objective(const double *src, const double *gate, const double *w,
				      int64_t gw, double *n)
{
	double l = 0.0;

	ref_groupnorm_forward(n, NULL, NULL, src, 1, 1, gw);
	ref_swish_gate_forward(n, gate, n, gw);
	for (int64_t k = 0; k < gw; k++)
		l += n[k] * w[k];
	return l;
}

/* Central differences of the objective above for every src and gate value: a value
 * only moves its own segment, which makes the quotients cheap and exact. */
static void gated_fd(double *fd_src, double *fd_gate, double *srcd, double *gated,
		     const double *wd, int64_t segments, int64_t gw, double *scratch)
{
	for (int64_t s = 0; s < segments; s++)
		for (int64_t j = 0; j < gw; j++)
			for (int which = 0; which < 2; which++) {
				double *x = (which ? gated : srcd) + s * gw;
				double keep = x[j], lp, lm;

				x[j] = keep + FD_STEP;
				lp = gated_segment_objective(srcd + s * gw, gated + s * gw,
							     wd + s * gw, gw, scratch);
				x[j] = keep - FD_STEP;
				lm = gated_segment_objective(srcd + s * gw, gated + s * gw,
							     wd + s * gw, gw, scratch);
				x[j] = keep;
				(which ? fd_gate : fd_src)[s * gw + j] = (lp - lm) / (2.0 * FD_STEP);
			}
}

/*
 * The bf16 copies: forward's is the rounding of dst and leaves dst's bits alone;
 * written alone (dst NULL) it is the same copy with the same statistics. Backward's
 * is the rounding of dgate, with dgate and dsrc as without it; written alone, the
 * same copy and the same dsrc. dsrc's copy likewise, beside dsrc or alone.
 */
static void check_gated_copies(const char *tag, const float *dst, const float *dgate,
			       const float *dsrc, const float *src, const float *gate,
			       const float *w, int64_t rows, int64_t groups, int64_t gw)
{
	const int64_t n = rows * groups * gw, ns = rows * groups;
	float *dst2 = xmalloc(sizeof(float) * n), *dgate2 = xmalloc(sizeof(float) * n);
	float *dsrc2 = xmalloc(sizeof(float) * n);
	double *mean = xmalloc(sizeof(double) * ns), *rstd = xmalloc(sizeof(double) * ns);
	double *mean2 = xmalloc(sizeof(double) * ns), *rstd2 = xmalloc(sizeof(double) * ns);
	uint16_t *copy = xmalloc(sizeof(uint16_t) * n), *copy2 = xmalloc(sizeof(uint16_t) * n);
	int64_t bad;

	gated_groupnorm_forward(dst2, copy, mean, rstd, src, gate, rows, groups, gw);
	bad = ref_bf16_copy_mismatch(copy, dst2, n);
	EXPECT_TRUE(memcmp(dst, dst2, sizeof(float) * n) == 0 && bad < 0,
		    "%s fwd with a bf16 copy: float32 output changed or copy wrong at %ld", tag,
		    (long)bad);
	memset(copy, 0xff, sizeof(uint16_t) * n);
	gated_groupnorm_forward(NULL, copy, mean2, rstd2, src, gate, rows, groups, gw);
	bad = ref_bf16_copy_mismatch(copy, dst2, n);
	EXPECT_TRUE(bad < 0 && memcmp(mean, mean2, sizeof(double) * ns) == 0 &&
			    memcmp(rstd, rstd2, sizeof(double) * ns) == 0,
		    "%s fwd, bf16 copy alone: wrong at %ld or other statistics", tag, (long)bad);

	gated_groupnorm_backward(dgate2, copy, dsrc2, NULL, w, src, gate, mean, rstd, rows, groups,
				 gw);
	bad = ref_bf16_copy_mismatch(copy, dgate2, n);
	EXPECT_TRUE(memcmp(dgate, dgate2, sizeof(float) * n) == 0 &&
			    memcmp(dsrc, dsrc2, sizeof(float) * n) == 0 && bad < 0,
		    "%s bwd with a bf16 copy: float32 outputs changed or copy of dgate wrong "
		    "at %ld",
		    tag, (long)bad);
	memset(copy, 0xff, sizeof(uint16_t) * n);
	memset(dsrc2, 0xff, sizeof(float) * n);
	gated_groupnorm_backward(NULL, copy, dsrc2, NULL, w, src, gate, mean, rstd, rows, groups, gw);
	bad = ref_bf16_copy_mismatch(copy, dgate2, n);
	EXPECT_TRUE(memcmp(dsrc, dsrc2, sizeof(float) * n) == 0 && bad < 0,
		    "%s bwd, bf16 copy of dgate alone: dsrc changed or copy wrong at %ld", tag,
		    (long)bad);

	/* dsrc's copy, beside dsrc and alone (dgate's copy written alone in both) */
	memset(dsrc2, 0xff, sizeof(float) * n);
	memset(copy2, 0xff, sizeof(uint16_t) * n);
	gated_groupnorm_backward(NULL, copy, dsrc2, copy2, w, src, gate, mean, rstd, rows, groups,
				 gw);
	bad = ref_bf16_copy_mismatch(copy2, dsrc, n);
	EXPECT_TRUE(memcmp(dsrc, dsrc2, sizeof(float) * n) == 0 && bad < 0,
		    "%s bwd with a bf16 copy of dsrc: dsrc changed or its copy wrong at %ld", tag,
		    (long)bad);
	memset(copy, 0xff, sizeof(uint16_t) * n);
	memset(copy2, 0xff, sizeof(uint16_t) * n);
	gated_groupnorm_backward(NULL, copy, NULL, copy2, w, src, gate, mean, rstd, rows, groups,
				 gw);
	bad = ref_bf16_copy_mismatch(copy2, dsrc, n);
	EXPECT_TRUE(bad < 0 && ref_bf16_copy_mismatch(copy, dgate2, n) < 0,
		    "%s bwd, both bf16 copies alone: dsrc's wrong at %ld, or dgate's", tag,
		    (long)bad);
	free(dst2), free(dgate2), free(dsrc2), free(mean), free(rstd), free(mean2);
	free(rstd2), free(copy), free(copy2);
}

/* Retention's gated GroupNorm, swish(gate) * GroupNorm(src): a LayerNorm without
 * gain or bias per (row, head), then the gate; the backward OVERWRITES. */
static void check_gated_groupnorm(int64_t rows, int64_t groups, int64_t gw)
{
	const int64_t width = groups * gw, n = rows * width, ns = rows * groups;
	float *src = xmalloc(sizeof(float) * n), *gate = xmalloc(sizeof(float) * n);
	float *dst = xmalloc(sizeof(float) * n), *w = xmalloc(sizeof(float) * n);
	float *dsrc = xmalloc(sizeof(float) * n), *dgate = xmalloc(sizeof(float) * n);
	double *mean = xmalloc(sizeof(double) * ns), *rstd = xmalloc(sizeof(double) * ns);
	double *srcd = xmalloc(sizeof(double) * n), *gated = xmalloc(sizeof(double) * n);
	double *normd = xmalloc(sizeof(double) * n), *dstd = xmalloc(sizeof(double) * n);
	double *wd = xmalloc(sizeof(double) * n), *dsrcd = xmalloc(sizeof(double) * n);
	double *dgated = xmalloc(sizeof(double) * n), *dnormd = xmalloc(sizeof(double) * n);
	double *meand = xmalloc(sizeof(double) * ns), *rstdd = xmalloc(sizeof(double) * ns);
	double *fd_src = xmalloc(sizeof(double) * n), *fd_gate = xmalloc(sizeof(double) * n);
	double *scratch = xmalloc(sizeof(double) * gw);
	char label[160], tag[96];

	snprintf(tag, sizeof(tag), "gated groupnorm rows=%ld groups=%ld group_width=%ld",
		 (long)rows, (long)groups, (long)gw);
	/* Heads at different scales and offsets, as retention's O rows are; the
	 * reference reads the same values. */
	fill(src, srcd, n, 11, -1.0, 1.0);
	for (int64_t i = 0; i < n; i++) {
		int64_t g = (i / gw) % groups;

		src[i] = (float)(srcd[i] * (double)(1 << (3 * g)) + 0.5 * g);
		srcd[i] = src[i];
	}
	/* gates over the sigmoid's whole range, past where it saturates */
	fill(gate, gated, n, 13, -12.0, 12.0);
	fill(w, wd, n, 12, -1.0, 1.0);

	gated_groupnorm_forward(dst, NULL, mean, rstd, src, gate, rows, groups, gw);
	ref_groupnorm_forward(normd, meand, rstdd, srcd, rows, groups, gw);
	ref_swish_gate_forward(dstd, gated, normd, n);
	snprintf(label, sizeof(label), "%s fwd dst", tag);
	EXPECT_CLOSE(dst, dstd, n, 1e-6, 1e-6, label);
	/* kept in double: far closer than float's rounding (6e-8) would allow */
	snprintf(label, sizeof(label), "%s fwd mean", tag);
	EXPECT_CLOSE(mean, meand, ns, 1e-10, 1e-12, label);
	snprintf(label, sizeof(label), "%s fwd rstd", tag);
	EXPECT_CLOSE(rstd, rstdd, ns, 1e-10, 0, label);

	/* OVERWRITES: garbage in the outputs must not survive */
	for (int64_t i = 0; i < n; i++)
		dsrc[i] = dgate[i] = 12345.0f;
	gated_groupnorm_backward(dgate, NULL, dsrc, NULL, w, src, gate, mean, rstd, rows, groups, gw);
	ref_swish_gate_backward(dgated, dnormd, wd, gated, normd, n);
	ref_groupnorm_backward(dsrcd, dnormd, srcd, rows, groups, gw);
	gated_fd(fd_src, fd_gate, srcd, gated, wd, ns, gw, scratch);
	/* Heads scaled by up to 2^9 have gradients ~ rstd ~ 3e-3: rtol carries them. */
	snprintf(label, sizeof(label), "%s ref dsrc vs fd", tag);
	EXPECT_CLOSE(dsrcd, fd_src, n, 1e-6, 1e-6, label);
	snprintf(label, sizeof(label), "%s ref dgate vs fd", tag);
	EXPECT_CLOSE(dgated, fd_gate, n, 1e-6, 1e-7, label);
	snprintf(label, sizeof(label), "%s bwd dsrc vs ref (overwrites)", tag);
	EXPECT_CLOSE(dsrc, dsrcd, n, 1e-5, 1e-6, label);
	snprintf(label, sizeof(label), "%s bwd dgate vs ref (overwrites)", tag);
	EXPECT_CLOSE(dgate, dgated, n, 1e-5, 1e-6, label);
	snprintf(label, sizeof(label), "%s bwd dsrc vs fd", tag);
	EXPECT_CLOSE(dsrc, fd_src, n, 1e-5, 1e-6, label);
	snprintf(label, sizeof(label), "%s bwd dgate vs fd", tag);
	EXPECT_CLOSE(dgate, fd_gate, n, 1e-5, 1e-6, label);

	check_gated_copies(tag, dst, dgate, dsrc, src, gate, w, rows, groups, gw);

	free(src), free(gate), free(dst), free(w), free(dsrc), free(dgate), free(mean);
	free(rstd), free(srcd), free(gated), free(normd), free(dstd), free(wd), free(dsrcd);
	free(dgated), free(dnormd), free(meand), free(rstdd), free(fd_src), free(fd_gate);
	free(scratch);
}

int main(void)
{
	/* odd widths, odd row counts, the tiny (64) and bench (512) model widths */
	check_layernorm(1, 64, 0.0, 0, 1e-5, 1e-6);
	check_layernorm(7, 13, 0.0, 0, 1e-5, 1e-6);
	check_layernorm(37, 64, 0.0, 0, 1e-5, 1e-6);
	check_layernorm(13, 512, 0.0, 0, 1e-5, 1e-6);
	check_layernorm(5, 2500, 0.0, 0, 1e-5, 1e-6); /* rows of more than one piece */
	check_layernorm(5, 3, 0.0, 0, 1e-5, 1e-6);
	/* more rows than one part of the parameter gradients' column sums, a ragged last */
	check_layernorm(150, 24, 0.0, 0, 1e-5, 1e-6);
	/* a constant row: variance 0, rstd = 1/sqrt(eps), dst = bias, all finite */
	check_layernorm(3, 33, 0.0, 1, 1e-5, 1e-6);
	/*
	 * Rows offset by 100 (spread 1): the forward is exact to float, the backward
	 * inherits the rounding of the saved float mean, ulp(100)/2 * rstd ~ 7e-6.
	 */
	check_layernorm(9, 64, 100.0, 0, 1e-4, 1e-4);

	check_gated_groupnorm(5, 4, 32);
	check_gated_groupnorm(9, 4, 256);
	check_gated_groupnorm(11, 3, 7);
	check_gated_groupnorm(1, 1, 5);
	/* heads of more than one piece, and dsrc's row too wide for the stack */
	check_gated_groupnorm(3, 2, 2500);
	return test_finish();
}
