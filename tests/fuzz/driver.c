/*
 * driver: a plain main() for a fuzz target, so that every compiler and every
 * build tree (gcc, Release and ASan+UBSan) runs the targets without libFuzzer.
 *
 *   <target>_replay [-n MUTATIONS] [-s SEED] [-m MAX_BYTES] PATH...
 *
 * Feeds every seed file (PATH is a file or a directory of files, read in name
 * order) to LLVMFuzzerTestOneInput, then MUTATIONS inputs made by mutating the
 * seeds with a xorshift generator seeded with SEED: bit flips, random and
 * "interesting" bytes and integers, inserted, deleted and duplicated ranges, and
 * splices of two seeds. Deterministic: the same arguments give the same inputs.
 * If an input crashes (a signal, or a sanitizer report), it is written to
 * ./replay-crash-<target>.bin first, so the crash can be replayed by passing that
 * file alone (to this driver or to the libFuzzer binary).
 * Ends with "N passed, 0 failed" (a failure never returns).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

/* Defined by some targets; a weak reference is NULL otherwise. */
#pragma weak LLVMFuzzerInitialize
/* ASan/UBSan: called before a sanitizer ends the process (absent without them). */
#pragma weak __sanitizer_set_death_callback
void __sanitizer_set_death_callback(void (*callback)(void));

struct input {
	uint8_t *data;
	size_t size;
};

static struct input *seeds;
static size_t nseeds, capseeds;
static const uint8_t *cur_data;
static size_t cur_size;
static const char *target_name = "target";

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		perror("driver: realloc");
		exit(1);
	}
	return p;
}

/* The input being run, for the crash report (best effort: the process is dying). */
static void dump_current(void)
{
	char path[256];
	int fd;

	if (!cur_data && cur_size)
		return;
	snprintf(path, sizeof(path), "replay-crash-%s.bin", target_name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, cur_data, cur_size);

		(void)w;
		close(fd);
	}
	fprintf(stderr, "driver: the crashing input (%zu bytes) is in %s\n", cur_size, path);
	cur_data = NULL;
	cur_size = 0;
}

static void on_signal(int sig)
{
	dump_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void add_seed(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct input in = {NULL, 0};
	size_t cap = 0, n;
	uint8_t buf[65536];

	if (!f) {
		perror(path);
		exit(1);
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (in.size + n > cap) {
			cap = 2 * (in.size + n);
			in.data = xrealloc(in.data, cap);
		}
		memcpy(in.data + in.size, buf, n);
		in.size += n;
	}
	fclose(f);
	if (!in.data) /* an empty file: libFuzzer passes a valid pointer too */
		in.data = xrealloc(NULL, 1);
	if (nseeds == capseeds) {
		capseeds = capseeds ? 2 * capseeds : 16;
		seeds = xrealloc(seeds, capseeds * sizeof(*seeds));
	}
	seeds[nseeds++] = in;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_path(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	if (stat(path, &st) != 0) {
		perror(path);
		exit(1);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_seed(path);
		return;
	}
	d = opendir(path);
	while (d && (e = readdir(d))) {
		size_t len;

		if (e->d_name[0] == '.')
			continue;
		len = strlen(path) + strlen(e->d_name) + 2;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n] = xrealloc(NULL, len);
		snprintf(names[n++], len, "%s/%s", path, e->d_name);
	}
	if (d)
		closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		add_seed(names[i]);
		free(names[i]);
	}
	free(names);
}

static uint64_t rng_state;

