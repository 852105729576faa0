/* Authenticated migrations (issue 13): the right key migrates and the
 * guest verifies; a wrong key, a keyless source against a keyed target and
 * the reverse each give one clear line on both sides and the source keeps
 * its guest; a recorded handshake replayed is refused; an impostor target
 * (no key) gets nothing and its READY/RUNNING mean nothing; a flipped byte
 * in a page frame is refused before READY; a stray data-channel connection
 * that knows the token but not the session is dropped and the migration
 * goes on. A proxy in this file sits between source and target where a
 * test needs to see, keep or change the bytes. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"
#include "tests/proxy.h"

static char dir[64], key1[128], key2[128], badkey[128];

static void gen(const char *path)
{
	const char *argv[] = { NULL, "--gen-key", path, NULL };
	struct proc p;

	assert_int_equal(proc_run(&p, argv, 10000), 0);
	proc_free(&p);
}

static int setup(void **state)
{
	int fd;

	(void)state;
	h_require_kvm();
	signal(SIGPIPE, SIG_IGN);
	h_ports_init(53);
	snprintf(dir, sizeof(dir), "/tmp/test_auth_%d", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(key1, sizeof(key1), "%s/migrate.key", dir); /* also the default key there */
	snprintf(key2, sizeof(key2), "%s/other.key", dir);
	snprintf(badkey, sizeof(badkey), "%s/bad.key", dir);
	gen(key1);
	gen(key2);
	fd = open(badkey, O_CREAT | O_WRONLY | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
	close(fd);
	fchmod(fd, 0644);
	chmod(badkey, 0644);
	return 0;
}

/* The keys and whatever the VMs left there (monitor sockets). */
static int teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[320];

	(void)state;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

static void addr_of(char *buf, size_t n, int prt)
{
	snprintf(buf, n, "127.0.0.1:%d", prt);
}

static void target(struct proc *t, int prt, const char *key)
{
	char a[32];
	const char *extra[] = { "--migrate-key", key, NULL };

	addr_of(a, sizeof(a), prt);
	h_spawn_target(t, a, key ? extra : NULL);
}

/* A dirtying guest whose migrations the monitor starts. */
static void source(struct proc *s, char *mon, size_t cap, const char *key, const char *extra)
{
	const char *argv[16] = { NULL, "--kernel", DIRTY, "--append", "wss=8", "--monitor", mon };
	int n = 7;

	snprintf(mon, cap, "%s/src-%d.sock", dir, h_port());
	if (key) {
		argv[n++] = "--migrate-key";
		argv[n++] = key;
	}
	if (extra) {
		argv[n++] = "--migrate-channels";
		argv[n++] = extra;
	}
	argv[n] = NULL;
	assert_int_equal(proc_spawn(s, argv), 0);
	if (proc_wait_line(s, 0, "seq=", T_BOOT) < 0)
		fail_msg("source did not boot: %s", s->err ? s->err : "");
}

static void migrate(const char *mon, int prt)
{
	char cmd[64], reply[1024];

	snprintf(cmd, sizeof(cmd), "migrate 127.0.0.1:%d", prt);
	if (h_monitor(mon, cmd, reply, sizeof(reply)) != 0)
		fail_msg("%s: %s", cmd, reply);
}

static void wait_err(struct proc *p, const char *needle, const char *who)
{
	if (!proc_wait_stderr(p, needle, 20000))
		fail_msg("%s: no '%s' in: %s", who, needle, p->err ? p->err : "");
}

/* The guest runs on: heartbeats after now. */
static void still_running(struct proc *s)
{
	size_t from = s->nlines;

	proc_pump(s, 10);
	assert_false(s->exited);
	if (proc_wait_line(s, from, "seq=", 5000) < 0 || proc_wait_line(s, s->nlines, "seq=", 5000) < 0)
		fail_msg("the source's guest stopped: %s", s->err ? s->err : "");
}

static void stop(struct proc *p, int want)
{
	int st;

	proc_kill(p, SIGTERM);
	st = proc_wait_exit(p, 10000);
	if (want >= 0 && st != want)
		fail_msg("exit %d, want %d: %s", st, want, p->err ? p->err : "");
	proc_free(p);
}

