/* A target that survives strangers (issue 13): port scans, garbage,
 * tricklers, refused HELLOs, stray connections on the channel accept, a
 * second source, lying peers; and the VMM's own robustness: deadlines
 * honoured, SIGTERM while reading, bounded rounds, a wedged monitor client,
 * files made 0600 and never through a symlink. */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"


static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	signal(SIGPIPE, SIG_IGN); /* a peer that hangs up is what some tests expect */
	h_ports_init(37);
	return 0;
}

static void tmp_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_robust_%d_%s", (int)getpid(), tag);
}

/* Occurrences of needle in p's stderr so far. */
static int stderr_count(struct proc *p, const char *needle)
{
	int n = 0;

	for (const char *s = p->err; s && (s = strstr(s, needle)) != NULL; s += strlen(needle))
		n++;
	return n;
}

static void spawn_target(struct proc *t, int prt, const char **extra)
{
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	h_spawn_target(t, addr, extra);
}

/* SIGTERM, and the target must be gone within 5 s. */
static void stop_target(struct proc *t)
{
	int st;

	proc_pump(t, 10);
	assert_false(t->exited);
	proc_kill(t, SIGTERM);
	st = proc_wait_exit(t, 5000);
	if (st < 0)
		fail_msg("target ignored SIGTERM: %s", t->err ? t->err : "");
	proc_free(t);
}

static int connect_to(int prt)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)prt) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 15 };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static size_t hello(uint8_t *b, uint64_t mem, uint32_t cpus, const char *name, uint32_t pid)
{
	return h_hello(b, 1, mem, cpus, name, pid);
}

static size_t small_hello(uint8_t *b)
{
	char name[32];

	snprintf(name, sizeof(name), "robust-%d", (int)getpid());
	return hello(b, 16ULL << 20, 1, name, 1);
}

/* Reads one reply frame; its type, and its text (REJECT) in text. */
static int reply(int fd, char *text, size_t cap)
{
	uint8_t h[8];
	uint32_t len;
	char buf[1100];

	text[0] = '\0';
	if (read(fd, h, 8) != 8)
		return -1;
	len = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
	if (len && len < sizeof(buf)) {
		ssize_t n = read(fd, buf, len);

		buf[n > 0 ? n : 0] = '\0';
		snprintf(text, cap, "%s", buf);
	}
	return h[0];
}

static void send_all(int fd, const void *b, size_t n)
{
	assert_int_equal(write(fd, b, n), (ssize_t)n);
}

/* Connect, get ACCEPT. */
static int accepted(int prt)
{
	uint8_t b[256];
	char text[256];
	int fd = connect_to(prt);

	send_all(fd, b, small_hello(b));
	if (reply(fd, text, sizeof(text)) != 2)
		fail_msg("no ACCEPT: %s", text);
	return fd;
}

/* A port scan, `nc </dev/null`, garbage and a bad version each cost one
 * line; then a real source is still accepted. */
static void test_strangers_then_source(void **state)
{
	const uint8_t junk[] = "GET / HTTP/1.0\r\n\r\n";
	uint8_t b[256];
	struct proc t;
	int prt = h_port(), fd;

	(void)state;
	spawn_target(&t, prt, NULL);
	close(connect_to(prt));                        /* scan / EOF */
	fd = connect_to(prt);                          /* garbage */
	send_all(fd, junk, sizeof(junk) - 1);
	close(fd);
	fd = connect_to(prt);                          /* wrong version */
	hello(b, 16ULL << 20, 1, "x", 1);
	h_put32(b + 8, 7);
	send_all(fd, b, 24 + 96 + 72);
	close(fd);
	for (int i = 0; i < 100 && stderr_count(&t, "refused a connection") < 3; i++)
		proc_pump(&t, 50);
	if (stderr_count(&t, "refused a connection") != 3)
		fail_msg("want 3 refusal lines: %s", t.err ? t.err : "");
	assert_true(proc_stderr_has(&t, "bad magic"));
	assert_true(proc_stderr_has(&t, "version 7"));
	proc_pump(&t, 10);
	assert_false(t.exited);
	fd = accepted(prt);
	close(fd);
	assert_true(proc_wait_exit(&t, 15000) == 3); /* that one did begin */
	proc_free(&t);
}

/* One byte a second never completes a handshake: dropped at the
 * handshake deadline (10 s), and the target waits on. */
