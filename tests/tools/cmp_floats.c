/*
 * cmp_floats A B RTOL: compares two raw float32 files element by element,
 * |a - b| <= RTOL * max|b| (norm-wise: entries near zero are judged against the
 * file's scale). Prints the max absolute and relative error and the first
 * mismatches; exit 0 when within tolerance, 1 otherwise, 2 on a bad file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	long bytes;
	float *buf;

	if (!f || fseek(f, 0, SEEK_END) || (bytes = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "cmp_floats: %s: cannot read\n", path);
		exit(2);
	}
	*n = (size_t)bytes / sizeof(float);
	buf = malloc(*n * sizeof(float) + 1);
	if (!buf || fread(buf, sizeof(float), *n, f) != *n) {
		fprintf(stderr, "cmp_floats: %s: short read\n", path);
		exit(2);
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	size_t na, nb, bad = 0;
	float *a, *b;
	double rtol, scale = 0, max_abs = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: cmp_floats A B RTOL\n");
		return 2;
	}
	a = read_all(argv[1], &na);
	b = read_all(argv[2], &nb);
	rtol = atof(argv[3]);
	if (na != nb || na == 0) {
		fprintf(stderr, "cmp_floats: %zu values in %s, %zu in %s\n", na, argv[1], nb, argv[2]);
		return 1;
	}
	for (size_t i = 0; i < nb; i++)
		scale = fmax(scale, fabs(b[i]));
	for (size_t i = 0; i < na; i++) {
		double err = fabs((double)a[i] - b[i]);

		if (!(err <= rtol * scale)) {
			if (bad++ < 10)
				fprintf(stderr, "  [%zu] %.9g vs %.9g\n", i, a[i], b[i]);
		}
		if (err > max_abs || isnan(err))
			max_abs = err;
	}
	printf("cmp_floats: %zu values, max abs %.3g, max abs / max|b| %.3g (rtol %.1g): %s\n", na,
	       max_abs, max_abs / scale, rtol, bad ? "DIFFER" : "match");
	free(a);
	free(b);
	return bad ? 1 : 0;
}
