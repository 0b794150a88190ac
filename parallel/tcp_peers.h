/*
 * tcp_peers: has a peer of this process's TCP connections gone? A process that dies
 * (killed, its node lost) has its sockets closed by the kernel. Open MPI's TCP
 * transport keeps its connections open for the whole run; when one closes in a
 * blocked collective, it either closes its end and waits on (printing "peer hung
 * up"), or does not read it and waits on (the socket stays in CLOSE_WAIT): either
 * way the ranks left would wait until something else ends the job. This looks,
 * from outside the MPI library, at the TCP sockets the process holds (/proc/self/fd)
 * and their state (/proc/self/net/tcp and tcp6), scan after scan.
 *
 * Linux only; sees TCP transports only (not shared memory, not InfiniBand verbs or
 * UCX); a link that is down (a partition) keeps its connections established: only
 * a timeout finds that. Does not decide what to do about it.
 */
#ifndef RN_TCP_PEERS_H
#define RN_TCP_PEERS_H

#include <stddef.h>

struct tcp_peers;

struct tcp_peers *tcp_peers_create(void);
void tcp_peers_free(struct tcp_peers *p);

/*
 * Scans this process's TCP connections. Returns how many were closed by their peer
 * (in CLOSE_WAIT now, or open at the previous scan and gone now), with the first
 * one's remote address ("10.0.0.12", or IPv6) in addr; 0 if none; -1 if /proc
 * cannot be read. The first scan only learns what is open.
 */
int tcp_peers_lost(struct tcp_peers *p, char *addr, size_t len);

#endif
