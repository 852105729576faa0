/* Live migration over loopback on real KVM: the dirty guest with several
 * working sets and vCPU counts (heartbeat continuity, guest verify, RAM
 * digest, downtime), a double migration, every failure (refused, REJECT,
 * cancel, target killed mid-round and mid-switchover) with the guest still
 * running at the source, and hostile streams sent to a target. */
#include <errno.h>
#include <arpa/inet.h>
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
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"


static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	h_ports_init(0);
	return 0;
}

static void tmpfile_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_migrate_%d_%s", (int)getpid(), tag);
}

/* A target on addr writing its stats to stats; extra are more options. */
static void spawn_target_at(struct proc *t, const char *addr, const char *stats,
			    const char **extra)
{
	const char *opts[16] = { "--stats-json", stats };
	int n = 2;

	while (extra && *extra && n < 15)
		opts[n++] = *extra++;
	opts[n] = NULL;
	h_spawn_target(t, addr, opts);
}

static void spawn_target_with(struct proc *t, int prt, const char *stats, const char **extra)
{
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	spawn_target_at(t, addr, stats, extra);
}

static void spawn_target(struct proc *t, int prt, const char *stats)
{
	spawn_target_with(t, prt, stats, NULL);
}

/* Last heartbeat seq printed (lines from `from`), -1 if none. */
static long last_seq(struct proc *p, size_t from)
{
	long last = -1, seq;

	for (size_t i = from; i < p->nlines; i++)
		if (sscanf(p->lines[i].text, "seq=%ld", &seq) == 1)
			last = seq;
	return last;
}

static long first_seq(struct proc *p)
{
	long seq;

	for (size_t i = 0; i < p->nlines; i++)
		if (sscanf(p->lines[i].text, "seq=%ld", &seq) == 1)
			return seq;
	return -1;
}

/* Consecutive heartbeats (from `from`) have consecutive seqs. */
static void check_heartbeats(struct proc *p, size_t from)
{
	long last = -1, seq;

	for (size_t i = from; i < p->nlines; i++) {
		if (sscanf(p->lines[i].text, "seq=%ld t_ms", &seq) != 1)
			continue;
		if (last >= 0 && seq != last + 1)
			fail_msg("heartbeat seq=%ld after seq=%ld", seq, last);
		last = seq;
	}
}

/* The guest keeps printing heartbeats after `from` (it still runs). */
static void assert_still_running(struct proc *s, size_t from)
{
	long a, b;

	assert_true(proc_wait_line(s, from, "seq=", 10000) >= 0);
	a = last_seq(s, from);
	assert_true(proc_wait_line(s, s->nlines, "seq=", 10000) >= 0);
	b = last_seq(s, from);
	assert_true(b > a || a < 0);
	check_heartbeats(s, from);
}

/* Stops the target of a finished migration, frees both, removes stats. */
static void end_pair(struct proc *s, struct proc *t, const char *sstats, const char *tstats)
{
	proc_kill(t, SIGTERM);
	proc_wait_exit(t, 10000);
	proc_free(s);
	proc_free(t);
	unlink(sstats);
	unlink(tstats);
}

/* Migrates a dirty guest once to uri (NULL: a loopback TCP port) and
 * checks everything the issue asks. */
static void migrate_dirty_ex(const char *uri, int wss, int cpus, int channels, int nice,
			     const char **extra, const char *sstats_keep)
{
	char append[64], cpus_s[8], addr[128], sstats[128], tstats[128], chan_s[8], nice_s[8];
	const char *argv[32] = { NULL, "--kernel", DIRTY, "--append", append, "--cpus", cpus_s,
				 "--migrate", addr, "--migrate-after", "1.55", "--verify-ram",
				 "--stats-json", sstats, "--migrate-channels", chan_s,
				 "--migrate-nice", nice_s, NULL };
	struct proc s, t;
	int prt = h_port(), na = 18;
	long last, first;

	while (extra && *extra && na < 31)
		argv[na++] = *extra++;
	argv[na] = NULL;

	snprintf(append, sizeof(append), "wss=%d", wss);
	snprintf(cpus_s, sizeof(cpus_s), "%d", cpus);
	snprintf(chan_s, sizeof(chan_s), "%d", channels);
	snprintf(nice_s, sizeof(nice_s), "%d", nice);
	if (uri)
		snprintf(addr, sizeof(addr), "%s", uri);
	else
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(sstats, sizeof(sstats), "src.json");
	tmpfile_path(tstats, sizeof(tstats), "tgt.json");
	spawn_target_at(&t, addr, tstats, (const char *[]){ "--migrate-nice", nice_s, NULL });
	if (uri && !strncmp(uri, "unix:", 5)) {
		struct stat st;

		assert_int_equal(lstat(uri + 5, &st), 0);
		assert_true(S_ISSOCK(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "completed"));
	last = last_seq(&s, 0);
	assert_true(proc_wait_line(&t, 0, "seq=", T_BOOT) >= 0);
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 1000));
	first = first_seq(&t);
	if (last >= 0 && first != last + 1)
		fail_msg("heartbeat: source ended at seq=%ld, target began at seq=%ld", last, first);
	/* The guest's own check of every working-set page. */
	proc_send(&t, "v");
	if (wss > 0 && proc_wait_line(&t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	assert_true(proc_wait_line(&t, t.nlines, "seq=", 5000) >= 0);
	check_heartbeats(&t, 0);
	assert_true(h_json_num(sstats, "result") == 1);
	assert_true(h_json_num(tstats, "result") == 1);
	if (h_json_num(sstats, "converged") == 1)
		assert_true(h_json_num(sstats, "downtime_ms") <= h_json_num(sstats, "downtime_limit_ms"));
	assert_true(h_json_num(sstats, "downtime_ms") > 0);
	/* Both ends say how many data channels carried the pages. */
	assert_true(h_json_num(sstats, "channels") == channels);
	assert_true(h_json_num(tstats, "channels") == channels);
	/* Both ends count every byte and page, on every channel. */
	if (h_json_num(sstats, "bytes_total") != h_json_num(tstats, "bytes_total") ||
	    h_json_num(sstats, "pages_normal") != h_json_num(tstats, "pages_normal"))
		fail_msg("source sent %.0f bytes / %.0f pages, target got %.0f / %.0f",
			 h_json_num(sstats, "bytes_total"), h_json_num(sstats, "pages_normal"),
			 h_json_num(tstats, "bytes_total"), h_json_num(tstats, "pages_normal"));
	if (sstats_keep) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "cp %s %s", sstats, sstats_keep);
		assert_int_equal(system(cmd), 0);
	}
	end_pair(&s, &t, sstats, tstats);
}

