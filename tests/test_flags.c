/*
 * test_flags: the shared flag parser's lists of paths (common/flags.h). A list grows
 * past any fixed count (a corpus of many files), keeps the order given, takes the
 * words after its flag and a repeated flag, lets the command line replace a config
 * file's list, refuses a path too long, and flags_free leaves it empty.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/flags.h"
#include "tests/harness.h"

struct settings {
	struct flag_paths inputs, held_out;
	int64_t n;
};

static const struct flag_row rows[] = {
	{"input", FLAG_PATHS, offsetof(struct settings, inputs), 0, 0, 0, NULL, "", "inputs"},
	{"held-out", FLAG_PATHS, offsetof(struct settings, held_out), 0, 0, 0, NULL, "",
	 "held-out paths"},
	{"n", FLAG_INT, offsetof(struct settings, n), 0, 0, 100, NULL, "1", "a number"},
};

static int parse(struct settings *s, int argc, char **argv, char *err)
{
	bool given[3];
	struct flag_parse p = {.rows = rows, .count = 3, .positional = "input", .given = given};

	return flags_parse(&p, s, argc, argv, err, 512);
}

static void release(struct settings *s)
{
	bool given[3];
	struct flag_parse p = {.rows = rows, .count = 3, .given = given};

	flags_free(&p, s);
	EXPECT_TRUE(s->inputs.n == 0 && s->inputs.path == NULL && s->held_out.n == 0,
		    "flags_free leaves the lists empty");
}

/* Far more paths than any fixed table held, positional and after a repeated flag. */
static void check_many(void)
{
	enum { N = 1000 };
	static char names[N][24];
	char *argv[3 * N + 4], err[512] = "";
	struct settings s = {0};
	int argc = 0, ok = 1;

	argv[argc++] = "prog";
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "f%04d.txt", i);
		argv[argc++] = names[i];
	}
	for (int i = 0; i < N; i++) {
		argv[argc++] = "--held-out";
		argv[argc++] = names[N - 1 - i];
	}
	EXPECT_TRUE(parse(&s, argc, argv, err) == 0, "parse: %s", err);
	EXPECT_TRUE(s.inputs.n == N && s.held_out.n == N && s.inputs.cap >= N,
		    "%d inputs and %d held-out paths, of %d each", s.inputs.n, s.held_out.n, N);
	for (int i = 0; ok && i < N && i < s.inputs.n && i < s.held_out.n; i++)
		ok = !strcmp(s.inputs.path[i], names[i]) && !strcmp(s.held_out.path[i],
								    names[N - 1 - i]);
	EXPECT_TRUE(ok, "the paths in the order given");
	release(&s);
}

/* With positional words: --flag A takes one path, --flag=C, the flag repeated, "-" and
 * words after "--" are inputs. */
static void check_forms(void)
{
	char *argv[] = {"prog", "--held-out", "a", "b", "--n", "3", "--held-out=c", "x", "-",
			"--held-out", "d", "--", "--odd"};
	char err[512] = "";
	struct settings s = {0};

	EXPECT_TRUE(parse(&s, 13, argv, err) == 0, "parse: %s", err);
	EXPECT_TRUE(s.held_out.n == 3 && !strcmp(s.held_out.path[0], "a") &&
			    !strcmp(s.held_out.path[1], "c") && !strcmp(s.held_out.path[2], "d") &&
			    s.n == 3,
		    "--held-out a, --held-out=c, --held-out d: %d paths", s.held_out.n);
	EXPECT_TRUE(s.inputs.n == 4 && !strcmp(s.inputs.path[0], "b") &&
			    !strcmp(s.inputs.path[1], "x") && !strcmp(s.inputs.path[2], "-") &&
			    !strcmp(s.inputs.path[3], "--odd"),
		    "with positional words, a list flag takes one path; '-' and words after "
		    "'--' are positional: %d inputs", s.inputs.n);
	release(&s);
}

/* A config file's list is replaced by the command line's, not appended to. */
static void check_config(void)
{
	char path[] = "/tmp/rn_test_flags.XXXXXX", err[512] = "";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct settings s = {0};

	fprintf(f, "held-out /cfg/a\nheld-out = /cfg/b\n");
	fclose(f);
	{
		char *argv[] = {"prog", "--config", path, "in"};

		EXPECT_TRUE(parse(&s, 4, argv, err) == 0 && s.held_out.n == 2 &&
				    !strcmp(s.held_out.path[1], "/cfg/b"),
			    "the file's lines append: %d paths (%s)", s.held_out.n, err);
		release(&s);
	}
	{
		char *argv[] = {"prog", "--config", path, "--held-out", "/cmd", "in"};

		EXPECT_TRUE(parse(&s, 6, argv, err) == 0 && s.held_out.n == 1 &&
				    !strcmp(s.held_out.path[0], "/cmd"),
			    "the command line's list wins: %d paths (%s)", s.held_out.n, err);
		release(&s);
	}
	unlink(path);
}

static void check_too_long(void)
{
	char *long_path = malloc(FLAGS_PATH_MAX + 1), err[512] = "";
	char *argv[] = {"prog", "a", long_path};
	struct settings s = {0};

	memset(long_path, 'p', FLAGS_PATH_MAX);
	long_path[FLAGS_PATH_MAX] = '\0';
	EXPECT_TRUE(parse(&s, 3, argv, err) != 0 && strstr(err, "path longer than") &&
			    !strchr(err, '\n'),
		    "a path too long: %s", err);
	release(&s);
	free(long_path);
}

int main(void)
{
	check_many();
	check_forms();
	check_config();
	check_too_long();
	return test_finish();
}
