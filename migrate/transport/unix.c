/* Unix-domain stream sockets: unix:PATH. The listener owns the socket
 * file: it is made 0600 before anyone can connect, a stale one (no live
 * socket bound to it) is replaced, anything else at PATH is refused, and it is
 * removed on close if it is still ours. Access is the file's mode and its
 * directory's: docs/migration.md, "Addresses". */
#include "migrate/transport/transport_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int sun_of(const struct transport_addr *a, struct sockaddr_un *sun, char *err,
		  size_t errlen)
{
	size_t n = strlen(a->path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "unix socket path of %zu bytes (1..%zu allowed)", n,
			 sizeof(sun->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun->sun_path, a->path, n);
	return 0;
}

/* Blocking connect with SO_SNDTIMEO set: a Unix connect only waits when
 * the listener's backlog is full, and the timeout bounds that wait. */
static int try_connect(const struct sockaddr_un *sun, int timeout_ms, int *out)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	sock_set_timeout(fd, timeout_ms);
	do
		ret = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		ret = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

static int unix_connect(const struct transport_addr *a, int timeout_ms,
			struct transport_conn *c, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	int fd = -1, ret = sun_of(a, &sun, err, errlen);

	if (ret)
		return ret;
	ret = try_connect(&sun, timeout_ms, &fd);
	if (ret) {
		snprintf(err, errlen, "connect unix:%s: %s", a->path, strerror(-ret));
		return ret;
	}
	sock_conn_init(c, fd, timeout_ms, &transport_unix_ops);
	return 0;
}

/* Whether a live socket is bound at the path. A datagram connect asks
 * without disturbing anyone: a stream socket bound there answers
 * EPROTOTYPE and no connection is made (a stream probe would sit in a
 * waiting target's backlog and be taken for the source), a leftover of a
 * dead process ECONNREFUSED. Returns 1, 0 or -errno. */
static int bound_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret, e;

	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	e = errno;
	close(fd);
	if (ret == 0 || e == EPROTOTYPE)
		return 1;
	return e == ECONNREFUSED ? 0 : -e;
}

/* Something at the path: a socket nobody has bound is a leftover of a
 * target that died and may go; anything else stays and we refuse. */
static int clear_path(const struct transport_addr *a, const struct sockaddr_un *sun,
		      char *err, size_t errlen)
{
	struct stat st;
	int ret;

	if (lstat(a->path, &st) < 0) {
		int e = errno;

		if (e == ENOENT)
			return 0;
		snprintf(err, errlen, "unix:%s: %s", a->path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "unix:%s: exists and is not a socket (not replaced)",
			 a->path);
		return -EEXIST;
	}
	ret = bound_live(sun);
	if (ret == 1) {
		snprintf(err, errlen, "unix:%s: another process listens there", a->path);
		return -EADDRINUSE;
	}
	if (ret < 0) {
		snprintf(err, errlen, "unix:%s: %s", a->path, strerror(-ret));
		return ret;
	}
	if (unlink(a->path) < 0 && errno != ENOENT) {
		int e = errno;

		snprintf(err, errlen, "unix:%s: remove the stale socket: %s", a->path,
			 strerror(e));
		return -e;
	}
	return 0;
}

static int unix_listen(const struct transport_addr *a, struct transport_listener *l,
		       char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, ret = sun_of(a, &sun, err, errlen);

	if (!ret)
		ret = clear_path(a, &sun, err, errlen);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-ret));
		return ret;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "listen on unix:%s: %s", a->path, strerror(-ret));
		close(fd);
		return ret;
	}
	/* Until listen() a connect is refused, so the mode is right before
	 * anyone can get in (bind applied the umask, not 0600). */
	if (chmod(a->path, 0600) < 0 || lstat(a->path, &st) < 0 || listen(fd, 4) < 0) {
		ret = -errno;
		snprintf(err, errlen, "listen on unix:%s: %s", a->path, strerror(-ret));
		unlink(a->path);
		close(fd);
		return ret;
	}
	l->fd = fd;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	snprintf(l->path, sizeof(l->path), "%s", a->path);
	return 0;
}

static void unix_listener_close(struct transport_listener *l)
{
	struct stat st;

	/* Someone may have put another file there since: leave that be. */
	if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
	sock_listener_close(l);
}

const struct transport_ops transport_unix_ops = {
	.name = "unix",
	.connect = unix_connect,
	.listen = unix_listen,
	.accept = sock_accept,
	.listener_close = unix_listener_close,
	.readv = sock_readv,
	.writev = sock_writev,
};
