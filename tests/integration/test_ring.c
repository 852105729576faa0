/* The dirty ring's full path on real KVM: with the reaper held off
 * (MINIVMM_TEST_DRING_REAP_MS=0) the vCPUs fill their 4096-entry rings
 * between syncs and take KVM_EXIT_DIRTY_RING_FULL. Under nested kvm_pvm
 * a full ring overflows (docs/migration.md, "Dirty tracking"): the
 * migration must still move the guest whole (guest verify, RAM digest),
 * and a migration that fails after an overflow must leave the guest
 * running at the source, where a second migration moves it. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"

static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	h_ports_init(11);
	return 0;
}

static void tmp_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_ring_%d_%s", (int)getpid(), tag);
}

static void target_at(struct proc *t, const char *addr, const char *stats)
{
	const char *extra[] = { "--stats-json", stats, NULL };

	h_spawn_target(t, addr, extra);
}

/* The dirty guest with a ring of the smallest size, the reaper off, a
 * 16 MiB working set rewritten at full speed, 50 MB/s (rounds of about
 * 0.35 s, long enough to fill a ring several times) and at most three
 * rounds before the switchover is forced. */
static void ring_source(struct proc *s, const char *addr, const char *cpus, const char *stats,
			const char *mon)
{
	const char *argv[32] = { NULL, "--kernel", DIRTY, "--append", "wss=16", "--cpus", cpus,
				 "--dirty-tracking", "ring", "--dirty-ring-size", "4096",
				 "--migrate", addr, "--migrate-after", "1.2", "--verify-ram",
				 "--stats-json", stats, "--max-bandwidth", "50M",
				 "--max-rounds", "3", "--on-nonconvergence", "force", NULL };
	int n = 22;

	if (mon) {
		argv[n++] = "--monitor";
		argv[n++] = mon;
		argv[n] = NULL;
	}
	setenv("MINIVMM_TEST_DRING_REAP_MS", "0", 1);
	assert_int_equal(proc_spawn(s, argv), 0);
	unsetenv("MINIVMM_TEST_DRING_REAP_MS");
}

static long seq_at(struct proc *p, size_t i)
{
	long seq;

	return sscanf(p->lines[i].text, "seq=%ld", &seq) == 1 ? seq : -1;
}

/* Consecutive heartbeats from line `from` on have consecutive seqs. */
static void check_heartbeats(struct proc *p, size_t from)
{
	long last = -1;

	for (size_t i = from; i < p->nlines; i++) {
		long seq = seq_at(p, i);

		if (seq < 0)
			continue;
		if (last >= 0 && seq != last + 1)
			fail_msg("heartbeat seq=%ld after seq=%ld", seq, last);
		last = seq;
	}
}

/* The guest on t: RAM digest verified, its own check of every
 * working-set page passes, and it keeps beating. */
static void check_moved(struct proc *t)
{
	if (!proc_wait_stderr(t, "RAM digest verified", 10000))
		fail_msg("target: no verified RAM digest: %s", t->err ? t->err : "");
	assert_true(proc_wait_line(t, 0, "seq=", T_BOOT) >= 0);
	proc_send(t, "v");
	if (proc_wait_line(t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	assert_true(proc_wait_line(t, t->nlines, "seq=", 5000) >= 0);
	check_heartbeats(t, 0);
}

/* The stats' dirty_ring_lost_reason (a string h_json_num cannot read). */
static void lost_reason(const char *stats, char *out, size_t n)
{
	const char *key = "\"dirty_ring_lost_reason\": \"";
	char buf[16384], *p, *q;
	FILE *f = fopen(stats, "r");
	size_t len;

	snprintf(out, n, "?");
	if (!f)
		return;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	p = strstr(buf, key);
	if (p && (q = strchr(p + strlen(key), '"')) != NULL)
		snprintf(out, n, "%.*s", (int)(q - p - strlen(key)), p + strlen(key));
}

/* What the ring did, for the log, and what must follow from it: a lost
 * ring means every sync resent the populated pages and says why; no
 * loss, none. */
static void report_ring(const char *stats, const char *what)
{
	double full = h_json_num(stats, "dirty_ring_full_exits");
	double lost = h_json_num(stats, "dirty_ring_lost");
	double resyncs = h_json_num(stats, "dirty_ring_resyncs");
	double resends = h_json_num(stats, "dirty_ring_resends");
	char why[32];

	lost_reason(stats, why, sizeof(why));
	printf("ring %s: full_exits=%.0f lost=%.0f (%s) resyncs=%.0f resends=%.0f "
	       "reset_errors=%.0f rounds=%.0f downtime_ms=%.1f total_ms=%.1f\n", what, full,
	       lost, why, resyncs, resends, h_json_num(stats, "dirty_ring_reset_errors"),
	       h_json_num(stats, "rounds"), h_json_num(stats, "downtime_ms"),
	       h_json_num(stats, "total_ms"));
	assert_true(h_json_num(stats, "dirty_ring_entries") == 4096);
	if (lost && resends < 1)
		fail_msg("tracking lost but no sync resent the populated pages");
	if (!lost && (resends || resyncs))
		fail_msg("resends %.0f, resyncs %.0f without a lost ring", resends, resyncs);
	if ((lost != 0) != (strcmp(why, "none") != 0))
		fail_msg("dirty_ring_lost %.0f with the reason \"%s\"", lost, why);
}

static void migrate_full(const char *cpus)
{
	char addr[32], sst[128], tst[128];
	struct proc s, t;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	tmp_path(sst, sizeof(sst), "src.json");
	tmp_path(tst, sizeof(tst), "tgt.json");
	target_at(&t, addr, tst);
	ring_source(&s, addr, cpus, sst, NULL);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "completed"));
	check_moved(&t);
	assert_true(h_json_num(sst, "result") == 1);
	assert_true(h_json_num(tst, "result") == 1);
	report_ring(sst, cpus);
	if (h_json_num(sst, "dirty_ring_full_exits") <= 0)
		fail_msg("no vCPU stopped on a full ring");
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&s);
	proc_free(&t);
	unlink(sst);
	unlink(tst);
}

