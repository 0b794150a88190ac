#include "parallel/tcp_peers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"

#define MAX_CONNS 4096
#define TCP_ESTABLISHED 1 /* include/net/tcp_states.h */
#define TCP_CLOSE_WAIT 8

struct conn {
	unsigned long inode;
	char remote[48];
};

struct tcp_peers {
	struct conn *open, *now; /* [MAX_CONNS]: the previous scan's, this scan's */
	int n_open;
	unsigned long *sockets;  /* [MAX_CONNS] this process's socket inodes, sorted */
	bool scanned;
};

static int cmp_ul(const void *a, const void *b)
{
	const unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

static int cmp_conn(const void *a, const void *b)
{
	return cmp_ul(&((const struct conn *)a)->inode, &((const struct conn *)b)->inode);
}

struct tcp_peers *tcp_peers_create(void)
{
	struct tcp_peers *p = xcalloc(1, sizeof(*p));

	p->open = xcalloc(MAX_CONNS, sizeof(*p->open));
	p->now = xcalloc(MAX_CONNS, sizeof(*p->now));
	p->sockets = xcalloc(MAX_CONNS, sizeof(*p->sockets));
	return p;
}

void tcp_peers_free(struct tcp_peers *p)
{
	if (!p)
		return;
	free(p->open);
	free(p->now);
	free(p->sockets);
	free(p);
}

/* The inodes of this process's sockets, sorted; their count, or -1. */
static int own_sockets(unsigned long *inode, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) && n < max) {
		char path[300], link[64];
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (!strncmp(link, "socket:[", 8))
			inode[n++] = strtoul(link + 8, NULL, 10);
	}
	closedir(d);
	qsort(inode, (size_t)n, sizeof(*inode), cmp_ul);
	return n;
}

/* /proc/net/tcp's "0100007F:1F90" (v4) or 32 hex digits (v6), each 32-bit word in
 * host order, as text. */
static void remote_text(const char *hex, int v6, char *out, size_t len)
{
	unsigned char bytes[16];
	const int words = v6 ? 4 : 1;

	for (int w = 0; w < words; w++) {
		char part[9];
		uint32_t v;

		memcpy(part, hex + 8 * w, 8);
		part[8] = '\0';
		v = (uint32_t)strtoul(part, NULL, 16);
		memcpy(bytes + 4 * w, &v, 4);
	}
	if (!inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, out, (socklen_t)len))
		snprintf(out, len, "?");
}

/* Appends this process's established and CLOSE_WAIT connections of one file to
 * p->now; counts the CLOSE_WAIT ones into *lost (the first's address in addr). */
static int scan(struct tcp_peers *p, int n_sockets, const char *file, int v6, int n,
		int *lost, char *addr, size_t len)
{
	FILE *f = fopen(file, "r");
	char line[512];

	if (!f)
		return n;
	if (!fgets(line, sizeof(line), f)) { /* the header */
		fclose(f);
		return n;
	}
	while (fgets(line, sizeof(line), f) && n < MAX_CONNS) {
		char local[64], remote[64];
		unsigned st;
		unsigned long ino;

		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*u %*d %lu", local, remote, &st,
			   &ino) != 4 || (st != TCP_ESTABLISHED && st != TCP_CLOSE_WAIT))
			continue;
		if (!bsearch(&ino, p->sockets, (size_t)n_sockets, sizeof(ino), cmp_ul))
			continue;
		p->now[n].inode = ino;
		remote_text(remote, v6, p->now[n].remote, sizeof(p->now[n].remote));
		if (st == TCP_CLOSE_WAIT && (*lost)++ == 0)
			snprintf(addr, len, "%s", p->now[n].remote);
		n++;
	}
	fclose(f);
	return n;
}

int tcp_peers_lost(struct tcp_peers *p, char *addr, size_t len)
{
	const int n_sockets = own_sockets(p->sockets, MAX_CONNS);
	struct conn *swap;
	int n, lost = 0;

	if (n_sockets < 0)
		return -1;
	if (len)
		addr[0] = '\0';
	n = scan(p, n_sockets, "/proc/self/net/tcp", 0, 0, &lost, addr, len);
	n = scan(p, n_sockets, "/proc/self/net/tcp6", 1, n, &lost, addr, len);
	qsort(p->now, (size_t)n, sizeof(*p->now), cmp_conn);
	/* open at the previous scan, gone now: closed by this process after its peer
	 * closed it (a process does not close its own connections mid-run) */
	for (int i = 0; p->scanned && i < p->n_open; i++)
		if (!bsearch(&p->open[i], p->now, (size_t)n, sizeof(*p->now), cmp_conn) &&
		    lost++ == 0)
			snprintf(addr, len, "%s", p->open[i].remote);
	swap = p->open;
	p->open = p->now;
	p->now = swap;
	p->n_open = n;
	p->scanned = true;
	return lost;
}