static void migrate_dirty_to(const char *uri, int wss, int cpus, int channels, int nice)
{
	migrate_dirty_ex(uri, wss, cpus, channels, nice, NULL, NULL);
}

static void migrate_dirty(int wss, int cpus, int channels, int nice)
{
	migrate_dirty_to(NULL, wss, cpus, channels, nice);
}

/* Throttling forced on: 20 MB/s cannot keep up with a 16 MiB working set
 * rewritten every round, so the rounds do not shrink and the throttle
 * climbs (in big steps, to keep the test short) until they do. The
 * guest's own verify and the RAM digest pass; no hold is long. */
static void migrate_throttled(int cpus, int channels)
{
	char keep[128];
	const char *extra[] = { "--max-bandwidth", "20M", "--throttle-initial", "60",
				"--throttle-increment", "30", NULL };

	tmpfile_path(keep, sizeof(keep), "thr.json");
	migrate_dirty_ex(NULL, 16, cpus, channels, 0, extra, keep);
	assert_true(h_json_num(keep, "throttle_max_pct") >= 60);
	/* Round 0 takes about a second at 20 MB/s: its own looks at the debt
	 * (every 100 ms) start the throttle inside it, on one stream and over
	 * the channels (the first "throttle_pct" is round 0's record). */
	if (h_json_num(keep, "throttle_pct") < 60)
		fail_msg("round 0 ended unthrottled (throttle_pct %.0f)",
			 h_json_num(keep, "throttle_pct"));
	if (h_json_num(keep, "guest_stall_max_ms") <= 0 ||
	    h_json_num(keep, "guest_stall_max_ms") > 200)
		fail_msg("guest_stall_max_ms %.1f", h_json_num(keep, "guest_stall_max_ms"));
	assert_true(h_json_num(keep, "guest_stall_total_ms") >= h_json_num(keep, "guest_stall_max_ms"));
	unlink(keep);
}

/* Delta encoding on: pages re-sent go as XOR runs against the cache
 * (the dirty guest rewrites two words a page, the best case), over the
 * data channels or the one stream; verify and digest pass. */
static void migrate_xbzrle(int cpus, int channels)
{
	char keep[128];
	const char *extra[] = { "--max-bandwidth", "50M", "--xbzrle-cache", "64M", NULL };

	tmpfile_path(keep, sizeof(keep), "xbz.json");
	migrate_dirty_ex(NULL, 16, cpus, channels, 0, extra, keep);
	assert_true(h_json_num(keep, "xbzrle_cache_bytes") == 64.0 * 1024 * 1024);
	if (h_json_num(keep, "xbzrle_pages") <= 0 || h_json_num(keep, "xbzrle_bytes_saved") <= 0)
		fail_msg("no page went delta-encoded");
	unlink(keep);
}

/* The dirty ring instead of the bitmap (the default 4096 entries per
 * vCPU, a reaper empties them between syncs); bandwidth capped so several
 * rounds each harvest what the guest dirtied. Verify, digest and
 * heartbeat as with the bitmap. */
static void migrate_ring(int cpus, int channels)
{
	char keep[128];
	const char *extra[] = { "--max-bandwidth", "50M", "--dirty-tracking", "ring", NULL };

	tmpfile_path(keep, sizeof(keep), "ring.json");
	migrate_dirty_ex(NULL, 16, cpus, channels, 0, extra, keep);
	assert_true(h_json_num(keep, "dirty_ring_entries") == 4096);
	if (h_json_num(keep, "rounds") < 2)
		fail_msg("one round: nothing was harvested");
	/* The reaper keeps rings from filling: no overflow, so no sync had
	 * to resend every page (the full path: test_ring.c). */
	if (h_json_num(keep, "dirty_ring_lost") || h_json_num(keep, "dirty_ring_resends"))
		fail_msg("ring lost with the reaper on (%.0f full exits, %.0f resends)",
			 h_json_num(keep, "dirty_ring_full_exits"),
			 h_json_num(keep, "dirty_ring_resends"));
	unlink(keep);
}

static void test_ring_1cpu(void **state) { (void)state; migrate_ring(1, 0); }
static void test_ring_2cpu(void **state) { (void)state; migrate_ring(2, 2); }

/* A ring size we do not take is said before anything runs (rings below
 * 4096 entries overflowed under kvm_pvm: docs/migration.md). */
static void test_ring_bad_size(void **state)
{
	const char *a1[] = { NULL, "--kernel", DIRTY, "--dirty-tracking", "ring",
			     "--dirty-ring-size", "1000", NULL };
	const char *a2[] = { NULL, "--kernel", DIRTY, "--dirty-tracking", "ring",
			     "--dirty-ring-size", "2048", NULL };
	const char *a3[] = { NULL, "--kernel", DIRTY, "--dirty-ring-size", "1024", NULL };
	const char *a4[] = { NULL, "--kernel", DIRTY, "--dirty-tracking", "rings", NULL };
	struct proc p;

	(void)state;
	assert_int_equal(proc_run(&p, a1, 20000), 2);
	assert_true(proc_stderr_has(&p, "a power of two"));
	proc_free(&p);
	assert_int_equal(proc_run(&p, a2, 20000), 2);
	if (!proc_stderr_has(&p, "minivmm takes 4096 to"))
		fail_msg("16 entries: %s", p.err ? p.err : "");
	proc_free(&p);
	assert_int_equal(proc_run(&p, a3, 20000), 2);
	assert_true(proc_stderr_has(&p, "needs --dirty-tracking ring"));
	proc_free(&p);
	assert_int_equal(proc_run(&p, a4, 20000), 2);
	assert_true(proc_stderr_has(&p, "bitmap or ring"));
	proc_free(&p);
}

