/* Socket I/O shared by the TCP and Unix transports. */
#include "migrate/transport/transport_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

void sock_set_timeout(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

ssize_t sock_readv(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	ssize_t n = readv(c->fd, iov, iovcnt);

	return n < 0 ? -errno : n;
}

/* sendmsg rather than writev: MSG_NOSIGNAL turns a peer that went away
 * into EPIPE instead of a SIGPIPE that would kill the VMM. */
ssize_t sock_writev(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);

	return n < 0 ? -errno : n;
}

void sock_conn_init(struct transport_conn *c, int fd, int timeout_ms,
		    const struct transport_ops *ops)
{
	sock_set_timeout(fd, timeout_ms);
	c->fd = fd;
	c->ops = ops;
	c->is_stream_socket = true;
}

int sock_accept(struct transport_listener *l, int timeout_ms, struct transport_conn *c,
		char *err, size_t errlen)
{
	int fd;

	do
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "accept: %s", strerror(e));
		return -e;
	}
	sock_conn_init(c, fd, timeout_ms, l->ops);
	return 0;
}

void sock_listener_close(struct transport_listener *l)
{
	close(l->fd);
	l->fd = -1;
}