static uint64_t next(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t below(size_t n)
{
	return n ? (size_t)(next() % n) : 0;
}

/* One mutation of buf (size *n, capacity max) in place. */
static void mutate_once(uint8_t *buf, size_t *n, size_t max)
{
	static const uint64_t interesting[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff,
					       0x8000, 0xffff, 0x10000, 0x7fffffff,
					       0x80000000u, 0xffffffffu, 0x100000000ull,
					       0x7fffffffffffffffull, 0x8000000000000000ull,
					       0xffffffffffffffffull, 128, 256, 65536};
	const struct input *other = &seeds[below(nseeds)];
	size_t pos = below(*n), len;

	switch (below(9)) {
	case 0: /* flip a bit */
		if (*n)
			buf[pos] ^= (uint8_t)(1u << below(8));
		break;
	case 1: /* a random byte */
		if (*n)
			buf[pos] = (uint8_t)next();
		break;
	case 2: /* an interesting little-endian integer of 1, 2, 4 or 8 bytes */
		len = (size_t)1 << below(4);
		if (*n >= len) {
			uint64_t v = interesting[below(sizeof(interesting) / sizeof(*interesting))];

			pos = below(*n - len + 1);
			for (size_t i = 0; i < len; i++)
				buf[pos + i] = (uint8_t)(v >> (8 * i));
		}
		break;
	case 3: /* insert random bytes */
		len = 1 + below(8);
		if (*n + len <= max) {
			memmove(buf + pos + len, buf + pos, *n - pos);
			for (size_t i = 0; i < len; i++)
				buf[pos + i] = (uint8_t)next();
			*n += len;
		}
		break;
	case 4: /* delete a range */
		len = below(*n - pos + 1);
		memmove(buf + pos, buf + pos + len, *n - pos - len);
		*n -= len;
		break;
	case 5: /* duplicate a range */
		len = below(*n - pos + 1);
		if (*n + len <= max) {
			memmove(buf + pos + len, buf + pos, *n - pos);
			*n += len;
		}
		break;
	case 6: /* truncate */
		*n = pos;
		break;
	case 7: /* splice: overwrite with a piece of another seed */
		if (other->size) {
			size_t from = below(other->size);

			len = below(other->size - from + 1);
			if (pos + len > max)
				len = max - pos;
			memcpy(buf + pos, other->data + from, len);
			if (pos + len > *n)
				*n = pos + len;
		}
		break;
	case 8: /* an ASCII digit or sign, for the text formats */
		if (*n)
			buf[pos] = (uint8_t)"0123456789-+ .=#\n"[below(17)];
		break;
	}
}

static void run(const uint8_t *data, size_t size)
{
	cur_data = data;
	cur_size = size;
	LLVMFuzzerTestOneInput(data, size);
	cur_data = NULL;
	cur_size = 0;
}

int main(int argc, char **argv)
{
	unsigned long mutations = 1000, seed = 1;
	size_t max = 1 << 16;
	const char *slash = strrchr(argv[0], '/');
	uint8_t *buf;
	int opt;

	target_name = slash ? slash + 1 : argv[0];
	while ((opt = getopt(argc, argv, "n:s:m:")) != -1) {
		if (opt == 'n')
			mutations = strtoul(optarg, NULL, 10);
		else if (opt == 's')
			seed = strtoul(optarg, NULL, 10);
		else if (opt == 'm')
			max = strtoul(optarg, NULL, 10);
		else {
			fprintf(stderr, "usage: %s [-n MUTATIONS] [-s SEED] [-m MAX_BYTES] "
				"PATH...\n", argv[0]);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no seed file or directory given\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = optind; i < argc; i++)
		add_path(argv[i]);
	if (nseeds == 0) {
		fprintf(stderr, "%s: no seed files\n", argv[0]);
		return 2;
	}
	signal(SIGSEGV, on_signal);
	signal(SIGBUS, on_signal);
	signal(SIGFPE, on_signal);
	signal(SIGABRT, on_signal);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(dump_current);

	for (size_t i = 0; i < nseeds; i++)
		run(seeds[i].data, seeds[i].size);
	rng_state = 0x9e3779b97f4a7c15ull ^ (seed * 0xbf58476d1ce4e5b9ull);
	if (!rng_state)
		rng_state = 1;
	buf = xrealloc(NULL, max);
	for (unsigned long k = 0; k < mutations; k++) {
		const struct input *s = &seeds[below(nseeds)];
		size_t n = s->size < max ? s->size : max;
		int rounds = 1 + (int)below(8);

		memcpy(buf, s->data, n);
		for (int r = 0; r < rounds; r++)
			mutate_once(buf, &n, max);
		run(buf, n);
	}
	printf("%s: %zu seeds and %lu mutations (seed %lu) ran clean\n", target_name, nseeds,
	       mutations, seed);
	printf("%lu passed, 0 failed\n", (unsigned long)nseeds + mutations);
	free(buf);
	for (size_t i = 0; i < nseeds; i++)
		free(seeds[i].data);
	free(seeds);
	return 0;
}
