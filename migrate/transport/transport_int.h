/* What the transports share, internal to migrate/transport/: the ops
 * table each kind fills in (tcp.c, unix.c, file.c) and the socket helpers
 * the two socket kinds have in common (sock.c). */
#ifndef MINIVMM_MIGRATE_TRANSPORT_INT_H
#define MINIVMM_MIGRATE_TRANSPORT_INT_H

#include "migrate/transport/transport.h"

struct transport_ops {
	const char *name;
	/* NULL where the kind cannot do it (a file does not listen). */
	int (*connect)(const struct transport_addr *a, int timeout_ms,
		       struct transport_conn *c, char *err, size_t errlen);
	int (*listen)(const struct transport_addr *a, struct transport_listener *l,
		      char *err, size_t errlen);
	/* Called once the listener is readable. */
	int (*accept)(struct transport_listener *l, int timeout_ms,
		      struct transport_conn *c, char *err, size_t errlen);
	void (*listener_close)(struct transport_listener *l);
	int (*open_file)(const struct transport_addr *a, bool write,
			 struct transport_conn *c, char *err, size_t errlen);
	ssize_t (*readv)(struct transport_conn *c, const struct iovec *iov, int iovcnt);
	ssize_t (*writev)(struct transport_conn *c, const struct iovec *iov, int iovcnt);
};

extern const struct transport_ops transport_tcp_ops;
extern const struct transport_ops transport_unix_ops;
extern const struct transport_ops transport_file_ops;

/* sock.c */
void sock_set_timeout(int fd, int timeout_ms);
ssize_t sock_readv(struct transport_conn *c, const struct iovec *iov, int iovcnt);
ssize_t sock_writev(struct transport_conn *c, const struct iovec *iov, int iovcnt);
/* A connected stream socket fd as c, with timeout_ms on its I/O. */
void sock_conn_init(struct transport_conn *c, int fd, int timeout_ms,
		    const struct transport_ops *ops);
/* accept4 on l, retried on EINTR, into c (with l's ops and timeout_ms). */
int sock_accept(struct transport_listener *l, int timeout_ms, struct transport_conn *c,
		char *err, size_t errlen);
void sock_listener_close(struct transport_listener *l);

#endif
