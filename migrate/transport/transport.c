/* The URI parser and the calls that dispatch to a transport's ops. */
#include "migrate/transport/transport_int.h"

#include <errno.h>
#include <linux/sockios.h>
#include <linux/pkt_sched.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BAD(...) do {                                                       \
		int n_ = snprintf(err, errlen, "bad address '%.200s': ", uri); \
		if (n_ > 0 && (size_t)n_ < errlen)                             \
			snprintf(err + n_, errlen - (size_t)n_, __VA_ARGS__);  \
		return -EINVAL;                                                \
	} while (0)

#define WANT "want [HOST]:PORT, unix:PATH or file:PATH"

static const struct transport_ops *ops_for(enum transport_kind k)
{
	switch (k) {
	case TRANSPORT_TCP:
		return &transport_tcp_ops;
	case TRANSPORT_UNIX:
		return &transport_unix_ops;
	case TRANSPORT_FILE:
		return &transport_file_ops;
	}
	return NULL;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Paths go into messages and monitor commands: no control characters. */
static bool path_ok(const char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static bool name_ok(const char *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
			return false;
	return true;
}

/* An IPv6 literal, with an optional %zone: getaddrinfo judges the rest. */
static bool v6_ok(const char *h, size_t n)
{
	bool zone = false;

	if (!memchr(h, ':', n))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];

		if (c == '%' && !zone && i > 0 && i + 1 < n)
			zone = true;
		else if (zone ? !(is_alnum(c) || c == '.' || c == '-' || c == '_') :
			 !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			   (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
			return false;
	}
	return true;
}

static int parse_port(const char *uri, const char *p, uint16_t *port, char *err,
		      size_t errlen)
{
	unsigned long v = 0;
	size_t n = strlen(p);

	if (n == 0)
		BAD("no port (%s)", WANT);
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			BAD("port '%.20s' is not a number", p);
	if (n > 5 || (v = strtoul(p, NULL, 10)) < 1 || v > 65535)
		BAD("port %.20s is out of range (1-65535)", p);
	*port = (uint16_t)v;
	return 0;
}

static int parse_path(const char *uri, const char *p, size_t max, const char *what,
		      char *out, char *err, size_t errlen)
{
	size_t n = strlen(p);

	if (n == 0)
		BAD("no path after '%s:'", what);
	if (n >= max)
		BAD("the %s path is %zu bytes, at most %zu", what, n, max - 1);
	if (!path_ok(p))
		BAD("control characters in the path");
	memcpy(out, p, n + 1);
	return 0;
}

static int parse_tcp(const char *uri, const char *s, bool listen,
		     struct transport_addr *a, char *err, size_t errlen)
{
	const char *host = s, *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			BAD("no ']' after the IPv6 address");
		host = s + 1;
		hl = (size_t)(close - host);
		if (close[1] != ':')
			BAD("no ':PORT' after ']'");
		colon = close + 1;
		if (hl == 0 || !v6_ok(host, hl))
			BAD("'%.*s' is not an IPv6 address", (int)(hl < 64 ? hl : 64), host);
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			BAD("%s", WANT);
		hl = (size_t)(colon - s);
		if (memchr(s, ':', hl) && v6_ok(host, hl))
			BAD("an IPv6 address goes in brackets: [ADDR]:PORT");
		if (!name_ok(host, hl))
			BAD("the host has characters a host name or address cannot have");
		if (hl == 0 && !listen)
			BAD("no host (an empty host means every address, for --incoming only)");
	}
	if (hl >= sizeof(a->host))
		BAD("the host is %zu bytes, at most %zu", hl, sizeof(a->host) - 1);
	memcpy(a->host, host, hl);
	a->host[hl] = '\0';
	return parse_port(uri, colon + 1, &a->port, err, errlen);
}

int transport_parse(const char *uri, bool listen, struct transport_addr *a,
		    char *err, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	if (!uri || !*uri) {
		snprintf(err, errlen, "no migration address (%s)", WANT);
		return -EINVAL;
	}
	if (!strncmp(uri, "unix:", 5)) {
		a->kind = TRANSPORT_UNIX;
		return parse_path(uri, uri + 5, sizeof(((struct sockaddr_un *)0)->sun_path),
				  "unix", a->path, err, errlen);
	}
	if (!strncmp(uri, "file:", 5)) {
		a->kind = TRANSPORT_FILE;
		return parse_path(uri, uri + 5, sizeof(a->path), "file", a->path, err, errlen);
	}
	a->kind = TRANSPORT_TCP;
	return parse_tcp(uri, !strncmp(uri, "tcp:", 4) ? uri + 4 : uri, listen, a, err,
			 errlen);
}

int transport_connect(const struct transport_addr *a, int timeout_ms,
		      struct transport_conn *c, char *err, size_t errlen)
{
	const struct transport_ops *o = ops_for(a->kind);

	c->fd = -1;
	if (!o || !o->connect) {
		snprintf(err, errlen, "cannot connect to a %s address", o ? o->name : "bad");
		return -EINVAL;
	}
	return o->connect(a, timeout_ms, c, err, errlen);
}

int transport_listen(const struct transport_addr *a, struct transport_listener *l,
		     char *err, size_t errlen)
{
	const struct transport_ops *o = ops_for(a->kind);

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (!o || !o->listen) {
		snprintf(err, errlen, "cannot listen on a %s address", o ? o->name : "bad");
		return -EINVAL;
	}
	l->ops = o;
	return o->listen(a, l, err, errlen);
}

int transport_accept(struct transport_listener *l, int wait_ms, int timeout_ms,
		     struct transport_conn *c, char *err, size_t errlen)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN };
	int n;

	c->fd = -1;
	if (l->fd < 0 || !l->ops) {
		snprintf(err, errlen, "accept: not listening");
		return -EBADF;
	}
	n = poll(&p, 1, wait_ms);
	if (n < 0) {
		int e = errno;

		snprintf(err, errlen, "poll: %s", strerror(e));
		return -e;
	}
	if (n == 0) {
		snprintf(err, errlen, "nothing connected within %d ms", wait_ms);
		return -ETIMEDOUT;
	}
	return l->ops->accept(l, timeout_ms, c, err, errlen);
}