static void test_xbzrle_1cpu(void **state) { (void)state; migrate_xbzrle(1, 0); }
static void test_xbzrle_2cpu(void **state) { (void)state; migrate_xbzrle(2, 2); }

static void test_throttle_1cpu(void **state) { (void)state; migrate_throttled(1, 0); }
static void test_throttle_2cpu(void **state) { (void)state; migrate_throttled(2, 2); }

/* unix:PATH, with data channels (the default 2) and without: the socket
 * file is 0600 while the target waits and gone once it has the guest. */
static void migrate_unix(int channels)
{
	char path[96], uri[112];
	struct stat st;

	snprintf(path, sizeof(path), "/tmp/test_migrate_%d_c%d.sock", (int)getpid(), channels);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	migrate_dirty_to(uri, 16, 2, channels, 0);
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_unix_channels(void **state) { (void)state; migrate_unix(2); }
static void test_unix_one_stream(void **state) { (void)state; migrate_unix(0); }

/* Channels: the default 2, one stream (0) and more than the cores (4);
 * migration threads at the vCPUs' priority or below them (nice 10). */
static void test_wss0_1cpu(void **state) { (void)state; migrate_dirty(0, 1, 2, 0); }
static void test_wss0_2cpu(void **state) { (void)state; migrate_dirty(0, 2, 0, 0); }
static void test_wss16_1cpu(void **state) { (void)state; migrate_dirty(16, 1, 0, 10); }
static void test_wss16_2cpu(void **state) { (void)state; migrate_dirty(16, 2, 2, 0); }
static void test_wss64_1cpu(void **state) { (void)state; migrate_dirty(64, 1, 4, 0); }
static void test_wss64_2cpu(void **state) { (void)state; migrate_dirty(64, 2, 2, 10); }

/* A -> B (boot form) -> C (remote client form, by name). */
static void test_double_migration(void **state)
{
	char a1[32], a2[32], name[32], st[128];
	const char *src[] = { NULL, "--kernel", DIRTY, "--append", "wss=8", "--name", name,
			      "--migrate", a1, "--migrate-after", "1.3", NULL };
	const char *cli[] = { NULL, "--migrate", a2, "--name", name, "--verify-ram", NULL };
	struct proc a, b, c, r;
	int p1 = h_port(), p2 = h_port();

	(void)state;
	snprintf(name, sizeof(name), "dbl-%d", (int)getpid());
	snprintf(a1, sizeof(a1), "127.0.0.1:%d", p1);
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", p2);
	tmpfile_path(st, sizeof(st), "dbl.json");
	spawn_target(&b, p1, st);
	spawn_target(&c, p2, st);
	assert_int_equal(proc_spawn(&a, src), 0);
	assert_int_equal(proc_wait_exit(&a, T_MIG), 0);
	assert_true(proc_wait_line(&b, 0, "seq=", T_BOOT) >= 0);
	assert_int_equal(proc_run(&r, cli, T_MIG), 0);
	assert_true(proc_wait_line(&r, 0, "completed", 0) >= 0);
	assert_int_equal(proc_wait_exit(&b, 10000), 0);
	assert_true(proc_wait_line(&c, 0, "seq=", T_BOOT) >= 0);
	if (first_seq(&c) != last_seq(&b, 0) + 1)
		fail_msg("B ended at seq=%ld, C began at %ld", last_seq(&b, 0), first_seq(&c));
	proc_send(&c, "v");
	assert_true(proc_wait_line(&c, 0, "verify: pass", 30000) >= 0);
	proc_kill(&c, SIGTERM);
	proc_wait_exit(&c, 10000);
	proc_free(&a);
	proc_free(&b);
	proc_free(&c);
	proc_free(&r);
	unlink(st);
}

/* Cold migration: the running guest's state to a file, restored by
 * another process; a cut-short file is refused with one clear line. */
static void test_cold_migration_file(void **state)
{
	char uri[160], snap[128], cut[128], st[128], sock[64];
	const char *src[] = { NULL, "--kernel", DIRTY, "--append", "wss=8", "--cpus", "2",
			      "--migrate", uri, "--migrate-after", "1.2", NULL };
	const char *dst[] = { NULL, "--incoming", uri, "--stats-json", st, NULL };
	struct proc a, b;
	FILE *in, *out;
	long size;
	char *buf;

	(void)state;
	tmpfile_path(snap, sizeof(snap), "snap.bin");
	tmpfile_path(cut, sizeof(cut), "snap-cut.bin");
	tmpfile_path(st, sizeof(st), "cold.json");
	snprintf(uri, sizeof(uri), "file:%s", snap);
	assert_int_equal(proc_run(&a, src, T_MIG), 0);
	assert_true(proc_stderr_has(&a, "completed"));
	/* A VM that saved itself and exited leaves no monitor socket. */
	snprintf(sock, sizeof(sock), "/run/minivmm/vm-%d.sock", (int)a.pid);
	if (access(sock, F_OK) == 0)
		fail_msg("%s is still there after the VM saved itself and exited", sock);
	assert_int_equal(proc_spawn(&b, dst), 0);
	assert_true(proc_wait_line(&b, 0, "seq=", T_BOOT) >= 0);
	if (first_seq(&b) != last_seq(&a, 0) + 1)
		fail_msg("saved at seq=%ld, restored at seq=%ld", last_seq(&a, 0), first_seq(&b));
	proc_send(&b, "q");
	assert_int_equal(proc_wait_exit(&b, 30000), 1); /* verify passed, guest exit */
	assert_true(proc_wait_line(&b, 0, "verify: pass pages=2048", 0) >= 0);
	proc_free(&b);

	/* The same snapshot cut in half. */
	in = fopen(snap, "rb");
	assert_non_null(in);
	fseek(in, 0, SEEK_END);
	size = ftell(in);
	rewind(in);
	buf = malloc((size_t)size);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, in), (size_t)size);
	fclose(in);
	out = fopen(cut, "wb");
	assert_non_null(out);
	fwrite(buf, 1, (size_t)size / 2, out);
	fclose(out);
	free(buf);
	snprintf(uri, sizeof(uri), "file:%s", cut);
	assert_int_equal(proc_run(&b, dst, T_MIG), 3);
	assert_true(proc_stderr_has(&b, "truncated"));
	assert_ptr_equal(strchr(b.err, '\n'), b.err + strlen(b.err) - 1);
	proc_free(&b);
	proc_free(&a);
	unlink(snap);
	unlink(cut);
	unlink(st);
}