static void verified(struct proc *t)
{
	if (proc_wait_line(t, 0, "seq=", T_BOOT) < 0)
		fail_msg("guest not running on the target: %s", t->err ? t->err : "");
	proc_send(t, "v");
	if (proc_wait_line(t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
}

/* The right key: the target takes it from the default path
 * (MINIVMM_KEY_DIR), the source from --migrate-key; data channels on.
 * A keyed target does not warn. */
static void test_right_key(void **state)
{
	char a[32], ks[160];
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--migrate", a,
			       "--migrate-after", "1", "--verify-ram", "--migrate-key", key1, NULL };
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(ks, sizeof(ks), "%s", dir);
	setenv("MINIVMM_KEY_DIR", ks, 1);
	target(&t, prt, NULL);
	unsetenv("MINIVMM_KEY_DIR");
	assert_false(proc_stderr_has(&t, "anyone who can reach"));
	addr_of(a, sizeof(a), prt);
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "completed"));
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 5000));
	wait_err(&t, "proved the migration key; integrity on", "target");
	verified(&t);
	stop(&t, -1);
	proc_free(&s);
}

/* A keyless target says once what it is exposed to; key file checks. */
static void test_keyless_warning_and_key_checks(void **state)
{
	const char *bad[] = { NULL, "--incoming", ":1", "--migrate-key", badkey, NULL };
	const char *again[] = { NULL, "--gen-key", key1, NULL };
	struct proc t, p;
	int prt = h_port();

	(void)state;
	target(&t, prt, NULL);
	assert_true(proc_stderr_has(&t, "anyone who can reach"));
	stop(&t, 3);
	assert_int_equal(proc_run(&p, bad, 10000), 2);
	assert_true(proc_stderr_has(&p, "chmod 600"));
	proc_free(&p);
	assert_int_equal(proc_run(&p, again, 10000), 2);
	assert_true(proc_stderr_has(&p, "never overwritten"));
	proc_free(&p);
}

/* One keyless source: a keyed target refuses it; with a wrong key the
 * target fails to prove itself; against a keyless target the keyed source
 * is refused; a key file others can read is refused by the monitor; then
 * the right key migrates. Each refusal: one line on each side, the guest
 * keeps running, the targets keep waiting. */
static void test_mismatches_then_right_key(void **state)
{
	char mon[128], cmd[256], reply[1024];
	struct proc s, tk, tn;
	int pk = h_port(), pn = h_port();

	(void)state;
	target(&tk, pk, key1);
	target(&tn, pn, NULL);
	source(&s, mon, sizeof(mon), NULL, NULL);

	migrate(mon, pk);
	wait_err(&s, "refused the migration: this target requires an authenticated migration",
		 "source");
	wait_err(&tk, "a source without a migration key (this target requires one); still waiting",
		 "keyed target");
	still_running(&s);

	snprintf(cmd, sizeof(cmd), "migrate_set_parameter key %s", key2);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	migrate(mon, pk);
	wait_err(&s, "the target failed authentication", "source");
	wait_err(&tk, "authentication failed", "keyed target");
	assert_false(proc_stderr_has(&s, "completed"));
	still_running(&s);

	migrate(mon, pn);
	wait_err(&s, "this target has no migration key", "source");
	wait_err(&tn, "a source with a migration key: this target has none", "keyless target");
	still_running(&s);

	snprintf(cmd, sizeof(cmd), "migrate_set_parameter key %s", badkey);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 1);
	assert_non_null(strstr(reply, "chmod 600"));

	snprintf(cmd, sizeof(cmd), "migrate_set_parameter key %s", key1);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	proc_pump(&tk, 10);
	assert_false(tk.exited);
	migrate(mon, pk);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	verified(&tk);
	stop(&tk, -1);
	stop(&tn, 3);
	proc_free(&s);
}

