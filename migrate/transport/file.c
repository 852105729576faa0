/* file:PATH: the stream as a snapshot (cold migration). No polling and no
 * timeouts apply: a local file does not stall like a peer. */
#include "migrate/transport/transport_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A snapshot holds all of guest RAM: it is made new, 0600, and never
 * through a symlink; an existing file is refused, not overwritten
 * (docs/migration.md, "Robustness"). */
static int file_open(const struct transport_addr *a, bool write,
		     struct transport_conn *c, char *err, size_t errlen)
{
	int fd = open(a->path, write ? O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC :
		      O_RDONLY | O_CLOEXEC, 0600);

	if (fd < 0) {
		int e = errno;

		if (write && e == EEXIST)
			snprintf(err, errlen, "open %s: the file exists (a snapshot is never "
				 "written over an existing file; remove it first)", a->path);
		else
			snprintf(err, errlen, "open %s: %s", a->path, strerror(e));
		return -e;
	}
	c->fd = fd;
	c->ops = &transport_file_ops;
	c->is_stream_socket = false;
	return 0;
}

static ssize_t file_readv(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	ssize_t n = readv(c->fd, iov, iovcnt);

	return n < 0 ? -errno : n;
}

static ssize_t file_writev(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	ssize_t n = writev(c->fd, iov, iovcnt);

	return n < 0 ? -errno : n;
}

const struct transport_ops transport_file_ops = {
	.name = "file",
	.open_file = file_open,
	.readv = file_readv,
	.writev = file_writev,
};