/* Source counter guest migrating to addr with extra options; returns
 * after the source reported the failure. */
static void failing_source(struct proc *s, const char *addr, const char *name,
			   const char *monitor, const char *bw, const char *expect)
{
	const char *argv[16] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--name", name,
				 "--migrate", addr, "--migrate-after", "1.2" };
	int n = 11;

	if (monitor) {
		argv[n++] = "--monitor";
		argv[n++] = monitor;
	}
	if (bw) {
		argv[n++] = "--max-bandwidth";
		argv[n++] = bw;
	}
	argv[n] = NULL;
	assert_int_equal(proc_spawn(s, argv), 0);
	if (expect && !proc_wait_stderr(s, expect, T_MIG))
		fail_msg("source stderr lacks '%s': %s", expect, s->err ? s->err : "");
}

static void finish_source(struct proc *s)
{
	assert_true(proc_stderr_has(s, "the guest keeps running here"));
	assert_still_running(s, s->nlines);
	proc_send(s, "q");
	if (proc_wait_exit(s, 30000) < 0)
		fail_msg("source did not exit");
	proc_free(s);
}

/* A REJECTed source costs the target one line, not its wait; SIGTERM
 * then ends it (exit 3, stats written). */
static void refused_then_stop(struct proc *t, const char *why)
{
	if (!proc_wait_stderr(t, "refused a connection", 10000) || !proc_stderr_has(t, why))
		fail_msg("target did not refuse with '%s': %s", why, t->err ? t->err : "");
	proc_pump(t, 10);
	assert_false(t->exited);
	proc_kill(t, SIGTERM);
	assert_int_equal(proc_wait_exit(t, 10000), 3);
}

static void test_connection_refused(void **state)
{
	char addr[32], name[32];
	struct proc s;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	snprintf(name, sizeof(name), "ref-%d", (int)getpid());
	failing_source(&s, addr, name, NULL, NULL, "Connection refused");
	finish_source(&s);
}

/* A target that takes the connection and then never answers: the source
 * must give up after its I/O timeout, not hang, and keep its guest. */
static void test_hung_target_times_out(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char addr[32], name[32];
	struct proc s;
	int lfd, one = 1, prt = h_port();

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_port = htons((uint16_t)prt);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 4), 0); /* the kernel completes the handshake */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	snprintf(name, sizeof(name), "hung-%d", (int)getpid());
	failing_source(&s, addr, name, NULL, NULL, "timed out");
	finish_source(&s);
	close(lfd);
}

