/* The URI parser (every kind, every way an address can be wrong) and the
 * transports over loopback: unix:PATH's socket file rules, TCP, file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/proto/stream.h"
#include "migrate/transport/transport.h"

static char err[512];

static int parse(const char *uri, bool listen, struct transport_addr *a)
{
	return transport_parse(uri, listen, a, err, sizeof(err));
}

static void refused(const char *uri, bool listen, const char *why)
{
	struct transport_addr a;

	if (parse(uri, listen, &a) != -EINVAL || !strstr(err, why) || !strstr(err, "bad address"))
		fail_msg("'%s': got '%s', want '%s'", uri, err, why);
}

static void test_parse_tcp(void **state)
{
	struct transport_addr a;

	(void)state;
	assert_int_equal(parse("127.0.0.1:4444", false, &a), 0);
	assert_int_equal(a.kind, TRANSPORT_TCP);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 4444);
	assert_int_equal(parse("tcp:localhost:1", false, &a), 0);
	assert_string_equal(a.host, "localhost");
	assert_int_equal(a.port, 1);
	assert_int_equal(parse("my-host.example_1.org:65535", false, &a), 0);
	assert_int_equal(a.port, 65535);
	/* empty host: every address, when listening only */
	assert_int_equal(parse(":4444", true, &a), 0);
	assert_string_equal(a.host, "");
	refused(":4444", false, "no host");
	/* IPv6 in brackets, with or without a zone */
	assert_int_equal(parse("[::1]:4444", false, &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(parse("[fe80::1%eth0]:9", true, &a), 0);
	assert_string_equal(a.host, "fe80::1%eth0");
	assert_int_equal(parse("[2001:db8::10.0.0.1]:80", false, &a), 0);
	refused("::1:4444", false, "brackets");
	refused("[::1]4444", false, "no ':PORT'");
	refused("[::1:4444", false, "no ']'");
	refused("[]:4444", true, "not an IPv6");
	refused("[host]:4444", false, "not an IPv6");
	refused("[::1%]:4444", false, "not an IPv6");
	/* ports */
	refused("127.0.0.1:0", false, "out of range");
	refused(":0", true, "out of range");
	refused("127.0.0.1:99999", true, "out of range");
	refused("127.0.0.1:65536", false, "out of range");
	refused("127.0.0.1:0000004444", false, "out of range");
	refused("127.0.0.1:", false, "no port");
	refused("127.0.0.1:-1", false, "not a number");
	refused("127.0.0.1:+80", false, "not a number");
	refused("127.0.0.1:80x", false, "not a number");
	refused("127.0.0.1: 80", false, "not a number");
	refused("127.0.0.1", false, "want [HOST]:PORT");
	refused("nonsense", false, "want [HOST]:PORT");
	/* host characters */
	refused("evil host:80", false, "characters");
	refused("a/b:80", false, "characters");
	refused("a\nb:80", false, "characters");
	refused("http://x:80", false, "characters");
	assert_int_equal(parse("", false, &a), -EINVAL);
	assert_non_null(strstr(err, "no migration address"));
	assert_int_equal(parse(NULL, true, &a), -EINVAL);
}

static void test_parse_paths(void **state)
{
	struct transport_addr a;
	char big[TRANSPORT_PATH_MAX + 16], uri[TRANSPORT_PATH_MAX + 32];
	size_t sun_max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	(void)state;
	assert_int_equal(parse("unix:/tmp/m.sock", false, &a), 0);
	assert_int_equal(a.kind, TRANSPORT_UNIX);
	assert_string_equal(a.path, "/tmp/m.sock");
	assert_int_equal(parse("unix:rel/m.sock", true, &a), 0);
	assert_string_equal(a.path, "rel/m.sock");
	assert_int_equal(parse("file:/tmp/snap", true, &a), 0);
	assert_int_equal(a.kind, TRANSPORT_FILE);
	assert_string_equal(a.path, "/tmp/snap");
	/* a path may hold ':' */
	assert_int_equal(parse("file:/tmp/a:b", false, &a), 0);
	assert_string_equal(a.path, "/tmp/a:b");
	refused("unix:", true, "no path");
	refused("file:", false, "no path");
	refused("unix:/tmp/a\tb", false, "control characters");
	/* sun_path bounds a socket path; a file's may be far longer */
	memset(big, 'x', sun_max);
	big[0] = '/';
	big[sun_max] = '\0';
	snprintf(uri, sizeof(uri), "unix:%s", big);
	assert_int_equal(parse(uri, true, &a), 0);
	assert_int_equal(strlen(a.path), sun_max);
	big[sun_max] = 'x';
	big[sun_max + 1] = '\0';
	snprintf(uri, sizeof(uri), "unix:%s", big);
	refused(uri, true, "at most 107");
	snprintf(uri, sizeof(uri), "file:%s", big);
	assert_int_equal(parse(uri, false, &a), 0);
	memset(big, 'y', TRANSPORT_PATH_MAX);
	big[TRANSPORT_PATH_MAX] = '\0';
	snprintf(uri, sizeof(uri), "file:%s", big);
	refused(uri, false, "at most 4095");
}

/* Connects, accepts, and moves a frame each way over the pair. */
static void exchange(const struct transport_addr *a, struct transport_listener *l)
{
	struct transport_conn cc, sc;
	struct stream c, s;
	uint8_t page[2][4096], got[2][4096], tok[8];
	struct iovec iov[2] = { { page[0], 4096 }, { page[1], 4096 } };
	struct iovec riov[2] = { { got[0], 4096 }, { got[1], 4096 } };
	uint32_t len;

	assert_int_equal(transport_connect(a, 1000, &cc, err, sizeof(err)), 0);
	assert_int_equal(transport_accept(l, 1000, 1000, &sc, err, sizeof(err)), 0);
	assert_true(cc.is_stream_socket && sc.is_stream_socket);
	stream_attach(&c, &cc, 1000);
	stream_attach(&s, &sc, 1000);
	memset(page[0], 1, 4096);
	memset(page[1], 2, 4096);
	assert_int_equal(stream_send(&c, ST_PING, "abcdefgh", 8, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_expect(&s, ST_PING, tok, 8, &len, "peer", err,
					    sizeof(err)), 0);
	assert_memory_equal(tok, "abcdefgh", 8);
	assert_int_equal(stream_writev_all(&s, iov, 2, err, sizeof(err)), 0);
	assert_int_equal(stream_readv_all(&c, riov, 2, err, sizeof(err)), 0);
	assert_memory_equal(got, page, sizeof(got));
	/* Post-copy's push bound: the kernel keeps what we ask (it doubles the
	 * half we pass); the path figures exist on TCP only. */
	struct transport_path path = { 0 };
	int sb = 0;
	socklen_t sl = sizeof(sb);

	assert_int_equal(transport_path_info(&c.conn, &path),
			 a->kind == TRANSPORT_TCP ? 0 : -ENOTSUP);
	if (a->kind == TRANSPORT_TCP) {
		assert_in_range(path.mss, 536, 65535);
		assert_true(path.min_rtt_us > 0);
	}
	uint32_t qgot = 0;

	assert_int_equal(transport_bound_send_queue(&c.conn, 65536, &qgot), 0);
	assert_int_equal(getsockopt(c.conn.fd, SOL_SOCKET, SO_SNDBUF, &sb, &sl), 0);
	assert_int_equal(sb, 65536);
	assert_int_equal(qgot, 65536);
	/* beyond net.core.wmem_max: granted in full (as root) or not at all */
	int r = transport_bound_send_queue(&c.conn, 64u << 20, &qgot);

	assert_int_equal(getsockopt(c.conn.fd, SOL_SOCKET, SO_SNDBUF, &sb, &sl), 0);
	if (r == 0)
		assert_int_equal(sb, 64 << 20);
	else
		assert_true(r == -ERANGE && sb == 65536);
	/* the return path's marking: the priority a host's pfifo_fast sorts
	 * by, and the TOS the next hops see; TCP only */
	int prio = 0, tos = 0;
	socklen_t pl = sizeof(prio), tl = sizeof(tos);

	if (a->kind == TRANSPORT_TCP) {
		assert_int_equal(transport_prefer_latency(&c.conn), 0);
		assert_int_equal(getsockopt(c.conn.fd, SOL_SOCKET, SO_PRIORITY, &prio, &pl), 0);
		assert_int_equal(prio, 6);  /* TC_PRIO_INTERACTIVE: pfifo_fast's band 0 */
		assert_int_equal(getsockopt(c.conn.fd, IPPROTO_IP, IP_TOS, &tos, &tl), 0);
		assert_int_equal(tos, 0x10); /* IPTOS_LOWDELAY */
	} else {
		assert_int_equal(transport_prefer_latency(&c.conn), -ENOTSUP);
	}
	/* shutdown from "another thread" ends a read at once */
	stream_shutdown(&c);
	assert_int_equal(stream_read_all(&s, tok, 1, err, sizeof(err)), -ECONNRESET);
	stream_close(&c);
	stream_close(&s);
}

static void test_unix(void **state)
{
	char dir[] = "/tmp/minivmm-tt-XXXXXX", path[64], uri[96];
	struct transport_addr a;
	struct transport_listener l, l2;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	assert_int_equal(parse(uri, true, &a), 0);
	/* nobody listens yet */
	assert_int_equal(transport_connect(&a, 1000, &(struct transport_conn){ 0 }, err,
					   sizeof(err)), -ENOENT);
	assert_int_equal(transport_listen(&a, &l, err, sizeof(err)), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* a second listener on a live socket is refused, and leaves it be:
	 * its check must not queue a connection the first would accept */
	assert_int_equal(transport_listen(&a, &l2, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "listens there"));
	exchange(&a, &l);
	exchange(&a, &l); /* data channels: more connections, same listener */
	transport_listener_close(&l);
	assert_int_equal(lstat(path, &st), -1);
	/* a stale socket (its listener died) is replaced */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	assert_int_equal(transport_listen(&a, &l, err, sizeof(err)), 0);
	transport_listener_close(&l);
	/* anything but a socket is never removed */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(transport_listen(&a, &l, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);
	rmdir(dir);
}

static void test_tcp(void **state)
{
	struct transport_addr a;
	struct transport_listener l;
	struct transport_conn c;
	int ret = -1;

	(void)state;
	/* a free port below the ephemeral range (32768+): try a few */
	for (int port = 30000 + getpid() % 2000, i = 0; i < 50 && ret; i++, port++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "127.0.0.1:%d", port);
		assert_int_equal(parse(uri, true, &a), 0);
		ret = transport_listen(&a, &l, err, sizeof(err));
	}
	assert_int_equal(ret, 0);
	exchange(&a, &l);
	/* nobody came */
	assert_int_equal(transport_accept(&l, 10, 1000, &c, err, sizeof(err)), -ETIMEDOUT);
	transport_listener_close(&l);
	assert_true(transport_connect(&a, 1000, &c, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "connect 127.0.0.1:"));
	/* a TCP address is not a file, a file address does not connect */
	assert_int_equal(transport_open_file(&a, false, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(parse("file:/tmp/x", false, &a), 0);
	assert_int_equal(transport_connect(&a, 1000, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(transport_listen(&a, &l, err, sizeof(err)), -EINVAL);
}

static void test_file(void **state)
{
	char path[] = "/tmp/minivmm-tf-XXXXXX", uri[64];
	struct transport_addr a;
	struct transport_conn c;
	struct stream s;
	uint8_t b[4];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	unlink(path); /* a snapshot is only written to a new file */
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(parse(uri, false, &a), 0);
	assert_int_equal(transport_open_file(&a, true, &c, err, sizeof(err)), 0);
	assert_false(c.is_stream_socket);
	stream_attach(&s, &c, 0);
	s.cancel_fd = 0; /* never polled on a file */
	assert_int_equal(stream_write_all(&s, "abc", 3, err, sizeof(err)), 0);
	stream_shutdown(&s); /* no-op on a file */
	assert_int_equal(transport_bound_send_queue(&s.conn, 65536, &(uint32_t){ 0 }), -ENOTSOCK);
	assert_int_equal(transport_path_info(&s.conn, &(struct transport_path){ 0 }), -ENOTSUP);
	stream_close(&s);
	assert_int_equal(transport_open_file(&a, false, &c, err, sizeof(err)), 0);
	stream_attach(&s, &c, 0);
	assert_int_equal(stream_read_all(&s, b, 3, err, sizeof(err)), 0);
	assert_memory_equal(b, "abc", 3);
	assert_int_equal(stream_read_all(&s, b, 1, err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "end of file"));
	stream_close(&s);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_tcp),
		cmocka_unit_test(test_parse_paths),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