static void test_trickle_handshake(void **state)
{
	uint8_t b[256];
	size_t n = small_hello(b);
	struct proc t;
	int prt = h_port(), fd;
	double t0;

	(void)state;
	spawn_target(&t, prt, NULL);
	fd = connect_to(prt);
	t0 = h_now_ms();
	for (size_t i = 0; i < n && h_now_ms() - t0 < 16000; i++) {
		if (write(fd, b + i, 1) != 1 || proc_stderr_has(&t, "refused a connection"))
			break;
		proc_pump(&t, 1000);
	}
	if (!proc_wait_stderr(&t, "did not complete the handshake in time", 2000))
		fail_msg("trickler not dropped in %.0f ms: %s", h_now_ms() - t0,
			 t.err ? t.err : "");
	assert_true(h_now_ms() - t0 < 13000);
	close(fd);
	stop_target(&t);
}

/* After ACCEPT a frame trickled byte by byte is dropped at its deadline. */
static void test_trickle_frame(void **state)
{
	uint8_t f[16] = { 0 };
	struct proc t;
	int prt = h_port(), fd, st = -1;
	double t0;

	(void)state;
	spawn_target(&t, prt, NULL);
	fd = accepted(prt);
	h_put32(f, 6);
	h_put32(f + 4, 8);
	t0 = h_now_ms();
	for (int i = 0; i < 16 && !t.exited; i++) {
		if (write(fd, f + i, 1) != 1)
			break;
		proc_pump(&t, 1500);
	}
	st = proc_wait_exit(&t, 5000);
	if (st != 3 || !proc_stderr_has(&t, "too slow"))
		fail_msg("exit %d after %.0f ms: %s", st, h_now_ms() - t0, t.err ? t.err : "");
	assert_true(h_now_ms() - t0 < 14000);
	close(fd);
	proc_free(&t);
}

/* SIGTERM reaches a target blocked reading, in the handshake and after. */
static void sigterm_while_reading(bool after_accept)
{
	struct proc t;
	int prt = h_port(), fd, st;
	double t0;

	spawn_target(&t, prt, NULL);
	fd = after_accept ? accepted(prt) : connect_to(prt);
	proc_pump(&t, 300);
	t0 = h_now_ms();
	proc_kill(&t, SIGTERM);
	st = proc_wait_exit(&t, 8000);
	if (st != 3 || h_now_ms() - t0 > 3000 || !proc_stderr_has(&t, "interrupted by a signal"))
		fail_msg("exit %d %.0f ms after SIGTERM: %s", st, h_now_ms() - t0,
			 t.err ? t.err : "");
	close(fd);
	proc_free(&t);
}

static void test_sigterm_in_handshake(void **state) { (void)state; sigterm_while_reading(false); }
static void test_sigterm_after_accept(void **state) { (void)state; sigterm_while_reading(true); }

/* ROUND numbers must go up by one: a repeated ROUND(0) is refused. */
static void test_round_repeat(void **state)
{
	uint8_t f[32] = { 0 };
	struct proc t;
	int prt = h_port(), fd;

	(void)state;
	spawn_target(&t, prt, NULL);
	fd = accepted(prt);
	h_put32(f, 6);
	h_put32(f + 4, 8);
	memcpy(f + 16, f, 16);
	send_all(fd, f, 32);
	if (proc_wait_exit(&t, 15000) != 3 || !proc_stderr_has(&t, "ROUND 0 where round 1"))
		fail_msg("repeated ROUND not refused: %s", t.err ? t.err : "");
	close(fd);
	proc_free(&t);
}

/* A silent stray connection and one with a wrong token arrive before the
 * real data channel: both are dropped, the channel is taken, and the
 * migration goes on (a round over the channel is answered). */
