#include "common/flags.h"

#include "common/log.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct flag_row *find_row(const struct flag_parse *p, const char *name,
				       size_t len)
{
	for (size_t i = 0; i < p->count; i++)
		if (strlen(p->rows[i].name) == len && !strncmp(p->rows[i].name, name, len))
			return &p->rows[i];
	return NULL;
}

/* Is word one of the '|'-separated choices? */
static bool is_choice(const char *choices, const char *word)
{
	size_t n = strlen(word);

	for (const char *c = choices; *c;) {
		size_t len = strcspn(c, "|");

		if (len == n && !strncmp(c, word, n))
			return true;
		c += len + (c[len] == '|');
	}
	return false;
}

/* "linear, cosine or constant" */
static void choices_text(char *buf, size_t len, const char *choices)
{
	size_t at = 0;
	int total = 1, k = 0;

	for (const char *c = choices; *c; c++)
		total += *c == '|';
	for (const char *c = choices; *c && at < len;) {
		size_t n = strcspn(c, "|");
		const char *sep = k == 0 ? "" : k == total - 1 ? " or " : ", ";

		at += (size_t)snprintf(buf + at, len - at, "%s%.*s", sep, (int)n, c);
		c += n + (c[n] == '|');
		k++;
	}
}

int flags_set(const struct flag_row *o, void *dst, const char *value, const char *where,
	      char *err, size_t errlen)
{
	char *base = dst, *end;

	switch (o->type) {
	case FLAG_INT: {
		long long v;

		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end)
			return log_fail(err, errlen, "%s: '%s' is not an integer", where, value);
		if ((double)v < o->min || (double)v > o->max)
			return log_fail(err, errlen, "%s: %lld is out of range [%.0f, %.0f]", where,
					v, o->min, o->max);
		*(int64_t *)(base + o->offset) = v;
		return 0;
	}
	case FLAG_FLOAT: {
		double v;

		errno = 0;
		v = strtod(value, &end);
		if (errno || end == value || *end || !isfinite(v))
			return log_fail(err, errlen, "%s: '%s' is not a finite number", where, value);
		if (v < o->min || v > o->max)
			return log_fail(err, errlen, "%s: %g is out of range [%g, %g]", where, v,
					o->min, o->max);
		*(double *)(base + o->offset) = v;
		return 0;
	}
	case FLAG_CHOICE:
		if (!is_choice(o->choices, value)) {
			char list[256];

			choices_text(list, sizeof(list), o->choices);
			return log_fail(err, errlen, "%s: '%s' is not %s", where, value, list);
		}
		/* fall through */
	case FLAG_TEXT:
		if (strlen(value) >= o->size)
			return log_fail(err, errlen, "%s: value longer than %zu characters", where,
					o->size - 1);
		snprintf(base + o->offset, o->size, "%s", value);
		return 0;
	case FLAG_PATHS: {
		struct flag_paths *paths = (struct flag_paths *)(base + o->offset);
		size_t len = strlen(value);

		if (len >= FLAGS_PATH_MAX)
			return log_fail(err, errlen, "%s: path longer than %d characters", where,
					FLAGS_PATH_MAX - 1);
		if (paths->n == paths->cap) {
			int cap = paths->cap ? 2 * paths->cap : 8;
			char **grown = cap > 0 && (size_t)cap < SIZE_MAX / sizeof(char *)
					       ? realloc(paths->path, sizeof(char *) * (size_t)cap)
					       : NULL;

			if (!grown)
				return log_fail(err, errlen, "%s: out of memory for %d paths", where,
						paths->n + 1);
			paths->path = grown;
			paths->cap = cap;
		}
		if (!(paths->path[paths->n] = malloc(len + 1)))
			return log_fail(err, errlen, "%s: out of memory", where);
		memcpy(paths->path[paths->n++], value, len + 1);
		return 0;
	}
	case FLAG_BOOL:
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

/* One line of a config text; sets nothing for a key the command line gave (cmd). */
static int config_line(const struct flag_parse *p, const bool *cmd, void *dst, char *line,
		       const char *where0, char *err, size_t errlen)
{
	char *key, *value, *hash = strchr(line, '#'), where[FLAGS_PATH_MAX + 128];
	const struct flag_row *o;

	if (hash)
		*hash = '\0';
	key = trim(line);
	if (!*key)
		return 0;
	value = key + strcspn(key, " \t=");
	if (*value) {
		*value++ = '\0';
		value = trim(value);
		if (*value == '=')
			value = trim(value + 1);
	}
	while (*key == '-')
		key++;
	snprintf(where, sizeof(where), "%s: %s", where0, key);
	o = find_row(p, key, strlen(key));
	if (!o || o->type == FLAG_BOOL)
		return log_fail(err, errlen, "%s: unknown key", where);
	if (!*value)
		return log_fail(err, errlen, "%s: missing value", where);
	if (cmd[o - p->rows])
		return 0;
	p->given[o - p->rows] = true;
	return flags_set(o, dst, value, where, err, errlen);
}

static int parse_file(const struct flag_parse *p, const bool *cmd, void *dst, const char *path,
		      char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[FLAGS_PATH_MAX + 32];
	int lineno = 0, rc = 0;

	if (!f)
		return log_fail(err, errlen, "--config: cannot open '%s': %s", path,
				strerror(errno));
	while (!rc && fgets(line, sizeof(line), f)) {
		lineno++;
		/* fgets splits a longer line: its tail would be read as a line of its own
		 * (a long comment's tail as a key, say). */
		if (!strchr(line, '\n') && !feof(f)) {
			rc = log_fail(err, errlen, "%s:%d: line longer than %zu characters", path,
				      lineno, sizeof(line) - 2);
			break;
		}
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		rc = config_line(p, cmd, dst, line, where, err, errlen);
	}
	fclose(f);
	return rc;
}

static int parse_preset(const struct flag_parse *p, const bool *cmd, void *dst,
			const struct flag_preset *pr, char *err, size_t errlen)
{
	char line[4096], where[128];
	int lineno = 0;

	for (const char *s = pr->text; *s;) {
		size_t n = strcspn(s, "\n");

		lineno++;
		snprintf(line, sizeof(line), "%.*s", (int)n, s);
		snprintf(where, sizeof(where), "preset %s:%d", pr->name, lineno);
		if (config_line(p, cmd, dst, line, where, err, errlen))
			return -1;
		s += n + (s[n] == '\n');
	}
	return 0;
}

static const struct flag_preset *find_preset(const struct flag_parse *p, const char *name)
{
	for (const struct flag_preset *pr = p->presets; pr && pr->name; pr++)
		if (!strcmp(pr->name, name))
			return pr;
	return NULL;
}

/* --config NAME: a file of that name, or else the program's preset. */
static int parse_config(const struct flag_parse *p, const bool *cmd, void *dst,
			const char *name, char *err, size_t errlen)
{
	const struct flag_preset *pr = find_preset(p, name);
	struct stat st;

	if (pr && stat(name, &st) != 0)
		return parse_preset(p, cmd, dst, pr, err, errlen);
	return parse_file(p, cmd, dst, name, err, errlen);
}

static int set_defaults(const struct flag_parse *p, void *dst, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->count; i++) {
		const struct flag_row *o = &p->rows[i];
		char where[160];

		p->given[i] = false;
		if (!o->def || !o->def[0] || o->type == FLAG_BOOL)
			continue;
		snprintf(where, sizeof(where), "default of --%s", o->name);
		if (flags_set(o, dst, o->def, where, err, errlen))
			return -1;
	}
	return 0;
}

