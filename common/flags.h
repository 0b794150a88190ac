/*
 * flags: the command-line and --config FILE parser every retnet program uses. A
 * program describes its flags in an array of rows (name, type, where in its settings
 * struct, allowed range or choices, default, help); flags_parse fills the struct
 * from the defaults, then argv, then the file named by --config (or a preset the
 * program names) for the keys the command line left alone. File lines are
 * "key value" or "key = value" (dashes optional), # comments. Every error is one
 * line naming the flag or file:line and the rule it broke.
 *
 * Lists of paths (FLAG_PATHS) grow as needed: a program that parsed its flags frees
 * them with flags_free (the structs holding them may be copied, but freed once).
 *
 * Pure: no MPI, no files but the config file. Knows no program's flags: trainer/spec.c
 * holds every program's table.
 */
#ifndef RN_FLAGS_H
#define RN_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

#define FLAGS_PATH_MAX 1024

enum flag_type {
	FLAG_INT,    /* int64_t, within [min, max] */
	FLAG_FLOAT,  /* double, finite, within [min, max] */
	FLAG_TEXT,   /* char[size] */
	FLAG_CHOICE, /* char[size], one of the '|'-separated words of `choices` */
	FLAG_PATHS,  /* struct flag_paths: --flag A B C, or the flag repeated */
	FLAG_BOOL,   /* bool, set by the bare flag; command line only */
};

/* A list of paths, in the order given; grows as needed (flags_free releases it). */
struct flag_paths {
	int n, cap;
	char **path; /* (n) strings, each shorter than FLAGS_PATH_MAX; NULL when cap is 0 */
};

struct flag_row {
	const char *name;     /* without the leading dashes: "hidden-size" */
	enum flag_type type;
	size_t offset;        /* into the settings struct */
	size_t size;          /* FLAG_TEXT, FLAG_CHOICE: the buffer's size */
	double min, max;      /* numbers: the allowed closed range */
	const char *choices;  /* FLAG_CHOICE: "linear|cosine|constant" */
	const char *def;      /* the default as it would be written after the flag; NULL
				 or "" leaves the field zero (a default derived later) */
	const char *help;
};

/* A named config text a program carries with it: --config NAME uses it when no
 * file of that name exists. */
struct flag_preset {
	const char *name;
	const char *text; /* the lines of a config file */
};

struct flag_parse {
	const struct flag_row *rows;
	size_t count;
	const struct flag_preset *presets; /* NULL-terminated by name, or NULL */
	const char *default_preset;        /* applied when no --config is given, or NULL */
	const char *positional;            /* a FLAG_PATHS row that takes the words that
					      are not flags ("-" included), or NULL; with
					      one, any other list flag takes one path per
					      occurrence (--held-out A --held-out B) */
	bool *given;                       /* [count]: set by the command line or config */
};

/* Fills dst (defaults first) from argv (argv[0] skipped). 0; 1 when --help (or -h)
 * was given and nothing else was wrong; -1 with one line in err. */
int flags_parse(const struct flag_parse *p, void *dst, int argc, char **argv, char *err,
		size_t errlen);
/* The rows, one per line: "--name VALUE  help (default D)". */
void flags_print_help(const struct flag_parse *p);

/* One value through a row's rules (range, choices, length); where names it in err.
 * A FLAG_PATHS row appends the value. */
int flags_set(const struct flag_row *row, void *dst, const char *value, const char *where,
	      char *err, size_t errlen);

/* Releases what flags_parse allocated in dst for the rows of p (the lists of paths),
 * leaving them empty. dst must have been zeroed or filled by flags_parse. */
void flags_free(const struct flag_parse *p, void *dst);
/* Empties one list of paths and releases its memory. */
void flag_paths_free(struct flag_paths *paths);

#endif
