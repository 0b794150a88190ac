#define _GNU_SOURCE /* sched_getaffinity, CPU_* */
#include "parallel/placement.h"

#include <mpi.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

#define HOST_LEN MPI_MAX_PROCESSOR_NAME
#define CPUS_LEN 256

struct where {
	char host[HOST_LEN];
	char cpus[CPUS_LEN]; /* "0-3,8", cut with "..." if longer */
	int ncpus;   /* in cpus */
	int online;  /* CPUs of the node (sysconf) */
	int threads;
};

/* "0-3,8,10-11" into buf: the set as ranges. */
static void format_set(char *buf, size_t len, const cpu_set_t *set)
{
	size_t at = 0;

	buf[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE; c++) {
		int end = c;
		int n;

		if (!CPU_ISSET(c, set))
			continue;
		while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, set))
			end++;
		n = end == c ? snprintf(buf + at, len - at, "%s%d", at ? "," : "", c)
			     : snprintf(buf + at, len - at, "%s%d-%d", at ? "," : "", c, end);
		if (n < 0 || (size_t)n >= len - at) {
			snprintf(buf + (len > 4 ? len - 4 : 0), 4, "...");
			return;
		}
		at += (size_t)n;
		c = end;
	}
}

/* "0-3" or "0,2,5": the ranks of w[] on host, ascending; returns how many. */
static int ranks_on(char *buf, size_t len, const struct where *w, int world, const char *host)
{
	size_t at = 0;
	int count = 0;

	buf[0] = '\0';
	for (int r = 0; r < world; r++) {
		int end = r, n;

		if (strcmp(w[r].host, host))
			continue;
		while (end + 1 < world && !strcmp(w[end + 1].host, host))
			end++;
		count += end - r + 1;
		n = end == r ? snprintf(buf + at, len - at, "%s%d", at ? "," : "", r)
			     : snprintf(buf + at, len - at, "%s%d-%d", at ? "," : "", r, end);
		if (n < 0 || (size_t)n >= len - at)
			return count;
		at += (size_t)n;
		r = end;
	}
	return count;
}

void placement_report(const char *program, int threads_per_rank)
{
	struct where me, *all = NULL;
	cpu_set_t set;
	int rank, world, len = 0;

	memset(&me, 0, sizeof(me));
	CHECK_MPI(MPI_Get_processor_name(me.host, &len));
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		format_set(me.cpus, sizeof(me.cpus), &set);
		me.ncpus = CPU_COUNT(&set);
	} else {
		snprintf(me.cpus, sizeof(me.cpus), "?");
	}
	me.online = (int)sysconf(_SC_NPROCESSORS_ONLN);
	me.threads = threads_per_rank;
	CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
	if (rank == 0)
		all = xcalloc((size_t)world, sizeof(*all));
	/* collective: all ranks of MPI_COMM_WORLD */
	CHECK_MPI(MPI_Gather(&me, (int)sizeof(me), MPI_BYTE, all, (int)sizeof(me), MPI_BYTE, 0,
			     MPI_COMM_WORLD));
	if (rank != 0)
		return;
	for (int r = 0; r < world; r++) {
		char ranks[256], line[1024];
		size_t at;
		int first = 1, n, threads = 0, crowded = -1;
		cpu_set_t uni;
		bool seen = false;

		for (int q = 0; q < r && !seen; q++)
			seen = !strcmp(all[q].host, all[r].host);
		if (seen)
			continue;
		n = ranks_on(ranks, sizeof(ranks), all, world, all[r].host);
		at = (size_t)snprintf(line, sizeof(line), "%s: placement: node %s ranks %s (CPUs ",
				      program, all[r].host, ranks);
		CPU_ZERO(&uni);
		for (int q = r; q < world; q++) {
			if (strcmp(all[q].host, all[r].host))
				continue;
			threads += all[q].threads;
			if (crowded < 0 && all[q].ncpus < all[q].online && all[q].threads > all[q].ncpus)
				crowded = q;
			/* the union of the ranks' sets, from their text: ranges of ints */
			for (const char *p = all[q].cpus; *p >= '0' && *p <= '9';) {
				char *end;
				long a = strtol(p, &end, 10), b = a;

				if (*end == '-')
					b = strtol(end + 1, &end, 10);
				for (long c = a; c <= b && c < CPU_SETSIZE; c++)
					CPU_SET((int)c, &uni);
				p = *end == ',' ? end + 1 : end;
			}
			if (at < sizeof(line))
				at += (size_t)snprintf(line + at, sizeof(line) - at, "%s%s",
						       first ? "" : " | ", all[q].cpus);
			first = 0;
		}
		log0("%s)\n", line);
		/* Bound or confined to fewer CPUs than they run threads: a binding that is
		 * not the one meant (ranks left unbound on purpose share all the CPUs). */
		if (crowded >= 0)
			log_warn("node %s: rank %d runs %d threads on %d CPU%s (%s): bind each rank "
				 "to as many cores as it runs threads", all[r].host, crowded,
				 all[crowded].threads, all[crowded].ncpus,
				 all[crowded].ncpus == 1 ? "" : "s", all[crowded].cpus);
		else if (CPU_COUNT(&uni) < all[r].online && threads > CPU_COUNT(&uni)) {
			char cpus[CPUS_LEN];

			format_set(cpus, sizeof(cpus), &uni);
			log_warn("node %s: %d ranks x %d threads confined to %d of its %d CPUs "
				 "(%s): the launcher gave the ranks too few CPUs", all[r].host, n,
				 all[r].threads, CPU_COUNT(&uni), all[r].online, cpus);
		}
	}
	free(all);
}