static void test_reject_name_clash(void **state)
{
	char addr[32], name[32], mon[128], st[128];
	const char *other[] = { NULL, "--kernel", COUNTER, "--name", name, NULL };
	struct proc o, s, t;
	int prt = h_port();

	(void)state;
	snprintf(name, sizeof(name), "clash-%d", (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(mon, sizeof(mon), "mon.sock");
	tmpfile_path(st, sizeof(st), "clash.json");
	/* Another VM of that name runs here; the source hides its own socket
	 * elsewhere so that only the target sees the clash. */
	assert_int_equal(proc_spawn(&o, other), 0);
	assert_true(proc_wait_line(&o, 0, "seq=", T_BOOT) >= 0);
	spawn_target(&t, prt, st);
	failing_source(&s, addr, name, mon, NULL, "already running on this host");
	refused_then_stop(&t, "already running on this host");
	finish_source(&s);
	proc_kill(&o, SIGTERM);
	proc_wait_exit(&o, 10000);
	proc_free(&o);
	proc_free(&t);
	unlink(st);
}

static void test_reject_cpu(void **state)
{
	char addr[32], name[32], st[128];
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(name, sizeof(name), "cpu-%d", (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(st, sizeof(st), "cpu.json");
	spawn_target(&t, prt, st);
	/* The source claims its guest saw a feature this host lacks. */
	setenv("MINIVMM_CPUCOMPAT_OVERRIDE", "vendor=FakeVendor00", 1);
	failing_source(&s, addr, name, NULL, NULL, "incompatible CPU");
	unsetenv("MINIVMM_CPUCOMPAT_OVERRIDE");
	refused_then_stop(&t, "incompatible CPU");
	finish_source(&s);
	assert_true(h_json_num(st, "result") == 0);
	proc_free(&t);
	unlink(st);
}

/* A target started for another VM shape refuses it before any RAM moves. */
static void reject_shape(const char **target_opts, const char *why)
{
	char addr[32], name[32], st[128];
	struct proc s, t;
	int prt = h_port();

	snprintf(name, sizeof(name), "shape-%d", (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(st, sizeof(st), "shape.json");
	spawn_target_with(&t, prt, st, target_opts);
	failing_source(&s, addr, name, NULL, NULL, why); /* 256M, 1 vCPU */
	refused_then_stop(&t, why);
	finish_source(&s);
	assert_true(h_json_num(st, "result") == 0);
	assert_true(h_json_num(st, "bytes_total") < 4096); /* no RAM came */
	proc_free(&t);
	unlink(st);
}

static void test_reject_mem(void **state)
{
	(void)state;
	reject_shape((const char *[]){ "--mem", "128M", NULL }, "memory differs");
}

static void test_reject_cpus(void **state)
{
	(void)state;
	reject_shape((const char *[]){ "--cpus", "2", NULL }, "vCPUs differ");
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* --mem --prealloc: the target populates the VM's RAM while it waits (its
 * RSS grows to the RAM size before any source exists), then receives
 * into that memory: the guest verifies and the digest agrees. */
static void test_prealloc_target(void **state)
{
	char addr[32], sstats[128], tstats[128];
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--migrate", addr,
			       "--migrate-after", "1.2", "--verify-ram", "--stats-json", sstats, NULL };
	struct proc s, t;
	int prt = h_port();
	long rss = -1;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(sstats, sizeof(sstats), "pre-src.json");
	tmpfile_path(tstats, sizeof(tstats), "pre-tgt.json");
	spawn_target_with(&t, prt, tstats,
			  (const char *[]){ "--mem", "256M", "--cpus", "1", "--prealloc", NULL });
	assert_true(proc_stderr_has(&t, "populating 256 MiB"));
	for (int i = 0; i < 200 && rss < 256 * 1024; i++) {
		proc_pump(&t, 50);
		rss = rss_kib(t.pid);
	}
	if (rss < 256 * 1024)
		fail_msg("target RSS %ld KiB: 256 MiB were not populated ahead", rss);
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 5000));
	assert_true(proc_stderr_has(&t, "256 of 256 MiB of guest RAM populated ahead"));
	assert_true(h_json_num(tstats, "prealloc_bytes") == 256.0 * 1024 * 1024);
	proc_send(&t, "v");
	if (proc_wait_line(&t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	end_pair(&s, &t, sstats, tstats);
}

/* --mem: the target builds the KVM VM and its memory slots while it
 * waits. A source refused after the VM was made (incompatible CPU) costs
 * that VM; the next source gets a fresh one and its guest verifies. */
static void test_target_shell_rebuilt(void **state)
{
	char addr[32], name[32], sstats[128], tstats[128];
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--migrate", addr,
			       "--migrate-after", "1.2", "--verify-ram", "--stats-json", sstats, NULL };
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	snprintf(name, sizeof(name), "shell-%d", (int)getpid());
	tmpfile_path(sstats, sizeof(sstats), "shell-src.json");
	tmpfile_path(tstats, sizeof(tstats), "shell-tgt.json");
	spawn_target_with(&t, prt, tstats, (const char *[]){ "--mem", "256M", "--cpus", "1", NULL });
	setenv("MINIVMM_CPUCOMPAT_OVERRIDE", "vendor=FakeVendor00", 1);
	failing_source(&s, addr, name, NULL, NULL, "incompatible CPU");
	unsetenv("MINIVMM_CPUCOMPAT_OVERRIDE");
	finish_source(&s);
	if (!proc_wait_stderr(&t, "refused a connection", 10000))
		fail_msg("target did not refuse: %s", t.err ? t.err : "");
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 5000));
	proc_send(&t, "v");
	if (proc_wait_line(&t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	end_pair(&s, &t, sstats, tstats);
}

/* A target started with one test hook (docs/migration.md "Test hooks")
 * set to val. */
static void spawn_target_hook(struct proc *t, int prt, const char *stats, const char *hook,
			      const char *val)
{
	setenv(hook, val, 1);
	spawn_target(t, prt, stats);
	unsetenv(hook);
}

/* A pass longer than a frame's deadline (10 s) and than the target's
 * idle bound (MIG_IDLE_TIMEOUT_MS, 300 s; 4 s here by its test hook):
 * 64 MiB at 5 MB/s on the data channels, the main connection quiet all
 * along. The target waits while the channels move (it gave up at the
 * idle bound: no guest over ~300 s of round 0 could migrate), and the
 * guest verifies there. */
static void test_long_pass(void **state)
{
	char addr[32], sstats[128], tstats[128];
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=4 fill=64", "--migrate",
			       addr, "--migrate-after", "1.5", "--max-bandwidth", "5M",
			       "--verify-ram", "--stats-json", sstats, NULL };
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(sstats, sizeof(sstats), "long-src.json");
	tmpfile_path(tstats, sizeof(tstats), "long-tgt.json");
	spawn_target_hook(&t, prt, tstats, "MINIVMM_TEST_IDLE_MS", "4000");
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, 60000) != 0)
		fail_msg("source failed: %s; target: %s", s.err ? s.err : "", t.err ? t.err : "");
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 5000));
	if (h_json_num(sstats, "total_ms") < 11000)
		fail_msg("the pass took %.0f ms: not longer than a frame's deadline",
			 h_json_num(sstats, "total_ms"));
	proc_send(&t, "v");
	if (proc_wait_line(&t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	end_pair(&s, &t, sstats, tstats);
}

/* A target slow to apply a pass (a slow disk's flush before PONG, 12 s
 * here by MINIVMM_TEST_DRAIN_DELAY_MS) past the source's 10 s I/O
 * timeout: the source waits (MIG_DRAIN_TIMEOUT_MS) and the migration
 * completes; it used to fail with "receive timed out after 10000 ms". */
static void test_slow_drain(void **state)
{
	char addr[32], sstats[128], tstats[128];
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=0", "--migrate", addr,
			       "--migrate-after", "1", "--verify-ram", "--stats-json", sstats, NULL };
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(sstats, sizeof(sstats), "drain-src.json");
	tmpfile_path(tstats, sizeof(tstats), "drain-tgt.json");
	spawn_target_hook(&t, prt, tstats, "MINIVMM_TEST_DRAIN_DELAY_MS", "12000");
	assert_int_equal(proc_spawn(&s, argv), 0);
	if (proc_wait_exit(&s, 60000) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_wait_stderr(&t, "RAM digest verified", 5000));
	if (h_json_num(sstats, "total_ms") < 12000)
		fail_msg("the migration took %.0f ms: the drain was not delayed",
			 h_json_num(sstats, "total_ms"));
	end_pair(&s, &t, sstats, tstats);
}

/* The other side of the idle bound: a source stopped (SIGSTOP) inside a
 * long pass moves neither connection, and the target gives up after the
 * bound (2 s by the hook), not never; the source, continued, keeps its
 * guest. */