static void test_stray_channel_connections(void **state)
{
	uint8_t f[64], r[32];
	struct proc t;
	int prt = h_port(), fd, stray, bad, cfd;
	uint64_t token = 0;

	(void)state;
	spawn_target(&t, prt, NULL);
	fd = accepted(prt);
	memset(f, 0, sizeof(f));
	h_put32(f, 14);
	h_put32(f + 4, 12);
	h_put32(f + 8, 1);
	send_all(fd, f, 20);
	assert_int_equal(read(fd, r, 20), 20);
	assert_int_equal(r[0], 14);
	assert_int_equal(r[8], 1);
	for (int i = 0; i < 8; i++)
		token |= (uint64_t)r[12 + i] << (8 * i);
	stray = connect_to(prt);
	bad = connect_to(prt);
	cfd = connect_to(prt);
	memset(f, 0, sizeof(f));
	memcpy(f, "MVMMIGR\n", 8);
	h_put32(f + 8, 1);
	h_put32(f + 16, 15);
	h_put32(f + 20, 12);
	h_put64(f + 28, token ^ 1);
	send_all(bad, f, 36);
	h_put64(f + 28, token);
	send_all(cfd, f, 36);
	memset(f, 0, sizeof(f));
	h_put32(f, 6);                      /* main: ROUND 0 */
	h_put32(f + 4, 8);
	send_all(fd, f, 16);
	h_put32(f, 16);                     /* channel: SYNC 0 */
	h_put32(f + 4, 4);
	h_put32(f + 8, 0);
	send_all(cfd, f, 12);
	memset(f, 0, sizeof(f));
	h_put32(f, 4);                      /* main: PING */
	h_put32(f + 4, 8);
	h_put64(f + 8, 42);
	send_all(fd, f, 16);
	if (read(fd, r, 16) != 16 || r[0] != 5)
		fail_msg("no PONG after the stray connections: %s", t.err ? t.err : "");
	assert_true(proc_wait_stderr(&t, "dropped a connection", 3000));
	assert_true(proc_wait_stderr(&t, "wrong token", 3000));
	close(stray);
	close(bad);
	close(cfd);
	close(fd);
	assert_int_equal(proc_wait_exit(&t, 15000), 3);
	proc_free(&t);
}

/* Without --mem/--cpus the host's size bounds what a peer may ask for. */
static void test_host_limits(void **state)
{
	uint8_t b[256];
	char text[1100], name[32];
	struct proc t;
	int prt = h_port(), fd;

	(void)state;
	snprintf(name, sizeof(name), "big-%d", (int)getpid());
	spawn_target(&t, prt, NULL);
	fd = connect_to(prt);
	send_all(fd, b, hello(b, 512ULL << 30, 1, name, 1));
	if (reply(fd, text, sizeof(text)) != 3 || !strstr(text, "available"))
		fail_msg("512 GiB not refused: '%s' %s", text, t.err ? t.err : "");
	close(fd);
	fd = connect_to(prt);
	send_all(fd, b, hello(b, 16ULL << 20, 64, name, 1));
	if (reply(fd, text, sizeof(text)) != 3 || !strstr(text, "online CPUs"))
		fail_msg("64 vCPUs not refused: '%s' %s", text, t.err ? t.err : "");
	close(fd);
	assert_true(proc_wait_stderr(&t, "online CPUs", 3000));
	stop_target(&t);
}

/* A peer that claims the pid of a running VM does not get its name, and
 * the refusal does not tell the pid. */
static void test_name_clash_lying_peer(void **state)
{
	char name[32], text[1100], pid[16];
	const char *other[] = { NULL, "--kernel", COUNTER, "--name", name, NULL };
	uint8_t b[256];
	struct proc o, t;
	int prt = h_port(), fd;

	(void)state;
	snprintf(name, sizeof(name), "liar-%d", (int)getpid());
	assert_int_equal(proc_spawn(&o, other), 0);
	assert_true(proc_wait_line(&o, 0, "seq=", T_BOOT) >= 0);
	spawn_target(&t, prt, NULL);
	fd = connect_to(prt);
	send_all(fd, b, hello(b, 16ULL << 20, 1, name, (uint32_t)o.pid));
	if (reply(fd, text, sizeof(text)) != 3 || !strstr(text, "already running"))
		fail_msg("a lying pid was believed: '%s' %s", text, t.err ? t.err : "");
	snprintf(pid, sizeof(pid), "%d", (int)o.pid);
	assert_null(strstr(text, pid));
	assert_null(strstr(text, "pid"));
	close(fd);
	stop_target(&t);
	proc_kill(&o, SIGTERM);
	proc_wait_exit(&o, 10000);
	proc_free(&o);
}

/* A snapshot of VM N restored while another N runs is refused. */
static void test_file_restore_name_clash(void **state)
{
	char name[32], snap[128], uri[160];
	const char *save[] = { NULL, "--kernel", COUNTER, "--name", name, "--migrate", uri,
			       "--migrate-after", "0.5", NULL };
	const char *run[] = { NULL, "--kernel", COUNTER, "--name", name, NULL };
	const char *restore[] = { NULL, "--incoming", uri, NULL };
	struct proc a, o, r;

	(void)state;
	snprintf(name, sizeof(name), "snapn-%d", (int)getpid());
	tmp_path(snap, sizeof(snap), "snap.bin");
	unlink(snap);
	snprintf(uri, sizeof(uri), "file:%s", snap);
	assert_int_equal(proc_run(&a, save, T_MIG), 0);
	proc_free(&a);
	assert_int_equal(proc_spawn(&o, run), 0);
	assert_true(proc_wait_line(&o, 0, "seq=", T_BOOT) >= 0);
	if (proc_run(&r, restore, T_MIG) != 3 || !proc_stderr_has(&r, "already running"))
		fail_msg("restore took a running VM's name: %s", r.err ? r.err : "");
	proc_free(&r);
	proc_pump(&o, 10);
	assert_false(o.exited);
	proc_kill(&o, SIGTERM);
	proc_wait_exit(&o, 10000);
	proc_free(&o);
	unlink(snap);
}