static int parse_args(const struct flag_parse *p, void *dst, int argc, char **argv,
		      const char **config, bool *help, char *err, size_t errlen)
{
	const struct flag_row *rest = p->positional ? find_row(p, p->positional,
							       strlen(p->positional)) : NULL;
	bool flags_done = false, rest_given = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq, *value = NULL;
		const struct flag_row *o;
		char where[256];

		if (rest && (flags_done || arg[0] != '-' || !strcmp(arg, "-"))) {
			if (!rest_given)
				flag_paths_free((struct flag_paths *)((char *)dst + rest->offset));
			rest_given = p->given[rest - p->rows] = true;
			snprintf(where, sizeof(where), "'%s'", arg);
			if (flags_set(rest, dst, arg, where, err, errlen))
				return -1;
			continue;
		}
		if (rest && !strcmp(arg, "--")) {
			flags_done = true;
			continue;
		}
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			*help = true;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			return log_fail(err, errlen, "'%s': expected a flag starting with --", arg);
		eq = strchr(arg, '=');
		if (eq)
			value = eq + 1;
		else
			eq = arg + strlen(arg);
		if ((size_t)(eq - arg) == strlen("--config") && !strncmp(arg, "--config", 8)) {
			if (!value && i + 1 >= argc)
				return log_fail(err, errlen, "--config: missing value");
			*config = value ? value : argv[++i];
			continue;
		}
		o = find_row(p, arg + 2, (size_t)(eq - arg - 2));
		snprintf(where, sizeof(where), "--%.*s", (int)(eq - arg - 2), arg + 2);
		if (!o)
			return log_fail(err, errlen, "%s: unknown flag (see --help)", where);
		if (o->type == FLAG_BOOL) {
			if (value)
				return log_fail(err, errlen, "%s: takes no value", where);
			flags_set(o, dst, "", where, err, errlen);
			p->given[o - p->rows] = true;
			continue;
		}
		if (!value) {
			if (i + 1 >= argc ||
			    (!strncmp(argv[i + 1], "--", 2) && o->type != FLAG_FLOAT))
				return log_fail(err, errlen, "%s: missing value", where);
			value = argv[++i];
		}
		if (o->type == FLAG_PATHS && !p->given[o - p->rows])
			flag_paths_free((struct flag_paths *)((char *)dst + o->offset));
		if (flags_set(o, dst, value, where, err, errlen))
			return -1;
		/* --data-path A B C: the following non-flag words are more paths, unless
		 * the program takes words that are not flags (then they are those). */
		while (o->type == FLAG_PATHS && !rest && !eq[0] && i + 1 < argc &&
		       strncmp(argv[i + 1], "--", 2) != 0)
			if (flags_set(o, dst, argv[++i], where, err, errlen))
				return -1;
		p->given[o - p->rows] = true;
	}
	return 0;
}

