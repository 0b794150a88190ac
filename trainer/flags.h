/*
 * flags: the command-line and --config FILE parser shared by retnet-train and
 * retnet-eval. A program describes its flags in a table (name, kind, where in its
 * settings struct, allowed range, help); flags_parse fills the struct from argv and
 * then from the file named by --config for the keys the command line left alone.
 * File lines are "key value" or "key = value" (dashes optional), # comments. Every
 * error is one line naming the flag or file:line and the rule it broke.
 * Pure: no MPI, no files but the config file.
 */
#ifndef RN_FLAGS_H
#define RN_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

#define FLAGS_MAX_PATHS 16
#define FLAGS_PATH_MAX 1024

enum opt_kind {
	OPT_INT,    /* int64_t */
	OPT_FLOAT,  /* double */
	OPT_STRING, /* char[size] */
	OPT_PATHS,  /* char[FLAGS_MAX_PATHS][FLAGS_PATH_MAX] plus an int count */
	OPT_BOOL,   /* bool, set by the bare flag */
};

struct flag_spec {
	const char *name;    /* without the leading dashes */
	enum opt_kind kind;
	size_t offset;       /* into the settings struct */
	size_t count_offset; /* OPT_PATHS: the int count; OPT_STRING: unused */
	double min, max;     /* numbers: the allowed closed range */
	const char *help;
	size_t size;         /* OPT_STRING: the buffer's size */
};

struct flag_table {
	const struct flag_spec *specs;
	size_t count;
};

/* argv[0] skipped. 0, or -1 with one line in err. */
int flags_parse(const struct flag_table *t, void *dst, int argc, char **argv, char *err,
		size_t errlen);
void flags_print_help(const struct flag_table *t);

#endif
