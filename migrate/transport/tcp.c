/* TCP: [HOST]:PORT. */
#include "migrate/transport/transport_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* For messages: host:port, brackets around an IPv6 literal. */
static const char *show(const struct transport_addr *a, char *buf, size_t cap)
{
	snprintf(buf, cap, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host,
		 (unsigned)a->port);
	return buf;
}

/* Control messages are tiny and latency is downtime. */
static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int tcp_connect(const struct transport_addr *a, int timeout_ms,
		       struct transport_conn *c, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	char port[8], name[TRANSPORT_HOST_MAX + 16];
	int fd = -1, ret, e = ECONNREFUSED;

	snprintf(port, sizeof(port), "%u", (unsigned)a->port);
	ret = getaddrinfo(a->host, port, &hints, &res);
	if (ret) {
		snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		socklen_t sl = sizeof(e);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			e = errno;
			if (e == EINPROGRESS) {
				p = (struct pollfd){ .fd = fd, .events = POLLOUT };
				ret = poll(&p, 1, timeout_ms);
				if (ret == 0)
					e = ETIMEDOUT;
				else if (ret < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
					e = errno;
			}
		}
		if (e == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "connect %s: %s", show(a, name, sizeof(name)), strerror(e));
		return -e;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	sock_conn_init(c, fd, timeout_ms, &transport_tcp_ops);
	set_nodelay(fd);
	return 0;
}

static int tcp_listen(const struct transport_addr *a, struct transport_listener *l,
		      char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE },
			*res = NULL;
	char port[8], name[TRANSPORT_HOST_MAX + 16];
	int fd, ret, one = 1;

	snprintf(port, sizeof(port), "%u", (unsigned)a->port);
	ret = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, &res);
	if (ret) {
		snprintf(err, errlen, "resolve %s: %s", a->host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		snprintf(err, errlen, "listen on %s: %s", show(a, name, sizeof(name)),
			 strerror(errno));
		close(fd);
		goto out;
	}
	l->fd = fd;
	ret = 0;
out:
	freeaddrinfo(res);
	return ret;
}

static int tcp_accept(struct transport_listener *l, int timeout_ms,
		      struct transport_conn *c, char *err, size_t errlen)
{
	int ret = sock_accept(l, timeout_ms, c, err, errlen);

	if (ret == 0)
		set_nodelay(c->fd);
	return ret;
}

const struct transport_ops transport_tcp_ops = {
	.name = "TCP",
	.connect = tcp_connect,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.listener_close = sock_listener_close,
	.readv = sock_readv,
	.writev = sock_writev,
};