void transport_listener_close(struct transport_listener *l)
{
	if (l->fd >= 0 && l->ops && l->ops->listener_close)
		l->ops->listener_close(l);
	else if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

int transport_open_file(const struct transport_addr *a, bool write,
			struct transport_conn *c, char *err, size_t errlen)
{
	const struct transport_ops *o = ops_for(a->kind);

	c->fd = -1;
	if (!o || !o->open_file) {
		snprintf(err, errlen, "a %s address is not a file", o ? o->name : "bad");
		return -EINVAL;
	}
	return o->open_file(a, write, c, err, errlen);
}

void transport_wrap_fd(struct transport_conn *c, int fd, enum transport_kind kind)
{
	c->fd = fd;
	c->ops = ops_for(kind);
	c->is_stream_socket = kind != TRANSPORT_FILE;
}

ssize_t transport_readv(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	return c->ops->readv(c, iov, iovcnt);
}

ssize_t transport_writev(struct transport_conn *c, const struct iovec *iov, int iovcnt)
{
	return c->ops->writev(c, iov, iovcnt);
}

void transport_set_timeout(struct transport_conn *c, int timeout_ms)
{
	if (c->fd >= 0 && c->is_stream_socket)
		sock_set_timeout(c->fd, timeout_ms);
}

/* net.core.wmem_max, the most SO_SNDBUF grants; 0: unknown. */
static long wmem_max(void)
{
	FILE *f = fopen("/proc/sys/net/core/wmem_max", "re");
	long v = 0;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

int transport_bound_send_queue(struct transport_conn *c, uint32_t bytes, uint32_t *got)
{
	/* The kernel doubles the value for its own bookkeeping. */
	int v = (int)(bytes / 2 < 2048 ? 2048 : bytes / 2), eff = 0;
	socklen_t len = sizeof(eff);

	if (c->fd < 0 || !c->is_stream_socket)
		return -ENOTSOCK;
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0) {
		long max = wmem_max();

		/* Capped, the bound would be smaller than asked, and autotuning
		 * gone for good: leave the socket alone. */
		if (max <= 0 || v > max)
			return -ERANGE;
		if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0)
			return -errno;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &eff, &len) < 0)
		return -errno;
	*got = (uint32_t)eff;
	return 0;
}

int transport_path_info(const struct transport_conn *c, struct transport_path *p)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (c->fd < 0 || c->ops != &transport_tcp_ops ||
	    getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt) ||
	    !ti.tcpi_min_rtt || ti.tcpi_min_rtt == ~0u || !ti.tcpi_snd_mss)
		return -ENOTSUP;
	p->min_rtt_us = ti.tcpi_min_rtt;
	p->mss = ti.tcpi_snd_mss;
	return 0;
}

int transport_prefer_latency(struct transport_conn *c)
{
	int prio = TC_PRIO_INTERACTIVE, tos = IPTOS_LOWDELAY;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (c->fd < 0 || c->ops != &transport_tcp_ops)
		return -ENOTSUP;
	if (getsockname(c->fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	/* TOS first: setting it may also set the priority from it. An IPv6
	 * socket carries IPv4 (mapped) with IP_TOS, IPv6 with the class. */
	if (ss.ss_family == AF_INET6) {
		(void)setsockopt(c->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
		if (setsockopt(c->fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos)) < 0)
			return -errno;
	} else if (setsockopt(c->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) < 0) {
		return -errno;
	}
	if (setsockopt(c->fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio)) < 0)
		return -errno;
	return 0;
}

int transport_send_queued(const struct transport_conn *c, uint32_t *bytes)
{
	int v = 0;

	if (c->fd < 0 || c->ops != &transport_tcp_ops)
		return -ENOTSUP;
	if (ioctl(c->fd, SIOCOUTQ, &v) < 0)
		return -errno;
	*bytes = v < 0 ? 0 : (uint32_t)v;
	return 0;
}

void transport_shutdown(struct transport_conn *c)
{
	if (c->fd >= 0 && c->is_stream_socket)
		shutdown(c->fd, SHUT_RDWR);
}

void transport_close(struct transport_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