int flags_parse(const struct flag_parse *p, void *dst, int argc, char **argv, char *err,
		size_t errlen)
{
	const char *config = NULL;
	bool help = false, *cmd = calloc(p->count + 1, sizeof(bool));
	int rc;

	if (!cmd)
		return log_fail(err, errlen, "out of memory parsing flags");
	rc = set_defaults(p, dst, err, errlen);
	if (!rc)
		rc = parse_args(p, dst, argc, argv, &config, &help, err, errlen);
	/* the config file or preset sets only what the command line did not */
	memcpy(cmd, p->given, p->count * sizeof(bool));
	if (!rc && config)
		rc = parse_config(p, cmd, dst, config, err, errlen);
	else if (!rc && p->default_preset)
		rc = parse_preset(p, cmd, dst, find_preset(p, p->default_preset), err, errlen);
	free(cmd);
	if (rc)
		return -1;
	return help ? 1 : 0;
}

void flags_print_help(const struct flag_parse *p)
{
	char left[96];

	printf("  --%-38s %s\n", "config FILE", "read flags from FILE (the command line wins)");
	for (const struct flag_preset *pr = p->presets; pr && pr->name; pr++)
		printf("  --config %-31s %s%s\n", pr->name, "a built-in configuration",
		       p->default_preset && !strcmp(p->default_preset, pr->name) ? " (default)"
										 : "");
	for (size_t i = 0; i < p->count; i++) {
		const struct flag_row *o = &p->rows[i];
		const char *arg = o->type == FLAG_BOOL	  ? ""
				  : o->type == FLAG_PATHS ? " PATH..."
				  : o->type == FLAG_CHOICE ? " WORD"
				  : o->type == FLAG_TEXT   ? " TEXT"
				  : o->type == FLAG_FLOAT  ? " X"
							   : " N";

		if (p->positional && !strcmp(o->name, p->positional))
			continue;
		snprintf(left, sizeof(left), "%s%s", o->name, arg);
		printf("  --%-38s %s", left, o->help);
		if (o->type == FLAG_CHOICE)
			printf(" (%s)", o->choices);
		/* a program with a default configuration takes its values from there */
		if (o->def && o->def[0] && !p->default_preset)
			printf(" [%s]", o->def);
		printf("\n");
	}
}

void flag_paths_free(struct flag_paths *paths)
{
	for (int i = 0; i < paths->n; i++)
		free(paths->path[i]);
	free(paths->path);
	memset(paths, 0, sizeof(*paths));
}

void flags_free(const struct flag_parse *p, void *dst)
{
	for (size_t i = 0; i < p->count; i++)
		if (p->rows[i].type == FLAG_PATHS)
			flag_paths_free((struct flag_paths *)((char *)dst + p->rows[i].offset));
}