static void test_stopped_source_idle(void **state)
{
	char addr[32], sstats[128], tstats[128], mon[128], reply[4096] = "";
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=4 fill=64", "--migrate",
			       addr, "--migrate-after", "1", "--max-bandwidth", "5M",
			       "--stats-json", sstats, "--monitor", mon, NULL };
	struct proc s, t;
	int prt = h_port(), st;
	double t0;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(sstats, sizeof(sstats), "stop-src.json");
	tmpfile_path(tstats, sizeof(tstats), "stop-tgt.json");
	tmpfile_path(mon, sizeof(mon), "stop.sock");
	spawn_target_hook(&t, prt, tstats, "MINIVMM_TEST_IDLE_MS", "2000");
	assert_int_equal(proc_spawn(&s, argv), 0);
	/* inside round 0 (64 MiB at 5 MB/s: 13 s), a second into it */
	for (int i = 0; i < 200 && !(strstr(reply, "status: active") && strstr(reply, "round: 0"));
	     i++) {
		proc_pump(&s, 50);
		proc_pump(&t, 50);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)))
			reply[0] = '\0';
	}
	assert_non_null(strstr(reply, "status: active"));
	assert_non_null(strstr(reply, "round: 0"));
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 1000) {
		proc_pump(&s, 50);
		proc_pump(&t, 50);
	}
	proc_kill(&s, SIGSTOP);
	t0 = h_now_ms();
	st = proc_wait_exit(&t, 20000);
	if (st <= 0 || h_now_ms() - t0 > 15000 ||
	    !proc_stderr_has(&t, "the source sent nothing for 2 s"))
		fail_msg("target: exit %d %.0f ms after the source stopped: %s", st,
			 h_now_ms() - t0, t.err ? t.err : "");
	print_message("target gave up %.0f ms after the source stopped\n", h_now_ms() - t0);
	proc_kill(&s, SIGCONT);
	if (!proc_wait_stderr(&s, "the guest keeps running here", 15000))
		fail_msg("source: %s", s.err ? s.err : "");
	proc_kill(&s, SIGKILL);
	proc_wait_exit(&s, 5000);
	proc_free(&s);
	proc_free(&t);
	unlink(sstats);
	unlink(tstats);
}

/* A source throttled to 2 MB/s (16 MiB take seconds) to a live target,
 * returned once `info migrate` shows it active in round 0. */
static void start_slow_migration(struct proc *s, struct proc *t, const char *tag,
				 char *mon, char *st, size_t len)
{
	char addr[32], name[32], reply[4096] = "";
	int prt = h_port();

	snprintf(name, sizeof(name), "%s-%d", tag, (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(mon, len, "slow.sock");
	tmpfile_path(st, len, "slow.json");
	spawn_target(t, prt, st);
	failing_source(s, addr, name, mon, "2M", NULL);
	for (int i = 0; i < 200; i++) {
		proc_pump(s, 50);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)) == 0 &&
		    strstr(reply, "status: active"))
			break;
	}
	assert_non_null(strstr(reply, "status: active"));
}

static void test_cancel(void **state)
{
	char mon[128], st[128], reply[4096];
	struct proc s, t;

	(void)state;
	start_slow_migration(&s, &t, "can", mon, st, sizeof(mon));
	/* Progress shows inside round 0 (2 MB/s: seconds long), not only at
	 * its end. */
	{
		unsigned long long b1 = 0, b2 = 0;
		char *p;

		assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
		p = strstr(reply, "bytes_total: ");
		assert_non_null(p);
		b1 = strtoull(p + 13, NULL, 10);
		usleep(1000000);
		assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
		assert_non_null(strstr(reply, "round: 0"));
		p = strstr(reply, "bytes_total: ");
		assert_non_null(p);
		b2 = strtoull(p + 13, NULL, 10);
		if (b2 <= b1)
			fail_msg("info migrate: bytes_total %llu then %llu within round 0", b1, b2);
	}
	assert_int_equal(h_monitor(mon, "migrate_cancel", reply, sizeof(reply)), 0);
	assert_true(proc_wait_stderr(&s, "cancelled", 10000));
	assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "status: cancelled"));
	assert_int_equal(proc_wait_exit(&t, 10000), 3);
	assert_true(proc_stderr_has(&t, "the source gave up"));
	finish_source(&s);
	proc_free(&t);
	unlink(st);
}

static void test_target_killed_mid_round(void **state)
{
	char mon[128], st[128], reply[4096];
	struct proc s, t;

	(void)state;
	start_slow_migration(&s, &t, "kil", mon, st, sizeof(mon));
	proc_kill(&t, SIGKILL);
	proc_wait_exit(&t, 10000);
	assert_true(proc_wait_stderr(&s, "failed", 15000));
	assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "status: failed"));
	finish_source(&s);
	proc_free(&t);
	unlink(st);
}