static int connect_to(int prt)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)prt) };
	struct timeval tv = { .tv_sec = 15 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Reads one frame header (and skips its payload); its type. */
static int frame_type(int fd, uint32_t *len)
{
	uint8_t h[8], skip[2048];

	if (read(fd, h, 8) != 8)
		return -1;
	*len = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
	if (*len > sizeof(skip))
		return -1;
	for (uint32_t got = 0; got < *len;) {
		ssize_t r = read(fd, skip + got, *len - got);

		if (r <= 0)
			return -1;
		got += (uint32_t)r;
	}
	return h[0];
}

/* A whole keyed migration through the proxy, recorded; its first bytes
 * replayed to a second keyed target: a new nonce, so the old proof fails.
 * The replayer gets a challenge, then REJECT; the target waits on. */
static void test_replayed_handshake(void **state)
{
	char mon[128];
	static struct h_proxy x; /* outlives the test if it fails: the thread may run on */
	struct proc s, t, t2;
	int pt = h_port(), pt2 = h_port(), pp, fd;
	uint32_t len;

	(void)state;
	target(&t, pt, key1);
	pp = h_proxy_start(&x, pt);
	source(&s, mon, sizeof(mon), key1, "0");
	migrate(mon, pp);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	verified(&t);
	h_proxy_stop(&x);
	assert_true(x.rec_len > 16 + 48 + 40);

	target(&t2, pt2, key1);
	fd = connect_to(pt2);
	(void)!write(fd, x.rec, x.rec_len);
	assert_int_equal(frame_type(fd, &len), 22);  /* AUTH_CHALLENGE: a fresh nonce */
	assert_int_equal(frame_type(fd, &len), 3);   /* REJECT */
	close(fd);
	wait_err(&t2, "authentication failed: the source's proof is wrong", "replayed target");
	assert_false(proc_stderr_has(&t2, "incoming migration failed"));
	proc_pump(&t2, 100);
	assert_false(t2.exited);
	stop(&t2, 3);
	stop(&t, -1);
	proc_free(&s);
}

static ssize_t read_full(int fd, uint8_t *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);

		if (r <= 0)
			return r;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* A stranger at a keyed target, with --mem and --prealloc: it gets a
 * nonce, a proof bound to its own nonce and "authentication failed",
 * nothing of this host; the populating goes on (nothing was given to it)
 * and the target waits on. */
static void test_stranger_learns_nothing(void **state)
{
	const char *extra[] = { "--migrate-key", key1, "--mem", "64M", "--prealloc", NULL };
	uint8_t b[128] = "MVMMIGR\n", r[256];
	char a[32];
	struct proc t;
	int prt = h_port(), fd;
	uint32_t len;

	(void)state;
	addr_of(a, sizeof(a), prt);
	h_spawn_target(&t, a, extra);
	fd = connect_to(prt);
	h_put32(b + 8, 1);
	h_put32(b + 12, 1);              /* keyed */
	h_put32(b + 16, 21);             /* AUTH_HELLO */
	h_put32(b + 20, 40);
	h_put32(b + 24, 1);
	h_put32(b + 28, 1);
	memset(b + 32, 0x33, 32);        /* a nonce */
	h_put32(b + 64, 23);             /* AUTH_PROOF, made up */
	h_put32(b + 68, 32);
	memset(b + 72, 0x44, 32);
	assert_int_equal(write(fd, b, 104), 104);
	assert_int_equal(read_full(fd, r, 8 + 72), 8 + 72);
	assert_int_equal(r[0], 22);      /* AUTH_CHALLENGE */
	assert_int_equal(read_full(fd, r, 8), 8);
	assert_int_equal(r[0], 3);       /* REJECT */
	len = r[4] | r[5] << 8;
	assert_true(len < sizeof(r));
	assert_int_equal(read_full(fd, r, len), (ssize_t)len);
	r[len] = 0;
	assert_string_equal((char *)r, "authentication failed");
	close(fd);
	wait_err(&t, "authentication failed: the source's proof is wrong", "target");
	assert_false(proc_stderr_has(&t, "populated ahead")); /* the populating goes on */
	proc_pump(&t, 100);
	assert_false(t.exited);
	stop(&t, 3);
}

/* A fake target without the key: whatever it answers, the source sends
 * it no HELLO (no VM name, no CPU) and keeps its guest. */
static void test_impostor_target(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char mon[128];
	uint8_t in[256], out[256];
	struct proc s;
	int prt = h_port(), lfd, c, one = 1;
	struct timeval tv = { .tv_sec = 10 };

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_port = htons((uint16_t)prt);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	source(&s, mon, sizeof(mon), key1, NULL);

	/* 1: a challenge with a made-up proof, then READY and RUNNING */
	migrate(mon, prt);
	c = accept(lfd, NULL, NULL);
	assert_true(c >= 0);
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(read_full(c, in, 16 + 8 + 40), 16 + 8 + 40);
	assert_int_equal(in[12], 1);      /* preamble: keyed */
	assert_int_equal(in[16], 21);     /* AUTH_HELLO, nothing of the VM */
	memset(out, 0x5a, sizeof(out));
	h_put32(out, 22);
	h_put32(out + 4, 72);
	h_put32(out + 8, 1);
	memcpy(out + 12, in + 28, 4);     /* the source's flags */
	h_put32(out + 80, 10);            /* READY */
	h_put32(out + 84, 0);
	h_put32(out + 88, 12);            /* RUNNING */
	h_put32(out + 92, 0);
	assert_int_equal(write(c, out, 96), 96);
	wait_err(&s, "the target failed authentication", "source");
	{
		ssize_t n = read(c, in, sizeof(in));   /* ERROR, never HELLO */

		assert_true(n >= 8);
		assert_int_equal(in[0], 13);
	}
	close(c);
	still_running(&s);

	/* 2: no challenge, straight to ACCEPT, READY, RUNNING */
	migrate(mon, prt);
	c = accept(lfd, NULL, NULL);
	assert_true(c >= 0);
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(read_full(c, in, 16 + 8 + 40), 16 + 8 + 40);
	memset(out, 0, sizeof(out));
	h_put32(out, 2);
	h_put32(out + 8, 10);
	h_put32(out + 16, 12);
	assert_int_equal(write(c, out, 24), 24);
	wait_err(&s, "expected AUTH_CHALLENGE from the target, got ACCEPT", "source");
	close(c);
	still_running(&s);
	assert_false(proc_stderr_has(&s, "completed"));
	close(lfd);
	proc_send(&s, "q");
	assert_true(proc_wait_exit(&s, 20000) >= 0);
	proc_free(&s);
}

/* One byte of page contents flipped on the way, on the main connection
 * or on a data channel: the target refuses the frame (its MAC), so
 * before READY; the source keeps its guest. */
static void flipped_page_byte(bool on_channel)
{
	char mon[128];
	static struct h_proxy x; /* outlives the test if it fails: the thread may run on */
	struct proc s, t;
	int pt = h_port(), pp;

	target(&t, pt, key1);
	pp = h_proxy_start(&x, pt);
	x.flip_page = true;
	x.flip_on_channel = on_channel;
	source(&s, mon, sizeof(mon), key1, on_channel ? "2" : "0");
	migrate(mon, pp);
	if (proc_wait_exit(&t, T_MIG) != 3)
		fail_msg("target did not fail: %s", t.err ? t.err : "");
	assert_true(x.flipped);
	assert_true(proc_stderr_has(&t, "(PAGES) failed its integrity check"));
	print_message("target: %s", strstr(t.err, "minivmm: incoming") ? strstr(t.err, "minivmm: incoming") : "");
	assert_false(proc_stderr_has(&t, "RAM digest"));
	wait_err(&s, "the guest keeps running here", "source");
	print_message("source: %s", strstr(s.err, "minivmm: migration") ? strstr(s.err, "minivmm: migration") : "");
	assert_false(proc_stderr_has(&s, "completed"));
	still_running(&s);
	h_proxy_stop(&x);
	proc_free(&t);
	proc_send(&s, "q");
	assert_true(proc_wait_exit(&s, 20000) >= 0);
	proc_free(&s);
}

static void test_flipped_page_byte(void **state) { (void)state; flipped_page_byte(false); }
static void test_flipped_page_byte_channel(void **state) { (void)state; flipped_page_byte(true); }

/* A connection with the migration's token (read off the wire: tokens are
 * not secret) but without the session's key is dropped; the real data
 * channels connect and the migration completes, here with integrity off
 * (set on the monitor: PAGES untagged, the rest still MAC'd). */
static void test_stray_channel_without_session(void **state)
{
	char mon[128];
	static struct h_proxy x; /* outlives the test if it fails: the thread may run on */
	struct proc s, t;
	int pt = h_port(), pp;

	(void)state;
	target(&t, pt, key1);
	pp = h_proxy_start(&x, pt);
	x.stray_channel = true;
	source(&s, mon, sizeof(mon), key1, "2");
	{
		char reply[4096];

		assert_int_equal(h_monitor(mon, "migrate_set_parameter integrity off", reply,
					   sizeof(reply)), 0);
		assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
		assert_non_null(strstr(reply, "integrity: off"));
	}
	migrate(mon, pp);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(x.strayed);
	wait_err(&t, "proved the migration key; integrity off", "target");
	wait_err(&t, "dropped a connection on the migration port: a connection that does not "
		 "prove the session", "target");
	verified(&t);
	h_proxy_stop(&x);
	stop(&t, -1);
	proc_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_right_key),
		cmocka_unit_test(test_keyless_warning_and_key_checks),
		cmocka_unit_test(test_mismatches_then_right_key),
		cmocka_unit_test(test_replayed_handshake),
		cmocka_unit_test(test_stranger_learns_nothing),
		cmocka_unit_test(test_impostor_target),
		cmocka_unit_test(test_flipped_page_byte),
		cmocka_unit_test(test_flipped_page_byte_channel),
		cmocka_unit_test(test_stray_channel_without_session),
	};

	/* TEST_FILTER=glob runs only the matching tests. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
