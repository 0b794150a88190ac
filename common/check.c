#include "common/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"

static fatal_hook_fn fatal_hook;

void fatal_set_hook(fatal_hook_fn hook)
{
	fatal_hook = hook;
}

void fatal_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "retnet: fatal%s %s:%d: ", log_rank_tag(), file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	if (fatal_hook)
		fatal_hook(1);
	abort();
}