static void test_target_killed_mid_switchover(void **state)
{
	char addr[32], name[32], st[128];
	struct proc s, t;
	int prt = h_port();

	(void)state;
	snprintf(name, sizeof(name), "sw-%d", (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(st, sizeof(st), "sw.json");
	/* The target dies after END, before READY: the source is paused. */
	setenv("MINIVMM_TEST_TARGET_DIE", "before-ready", 1);
	spawn_target(&t, prt, st);
	unsetenv("MINIVMM_TEST_TARGET_DIE");
	failing_source(&s, addr, name, NULL, NULL, "failed");
	assert_int_not_equal(proc_wait_exit(&t, 10000), 0);
	finish_source(&s);
	proc_free(&t);
	unlink(st);
}

/* Mean of the heartbeats' rate= (pages dirtied per second) in [from, to). */
static double mean_rate(struct proc *p, size_t from, size_t to)
{
	double sum = 0;
	long seq, tms, rate;
	int n = 0;

	for (size_t i = from; i < to && i < p->nlines; i++)
		if (sscanf(p->lines[i].text, "seq=%ld t_ms=%ld rate=%ld", &seq, &tms, &rate) == 3) {
			sum += (double)rate;
			n++;
		}
	return n ? sum / n : -1;
}

static void pump_for(struct proc *p, int ms)
{
	double end = h_now_ms() + ms;

	while (h_now_ms() < end)
		proc_pump(p, 50);
}

/* A migration that cannot converge (5 MB/s against a guest that
 * rewrites 16 MiB as fast as it can, even held half of the time),
 * throttled to 50 % (from round 0 on), then cancelled or its target
 * killed: the guest gets its full dirtying rate back (the throttle ends
 * on every way out). */
static void throttled_then(bool kill_target)
{
	char addr[32], name[32], mon[128], st[128], reply[4096] = "";
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--name", name,
			       "--migrate", addr, "--migrate-after", "1.5", "--monitor", mon,
			       "--max-bandwidth", "5M", "--throttle-initial", "50",
			       "--throttle-increment", "30", "--throttle-max", "50", NULL };
	struct proc s, t;
	double base, held, after;
	size_t mark;
	int prt = h_port(), i;

	snprintf(name, sizeof(name), "thr%d-%d", kill_target, (int)getpid());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", prt);
	tmpfile_path(mon, sizeof(mon), kill_target ? "thrk.sock" : "thrc.sock");
	tmpfile_path(st, sizeof(st), "thrt.json");
	spawn_target(&t, prt, st);
	assert_int_equal(proc_spawn(&s, argv), 0);
	pump_for(&s, 1400);
	base = mean_rate(&s, 2, s.nlines);
	for (i = 0; i < 600; i++) {
		proc_pump(&s, 50);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)) == 0 &&
		    strstr(reply, "throttle_pct: 50"))
			break;
	}
	if (!strstr(reply, "throttle_pct: 50"))
		fail_msg("throttle never reached 50 %%: %s", reply);
	mark = s.nlines;
	pump_for(&s, 1000);
	held = mean_rate(&s, mark + 1, s.nlines);
	if (kill_target) {
		proc_kill(&t, SIGKILL);
		proc_wait_exit(&t, 10000);
	} else {
		assert_int_equal(h_monitor(mon, "migrate_cancel", reply, sizeof(reply)), 0);
	}
	assert_true(proc_wait_stderr(&s, "the guest keeps running here", 15000));
	pump_for(&s, 500);
	mark = s.nlines;
	pump_for(&s, 2000);
	after = mean_rate(&s, mark, s.nlines);
	/* What is asserted is that the throttle ends: the rate comes back.
	 * How much a 50 % throttle holds the guest is printed, not asserted:
	 * in the emulator on this 2-core machine it wanders from a third to
	 * nearly all of the rate between windows (docs/migration.md). */
	print_message("dirty rate before %.0f, throttled %.0f, after %.0f pages/s\n", base, held,
		      after);
	if (!(base > 0 && held >= 0 && after > base * 0.6))
		fail_msg("dirty rate before %.0f, throttled %.0f, after %.0f pages/s", base, held,
			 after);
	assert_int_equal(h_monitor(mon, "info migrate", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, kill_target ? "status: failed" : "status: cancelled"));
	finish_source(&s);
	if (!kill_target)
		proc_wait_exit(&t, 10000);
	proc_free(&t);
	unlink(st);
}

static void test_cancel_while_throttled(void **state) { (void)state; throttled_then(false); }
static void test_target_killed_while_throttled(void **state) { (void)state; throttled_then(true); }

/* ---- hostile streams sent straight to a target ------------------------ */

