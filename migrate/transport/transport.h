/* Transports: what the migration stream runs over. A URI names one of
 * them (transport_parse is the only place that reads URIs):
 *
 *   [HOST]:PORT, tcp:[HOST]:PORT   TCP; HOST a name, an IPv4 address or
 *                                  [an IPv6 address]; an empty HOST means
 *                                  every address, and only when listening
 *   unix:PATH                      a Unix-domain stream socket
 *   file:PATH                      a file: the stream as a snapshot
 *
 * A connection is an fd with an ops table; struct stream (proto/stream.h)
 * wraps one and does the framing, the timeouts' polling and the cancel fd.
 * The I/O calls are readv/writev-shaped so that RAM moves straight between
 * guest memory and the kernel, one iovec per page run. */
#ifndef MINIVMM_MIGRATE_TRANSPORT_H
#define MINIVMM_MIGRATE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum transport_kind { TRANSPORT_TCP, TRANSPORT_UNIX, TRANSPORT_FILE };

#define TRANSPORT_HOST_MAX 256
/* file:PATH; unix:PATH is further held to sun_path (107 bytes). */
#define TRANSPORT_PATH_MAX 4096

struct transport_addr {
	enum transport_kind kind;
	char host[TRANSPORT_HOST_MAX]; /* TCP: "" = every address (listening) */
	uint16_t port;                 /* TCP: 1..65535 */
	char path[TRANSPORT_PATH_MAX]; /* UNIX, FILE */
};

struct transport_ops;

/* One open connection (or file). fd -1: closed. */
struct transport_conn {
	int fd;
	const struct transport_ops *ops;
	bool is_stream_socket; /* pollable, timeouts, shutdown; false: a file */
};

/* A listening socket; for unix:PATH it owns the socket file. fd -1: none. */
struct transport_listener {
	int fd;
	const struct transport_ops *ops;
	dev_t dev; /* the socket file we made: removed on close if still ours */
	ino_t ino;
	char path[TRANSPORT_PATH_MAX];
};

/* Parses uri into a. listen: the address is to listen on (an empty TCP
 * host is allowed). Checks syntax only (no name lookup, no file access);
 * on error err says what is wrong with which address. */
int transport_parse(const char *uri, bool listen, struct transport_addr *a,
		    char *err, size_t errlen);

/* timeout_ms bounds the connect and, as SO_SNDTIMEO/SO_RCVTIMEO, every
 * later blocking read and write on the connection. */
int transport_connect(const struct transport_addr *a, int timeout_ms,
		      struct transport_conn *c, char *err, size_t errlen);
int transport_listen(const struct transport_addr *a, struct transport_listener *l,
		     char *err, size_t errlen);
/* Waits up to wait_ms (-1: forever) for a peer: -ETIMEDOUT when none came,
 * -EINTR when a signal cut the wait short. */
int transport_accept(struct transport_listener *l, int wait_ms, int timeout_ms,
		     struct transport_conn *c, char *err, size_t errlen);
void transport_listener_close(struct transport_listener *l);
int transport_open_file(const struct transport_addr *a, bool write,
			struct transport_conn *c, char *err, size_t errlen);
/* Adopts an fd that is already connected (a socketpair, say). */
void transport_wrap_fd(struct transport_conn *c, int fd, enum transport_kind kind);

/* Whether dest_uri (a source's destination) is listen_uri (this
 * target's --incoming address) seen from this host: same kind, a TCP
 * port with a host that is this host's (and the listening host when
 * that is not every address), or the same unix socket file. */
bool transport_same_endpoint(const char *dest_uri, const char *listen_uri);

/* One readv/writev: bytes moved, 0 at end of input, or -errno. Writes on
 * sockets never raise SIGPIPE. */
ssize_t transport_readv(struct transport_conn *c, const struct iovec *iov, int iovcnt);
ssize_t transport_writev(struct transport_conn *c, const struct iovec *iov, int iovcnt);
/* Sets the blocking-I/O bound of a socket (no-op on a file). */
void transport_set_timeout(struct transport_conn *c, int timeout_ms);
/* Bounds what a socket may hold unsent or unacknowledged to about bytes
 * (SO_SNDBUF, which also ends the kernel's autotuning of it): a write on
 * another connection over the same link then queues behind at most that
 * much of this one's data. Never a smaller bound than asked: beyond
 * net.core.wmem_max it needs SO_SNDBUFFORCE (CAP_NET_ADMIN), and without
 * that the socket is left as it was (-ERANGE). *got: the bound the kernel
 * applied. 0, or -errno (-ENOTSOCK on a file). */
int transport_bound_send_queue(struct transport_conn *c, uint32_t bytes, uint32_t *got);
/* What the kernel measured of a TCP connection's path: the lowest round
 * trip (its base delay, without queueing) and the segment size it sends.
 * 0, or -ENOTSUP (not TCP, or nothing measured yet). */
struct transport_path {
	uint32_t min_rtt_us;
	uint32_t mss;
};
int transport_path_info(const struct transport_conn *c, struct transport_path *p);
/* What a TCP socket holds unsent or unacknowledged (SIOCOUTQ): on a
 * bottleneck with a FIFO, about what sits ahead of another connection's
 * next write over the same link. 0, or -ENOTSUP (not TCP), -errno. */
int transport_send_queued(const struct transport_conn *c, uint32_t *bytes);
/* Marks a TCP socket's packets as latency-sensitive (SO_PRIORITY
 * TC_PRIO_INTERACTIVE for this host's queues, IP_TOS low-delay for the
 * hops after it): a queue that knows priorities (pfifo_fast, prio, and
 * routers honouring TOS) sends them ahead of bulk data on the same
 * link; a plain FIFO ignores it. 0, or -ENOTSUP (not TCP), -errno. */
int transport_prefer_latency(struct transport_conn *c);
/* Cuts a socket off both ways, from any thread, so that blocked I/O on
 * it returns at once; the fd stays open until transport_close. */
void transport_shutdown(struct transport_conn *c);
void transport_close(struct transport_conn *c);

#endif
