#include "trainer/flags.h"

#include "common/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct flag_spec *find_flag(const struct flag_table *t, const char *name)
{
	for (size_t i = 0; i < t->count; i++)
		if (strcmp(t->specs[i].name, name) == 0)
			return &t->specs[i];
	return NULL;
}

/* where: "--flag" or "file:line: key" for messages. */
static int set_value(void *dst, const struct flag_spec *o, const char *value,
		     const char *where, char *err, size_t errlen)
{
	char *base = dst, *end;

	switch (o->kind) {
	case OPT_INT: {
		long long v;

		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end)
			return log_fail(err, errlen, "%s: '%s' is not an integer", where, value);
		if ((double)v < o->min || (double)v > o->max)
			return log_fail(err, errlen, "%s: %lld is out of range [%.0f, %.0f]", where, v,
				    o->min, o->max);
		*(int64_t *)(base + o->offset) = v;
		return 0;
	}
	case OPT_FLOAT: {
		double v;

		errno = 0;
		v = strtod(value, &end);
		if (errno || end == value || *end || !isfinite(v))
			return log_fail(err, errlen, "%s: '%s' is not a finite number", where, value);
		if (v < o->min || v > o->max)
			return log_fail(err, errlen, "%s: %g is out of range [%g, %g]", where, v, o->min,
				    o->max);
		*(double *)(base + o->offset) = v;
		return 0;
	}
	case OPT_STRING: {
		size_t cap = o->size;

		if (strlen(value) >= cap)
			return log_fail(err, errlen, "%s: value longer than %zu characters", where,
				    cap - 1);
		snprintf(base + o->offset, cap, "%s", value);
		return 0;
	}
	case OPT_PATHS: {
		int *n = (int *)(base + o->count_offset);
		char(*paths)[FLAGS_PATH_MAX] = (char(*)[FLAGS_PATH_MAX])(base + o->offset);

		if (*n >= FLAGS_MAX_PATHS)
			return log_fail(err, errlen, "%s: more than %d paths", where, FLAGS_MAX_PATHS);
		if (strlen(value) >= FLAGS_PATH_MAX)
			return log_fail(err, errlen, "%s: path longer than %d characters", where,
				    FLAGS_PATH_MAX - 1);
		snprintf(paths[(*n)++], FLAGS_PATH_MAX, "%s", value);
		return 0;
	}
	case OPT_BOOL:
		*(bool *)(base + o->offset) = true;
		return 0;
	}
	return log_fail(err, errlen, "%s: internal error", where);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Applies the file's keys except those in `skip` (given on the command line). */
static int parse_file(const struct flag_table *t, void *dst, const char *path, const bool *skip,
		      char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[FLAGS_PATH_MAX + 128];
	int lineno = 0, rc = 0;

	if (!f)
		return log_fail(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
	while (!rc && fgets(line, sizeof(line), f)) {
		char *key, *value, *hash = strchr(line, '#');
		const struct flag_spec *o;

		lineno++;
		/* fgets splits a longer line: its tail would be read as a line of its own
		 * (a long comment's tail as a key, say). */
		if (!strchr(line, '\n') && !feof(f)) {
			rc = log_fail(err, errlen, "%s:%d: line longer than %zu characters", path,
				      lineno, sizeof(line) - 2);
			break;
		}
		if (hash)
			*hash = '\0';
		key = trim(line);
		if (!*key)
			continue;
		value = key + strcspn(key, " \t=");
		if (*value) {
			*value++ = '\0';
			value = trim(value);
			if (*value == '=')
				value = trim(value + 1);
		}
		while (*key == '-')
			key++;
		snprintf(where, sizeof(where), "%s:%d: %s", path, lineno, key);
		o = find_flag(t, key);
		if (!o || o->kind == OPT_BOOL)
			rc = log_fail(err, errlen, "%s: unknown key", where);
		else if (!*value)
			rc = log_fail(err, errlen, "%s: missing value", where);
		else if (!skip[o - t->specs])
			rc = set_value(dst, o, value, where, err, errlen);
	}
	fclose(f);
	return rc;
}

static int parse_args(const struct flag_table *t, void *dst, int argc, char **argv,
		      bool *given, const char **config_file, char *err, size_t errlen)
{

	/* Command line first, then the file for the keys the command line left alone. */
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const struct flag_spec *o;
		char where[256];

		if (strncmp(arg, "--", 2) != 0)
			return log_fail(err, errlen, "'%s': expected a flag starting with --", arg);
		if (strcmp(arg, "--config") == 0) {
			if (i + 1 >= argc)
				return log_fail(err, errlen, "--config: missing value");
			*config_file = argv[++i];
			continue;
		}
		o = find_flag(t, arg + 2);
		if (!o)
			return log_fail(err, errlen, "%s: unknown flag (see --help)", arg);
		snprintf(where, sizeof(where), "%s", arg);
		if (o->kind == OPT_BOOL) {
			set_value(dst, o, "", where, err, errlen);
			continue;
		}
		if (i + 1 >= argc || (strncmp(argv[i + 1], "--", 2) == 0 && o->kind != OPT_FLOAT))
			return log_fail(err, errlen, "%s: missing value", arg);
		if (o->kind == OPT_PATHS && given[o - t->specs] == false)
			*(int *)((char *)dst + o->count_offset) = 0;
		if (set_value(dst, o, argv[++i], where, err, errlen))
			return -1;
		/* --data-path A B C: the following non-flag words are more paths. */
		while (o->kind == OPT_PATHS && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
			if (set_value(dst, o, argv[++i], where, err, errlen))
				return -1;
		given[o - t->specs] = true;
	}
	return 0;
}


int flags_parse(const struct flag_table *t, void *dst, int argc, char **argv, char *err,
		size_t errlen)
{
	bool *given = calloc(t->count + 1, sizeof(bool));
	const char *config_file = NULL;
	int rc = 0;

	if (!given)
		return log_fail(err, errlen, "out of memory parsing flags");
	rc = parse_args(t, dst, argc, argv, given, &config_file, err, errlen);
	if (!rc && config_file)
		rc = parse_file(t, dst, config_file, given, err, errlen);
	free(given);
	return rc;
}

void flags_print_help(const struct flag_table *t)
{
	printf("  --%-30s %s\n", "config FILE", "read flags from FILE");
	for (size_t i = 0; i < t->count; i++)
		printf("  --%-30s %s\n", t->specs[i].name, t->specs[i].help);
}