static int connect_to(int prt)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)prt) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Preamble + a HELLO for a 16 MiB, 1-vCPU VM with a CPU description that
 * asks for nothing (this host's vendor, no features). */
static size_t good_start(uint8_t *b, uint32_t version)
{
	char name[32];

	snprintf(name, sizeof(name), "hostile-%d", (int)getpid());
	return h_hello(b, version, 16ULL << 20, 1, name, 1);
}

static void hostile(const uint8_t *bytes, size_t len, bool wait_accept,
		    const uint8_t *more, size_t morelen, const char *expect)
{
	char st[128];
	struct proc t;
	int prt = h_port(), fd;
	uint8_t reply[64];

	tmpfile_path(st, sizeof(st), "hostile.json");
	spawn_target(&t, prt, st);
	fd = connect_to(prt);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	if (wait_accept) {
		ssize_t n = read(fd, reply, 8);

		if (n != 8 || reply[0] != 2)
			fail_msg("no ACCEPT (%zd bytes, type %d): %s", n, n > 0 ? reply[0] : -1,
				 t.err ? t.err : "");
	}
	if (morelen)
		assert_int_equal(write(fd, more, morelen), (ssize_t)morelen);
	shutdown(fd, SHUT_WR); /* a truncated stream ends here */
	if (!wait_accept) {
		/* Before HELLO is accepted nothing has begun: the target
		 * refuses that connection and waits on (test_robust.c). */
		if (!proc_wait_stderr(&t, "refused a connection", 15000) ||
		    !proc_stderr_has(&t, expect))
			fail_msg("target stderr lacks '%s': %s", expect, t.err ? t.err : "");
		proc_pump(&t, 10);
		assert_false(t.exited);
		proc_kill(&t, SIGTERM);
	}
	assert_int_equal(proc_wait_exit(&t, 15000), 3);
	if (!proc_stderr_has(&t, expect))
		fail_msg("target stderr lacks '%s': %s", expect, t.err ? t.err : "");
	assert_true(proc_stderr_has(&t, "incoming migration failed"));
	close(fd);
	proc_free(&t);
	unlink(st);
}

static void test_hostile_garbage(void **state)
{
	const uint8_t junk[] = "GET / HTTP/1.0\r\n\r\n";

	(void)state;
	hostile(junk, sizeof(junk) - 1, false, NULL, 0, "bad magic");
}

static void test_hostile_wrong_version(void **state)
{
	uint8_t b[256];

	(void)state;
	hostile(b, good_start(b, 7), false, NULL, 0, "version 7 is not supported");
}

static void test_hostile_truncated_hello(void **state)
{
	uint8_t b[256];
	size_t n = good_start(b, 1);

	(void)state;
	hostile(b, n - 30, false, NULL, 0, "closed by the peer");
}

static void test_hostile_page_out_of_range(void **state)
{
	uint8_t b[256], f[64];

	(void)state;
	memset(f, 0, sizeof(f));
	h_put32(f, 6);                 /* ROUND 0 */
	h_put32(f + 4, 8);
	h_put32(f + 16, 7);            /* PAGES: one zero run past 16 MiB */
	h_put32(f + 20, 8 + 16);
	h_put32(f + 24, 1);
	h_put64(f + 32, 4095);
	h_put32(f + 40, 2);
	h_put32(f + 44, 1);
	hostile(b, good_start(b, 1), true, f, 48, "outside guest RAM");
}

static void test_hostile_huge_frame(void **state)
{
	uint8_t b[256], f[8];

	(void)state;
	h_put32(f, 8);                 /* STATE of 4 GiB - 1 */
	h_put32(f + 4, 0xffffffffu);
	hostile(b, good_start(b, 1), true, f, 8, "exceeds the limit");
}

static void test_hostile_truncated_pages(void **state)
{
	uint8_t b[256], f[64];

	(void)state;
	memset(f, 0, sizeof(f));
	h_put32(f, 6);
	h_put32(f + 4, 8);
	h_put32(f + 16, 7);            /* PAGES: one normal page, contents cut */
	h_put32(f + 20, 8 + 16 + 4096);
	h_put32(f + 24, 1);
	h_put64(f + 32, 10);
	h_put32(f + 40, 1);
	hostile(b, good_start(b, 1), true, f, 56, "closed by the peer");
}

/* A source that asks for one data channel, connects it with the given
 * token (xor'ed: flip != 0 presents a wrong one) and, when sync_round >= 0,
 * ends a round on it that never began, then opens round 1 on the main
 * stream. The target must refuse with `expect`. */
static void hostile_channel(uint64_t flip, int64_t sync_round, const char *expect)
{
	uint8_t b[256], f[64], reply[32];
	char st[128];
	struct proc t;
	int prt = h_port(), fd, cfd;
	uint64_t token = 0;

	tmpfile_path(st, sizeof(st), "hostile-chan.json");
	spawn_target(&t, prt, st);
	fd = connect_to(prt);
	assert_int_equal(write(fd, b, good_start(b, 1)), (ssize_t)good_start(b, 1));
	assert_int_equal(read(fd, reply, 8), 8); /* ACCEPT */
	assert_int_equal(reply[0], 2);
	memset(f, 0, sizeof(f));
	h_put32(f, 14);                /* CHANNELS: one, please */
	h_put32(f + 4, 12);
	h_put32(f + 8, 1);
	assert_int_equal(write(fd, f, 20), 20);
	assert_int_equal(read(fd, reply, 20), 20);
	assert_int_equal(reply[0], 14);
	assert_int_equal(reply[8], 1);
	for (int i = 0; i < 8; i++)
		token |= (uint64_t)reply[12 + i] << (8 * i);
	cfd = connect_to(prt);
	memset(f, 0, sizeof(f));
	memcpy(f, "MVMMIGR\n", 8);
	h_put32(f + 8, 1);
	h_put32(f + 16, 15);           /* CHANNEL 0 */
	h_put32(f + 20, 12);
	h_put32(f + 24, 0);
	h_put64(f + 28, token ^ flip);
	assert_int_equal(write(cfd, f, 36), 36);
	if (sync_round >= 0) {
		memset(f, 0, sizeof(f));
		h_put32(f, 6);                 /* main: ROUND 0 */
		h_put32(f + 4, 8);
		assert_int_equal(write(fd, f, 16), 16);
		h_put32(f, 16);                /* channel: SYNC out of order */
		h_put32(f + 4, 4);
		h_put32(f + 8, (uint32_t)sync_round);
		assert_int_equal(write(cfd, f, 12), 12);
		memset(f, 0, sizeof(f));
		h_put32(f, 6);                 /* main: ROUND 1 waits for the channel */
		h_put32(f + 4, 8);
		h_put32(f + 8, 1);
		assert_int_equal(write(fd, f, 16), 16);
	}
	assert_int_equal(proc_wait_exit(&t, 15000), 3);
	if (!proc_stderr_has(&t, expect))
		fail_msg("target stderr lacks '%s': %s", expect, t.err ? t.err : "");
	close(cfd);
	close(fd);
	proc_free(&t);
	unlink(st);
}

static void test_hostile_channel_token(void **state)
{
	(void)state;
	hostile_channel(1, -1, "wrong token");
}

static void test_hostile_channel_sync(void **state)
{
	(void)state;
	hostile_channel(0, 5, "SYNC for round 5 after round -1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_garbage),
		cmocka_unit_test(test_hostile_wrong_version),
		cmocka_unit_test(test_hostile_truncated_hello),
		cmocka_unit_test(test_hostile_page_out_of_range),
		cmocka_unit_test(test_hostile_huge_frame),
		cmocka_unit_test(test_hostile_truncated_pages),
		cmocka_unit_test(test_hostile_channel_token),
		cmocka_unit_test(test_hostile_channel_sync),
		cmocka_unit_test(test_wss0_1cpu),
		cmocka_unit_test(test_wss0_2cpu),
		cmocka_unit_test(test_wss16_1cpu),
		cmocka_unit_test(test_wss16_2cpu),
		cmocka_unit_test(test_wss64_1cpu),
		cmocka_unit_test(test_wss64_2cpu),
		cmocka_unit_test(test_unix_channels),
		cmocka_unit_test(test_throttle_1cpu),
		cmocka_unit_test(test_xbzrle_1cpu),
		cmocka_unit_test(test_xbzrle_2cpu),
		cmocka_unit_test(test_ring_1cpu),
		cmocka_unit_test(test_ring_2cpu),
		cmocka_unit_test(test_ring_bad_size),
		cmocka_unit_test(test_throttle_2cpu),
		cmocka_unit_test(test_cancel_while_throttled),
		cmocka_unit_test(test_target_killed_while_throttled),
		cmocka_unit_test(test_unix_one_stream),
		cmocka_unit_test(test_double_migration),
		cmocka_unit_test(test_cold_migration_file),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_hung_target_times_out),
		cmocka_unit_test(test_reject_name_clash),
		cmocka_unit_test(test_reject_cpu),
		cmocka_unit_test(test_reject_mem),
		cmocka_unit_test(test_reject_cpus),
		cmocka_unit_test(test_prealloc_target),
		cmocka_unit_test(test_target_shell_rebuilt),
		cmocka_unit_test(test_long_pass),
		cmocka_unit_test(test_stopped_source_idle),
		cmocka_unit_test(test_slow_drain),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_target_killed_mid_round),
		cmocka_unit_test(test_target_killed_mid_switchover),
	};

	/* TEST_FILTER=glob runs only the matching tests (one at a time when
	 * re-running a timing-sensitive one). */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