/* A second source while one migrates is refused; the first completes. */
static void test_second_source(void **state)
{
	char addr[32], name[32], text[256], mon[128], info[4096] = "";
	const char *src[] = { NULL, "--kernel", DIRTY, "--append", "wss=8", "--name", name,
			      "--migrate", addr, "--migrate-after", "1", "--max-bandwidth",
			      "20M", "--monitor", mon, NULL };
	uint8_t b[256];
	struct proc s, t;
	int prt = h_port(), fd, type;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)prt) };

	(void)state;
	snprintf(name, sizeof(name), "first-%d", (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	spawn_target(&t, prt, NULL);
	tmp_path(mon, sizeof(mon), "first.sock");
	assert_int_equal(proc_spawn(&s, src), 0);
	/* Round 0 of 256 MiB at 20 MB/s takes seconds. */
	for (int i = 0; i < 200 && !strstr(info, "status: active"); i++) {
		proc_pump(&s, 50);
		if (h_monitor(mon, "info migrate", info, sizeof(info)) != 0)
			info[0] = '\0';
	}
	assert_non_null(strstr(info, "status: active"));
	proc_pump(&t, 10);
	assert_false(t.exited);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		struct timeval tv = { .tv_sec = 15 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		send_all(fd, b, small_hello(b));
		if ((type = reply(fd, text, sizeof(text))) >= 0)
			fail_msg("a second source got an answer (type %d): %s", type, text);
	}
	close(fd);
	if (!proc_wait_stderr(&t, "incoming migration completed", T_MIG))
		fail_msg("the first migration was disturbed: %s", t.err ? t.err : "");
	proc_send(&t, "q");
	proc_wait_exit(&t, 30000);
	proc_wait_exit(&s, 30000);
	proc_free(&s);
	proc_free(&t);
}

/* A monitor client that sends commands and never reads their replies
 * must not wedge the VM's event loop: another client is still answered,
 * and the guest's console keeps flowing. */
static void test_monitor_client_never_reads(void **state)
{
	char mon[100], name[32], buf[4096];
	const char *argv[] = { NULL, "--kernel", COUNTER, "--name", name, "--monitor", mon,
			       "--append", "period_ms=20", NULL };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct proc vm;
	int fd;
	double t0;

	(void)state;
	snprintf(name, sizeof(name), "mon-%d", (int)getpid());
	tmp_path(mon, sizeof(mon), "mon.sock");
	assert_int_equal(proc_spawn(&vm, argv), 0);
	assert_true(proc_wait_line(&vm, 0, "seq=3", T_BOOT) >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", mon);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	/* Megabytes of replies asked for, none read. */
	for (int i = 0; i < 4000; i++)
		if (write(fd, "help\n", 5) != 5)
			break;
	t0 = h_now_ms();
	if (h_monitor(mon, "info status", buf, sizeof(buf)) != 0 || h_now_ms() - t0 > 5000)
		fail_msg("monitor wedged by a client that does not read (%.0f ms)",
			 h_now_ms() - t0);
	assert_non_null(strstr(buf, "status: running"));
	close(fd);
	proc_kill(&vm, SIGTERM);
	proc_wait_exit(&vm, 10000);
	proc_free(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strangers_then_source),
		cmocka_unit_test(test_trickle_handshake),
		cmocka_unit_test(test_trickle_frame),
		cmocka_unit_test(test_sigterm_in_handshake),
		cmocka_unit_test(test_sigterm_after_accept),
		cmocka_unit_test(test_round_repeat),
		cmocka_unit_test(test_stray_channel_connections),
		cmocka_unit_test(test_host_limits),
		cmocka_unit_test(test_name_clash_lying_peer),
		cmocka_unit_test(test_file_restore_name_clash),
		cmocka_unit_test(test_second_source),
		cmocka_unit_test(test_monitor_client_never_reads),
	};

	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
