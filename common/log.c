#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

static int rank_self;
static char rank_tag[32];

void log_set_rank(int rank, int world_size)
{
	rank_self = rank;
	if (world_size > 1)
		snprintf(rank_tag, sizeof(rank_tag), " [rank %d]", rank);
	else
		rank_tag[0] = '\0';
}

int log_rank(void)
{
	return rank_self;
}

const char *log_rank_tag(void)
{
	return rank_tag;
}

void log0(const char *fmt, ...)
{
	va_list ap;

	if (rank_self != 0)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void log_line(const char *kind, const char *fmt, va_list ap)
{
	char line[4096];
	int n = snprintf(line, sizeof(line), "retnet: %s: ", kind);

	/* One write per line: stderr is unbuffered, and mpirun forwards each rank's
	 * stream as it comes, so a line written in pieces interleaves with other ranks'. */
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (n > (int)sizeof(line) - 40)
		n = (int)sizeof(line) - 40;
	snprintf(line + n, sizeof(line) - (size_t)n, "%s\n", rank_tag);
	fputs(line, stderr);
	fflush(stderr);
}

void log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("error", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("warning", fmt, ap);
	va_end(ap);
}

int log_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}