static void test_ring_full_1cpu(void **state) { (void)state; migrate_full("1"); }
static void test_ring_full_2cpu(void **state) { (void)state; migrate_full("2"); }

/* The target dies after END (its rings filled and, here, overflowed): the
 * source's guest keeps running (before the resync its vCPUs exited on a
 * full ring forever), and a second migration, which trusts no ring of
 * this VM any more, moves it whole. */
static void test_ring_full_failed_then_again(void **state)
{
	char a1[32], a2[32], sst[128], first[128], tst[128], mon[128], cmd[300], reply[512];
	struct proc s, t1, t2;
	size_t mark;
	long a, b;

	(void)state;
	snprintf(a1, sizeof(a1), "127.0.0.1:%d", h_port());
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", h_port());
	tmp_path(sst, sizeof(sst), "again.json");
	tmp_path(first, sizeof(first), "first.json");
	tmp_path(tst, sizeof(tst), "again_tgt.json");
	tmp_path(mon, sizeof(mon), "mon");
	setenv("MINIVMM_TEST_TARGET_DIE", "before-ready", 1);
	target_at(&t1, a1, tst);
	unsetenv("MINIVMM_TEST_TARGET_DIE");
	ring_source(&s, a1, "1", sst, mon);
	if (!proc_wait_stderr(&s, "the guest keeps running here", T_MIG))
		fail_msg("source did not roll back: %s", s.err ? s.err : "");
	proc_wait_exit(&t1, 10000);
	mark = s.nlines;
	assert_true(proc_wait_line(&s, mark, "seq=", 5000) >= 0);
	a = seq_at(&s, s.nlines - 1);
	assert_true(proc_wait_line(&s, s.nlines, "seq=", 5000) >= 0);
	assert_true(proc_wait_line(&s, s.nlines, "seq=", 5000) >= 0);
	b = seq_at(&s, s.nlines - 1);
	if (b < a + 2)
		fail_msg("the source's guest stopped after the failed migration (seq %ld, %ld)",
			 a, b);
	report_ring(sst, "failed");
	assert_true(h_json_num(sst, "result") == 0);
	snprintf(cmd, sizeof(cmd), "cp %s %s", sst, first);
	assert_int_equal(system(cmd), 0);

	target_at(&t2, a2, tst);
	snprintf(cmd, sizeof(cmd), "migrate %s", a2);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("second migration: %s", s.err ? s.err : "");
	check_moved(&t2);
	assert_true(h_json_num(sst, "result") == 1);
	report_ring(sst, "again");
	if (h_json_num(first, "dirty_ring_lost") && !h_json_num(sst, "dirty_ring_lost"))
		fail_msg("a VM whose ring overflowed was trusted again");
	proc_kill(&t2, SIGTERM);
	proc_wait_exit(&t2, 10000);
	proc_free(&s);
	proc_free(&t1);
	proc_free(&t2);
	unlink(sst);
	unlink(first);
	unlink(tst);
	unlink(mon);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_full_1cpu),
		cmocka_unit_test(test_ring_full_2cpu),
		cmocka_unit_test(test_ring_full_failed_then_again),
	};

	/* TEST_FILTER=glob runs only the matching tests. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
