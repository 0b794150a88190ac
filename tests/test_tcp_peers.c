/*
 * tcp_peers on a real loopback connection: nothing reported while both ends are
 * open; the peer's close seen as CLOSE_WAIT, with its address, for as long as it
 * lasts; a connection gone between two scans seen once; the first scan only learns
 * what is open.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parallel/tcp_peers.h"
#include "tests/harness.h"

/* A connected pair over 127.0.0.1: *client, *server. */
static int connect_pair(int *client, int *server)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -1;
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	*server = accept(l, NULL, NULL);
	close(l);
	return *server < 0 ? -1 : 0;
}

int main(void)
{
	struct tcp_peers *p = tcp_peers_create();
	char addr[64];
	int c = -1, s = -1, n;

	if (connect_pair(&c, &s)) {
		EXPECT_TRUE(0, "a loopback connection");
		return test_finish();
	}
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 0, "first scan: nothing lost (%d)", n);
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 0, "both ends open: nothing lost (%d)", n);

	/* The peer goes: the client's socket is in CLOSE_WAIT. Both ends are this
	 * process's here, so the server's, gone since the last scan, counts too. */
	close(s);
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 2 && !strcmp(addr, "127.0.0.1"),
		    "peer closed: 2 lost from 127.0.0.1 (%d, '%s')", n, addr);
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 1, "still in CLOSE_WAIT: still lost (%d)", n);

	close(c); /* the process closes its end too: gone since the last scan, once */
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 1 && !strcmp(addr, "127.0.0.1"),
		    "closed between scans: 1 lost from 127.0.0.1 (%d, '%s')", n, addr);
	n = tcp_peers_lost(p, addr, sizeof(addr));
	EXPECT_TRUE(n == 0, "and not again (%d)", n);

	tcp_peers_free(p);
	return test_finish();
}
