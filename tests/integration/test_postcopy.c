/* Post-copy on real KVM (docs/postcopy.md): the dirty guest migrated with
 * post-copy on 1 and 2 vCPUs (guest verify, RAM digest, heartbeat
 * continuous on the target), migrate_start_postcopy inside round 0 (and
 * late, with a post-copy phase longer than a frame's deadline), the
 * link cut during post-copy and recovered, and the source killed during
 * post-copy (the target pauses the guest and says so). */
#include <setjmp.h>
#include <stdbool.h>
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
	h_ports_init(12);
	return 0;
}

static void path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/test_postcopy_%d_%s", (int)getpid(), tag);
}

static long seq_at(struct proc *p, size_t i)
{
	long seq;

	return sscanf(p->lines[i].text, "seq=%ld t_ms", &seq) == 1 ? seq : -1;
}

struct pair {
	struct proc s, t;
	char addr[32], sstats[128], tstats[128], smon[128], tmon[128], cpus[8], wss[32];
};

/* Consecutive heartbeats have consecutive seqs; returns the longest
 * interval between two arrivals before line upto (the guest's verify,
 * after "v", prints none while it reads the working set). The lines are
 * timed as they arrive: wait_source() reads both processes meanwhile. */
static double check_heartbeats(struct proc *p, size_t upto)
{
	long last = -1;
	double t_last = 0, gap = 0;

	for (size_t i = 0; i < p->nlines; i++) {
		long seq = seq_at(p, i);

		if (seq < 0)
			continue;
		if (last >= 0 && seq != last + 1)
			fail_msg("heartbeat seq=%ld after seq=%ld", seq, last);
		if (i < upto && last >= 0 && p->lines[i].t_ms - t_last > gap)
			gap = p->lines[i].t_ms - t_last;
		last = seq;
		t_last = p->lines[i].t_ms;
	}
	return gap;
}

/* The guest-observed gap: the source's last heartbeat to the target's
 * first, as the harness got them. */
static double switch_gap(struct proc *s, struct proc *t)
{
	double a = -1, b = -1;

	for (size_t i = 0; i < s->nlines; i++)
		if (seq_at(s, i) >= 0)
			a = s->lines[i].t_ms;
	for (size_t i = 0; i < t->nlines && b < 0; i++)
		if (seq_at(t, i) >= 0)
			b = t->lines[i].t_ms;
	return a >= 0 && b >= 0 ? b - a : -1;
}

/* Reads both ends (so every line is timed when it comes) until the
 * source exits; its status, or -1 on timeout. */
static int wait_source(struct pair *p, int ms)
{
	double end = h_now_ms() + ms;

	while (h_now_ms() < end) {
		bool alive = proc_pump(&p->s, 10);

		proc_pump(&p->t, 10);
		if (!alive)
			return proc_wait_exit(&p->s, 1000);
	}
	return proc_wait_exit(&p->s, 1);
}

static long last_seq(struct proc *p)
{
	long last = -1;

	for (size_t i = 0; i < p->nlines; i++)
		if (seq_at(p, i) >= 0)
			last = seq_at(p, i);
	return last;
}

static long first_seq(struct proc *p)
{
	for (size_t i = 0; i < p->nlines; i++)
		if (seq_at(p, i) >= 0)
			return seq_at(p, i);
	return -1;
}


/* A target, and a dirty guest migrating to it with post-copy allowed and
 * the link held to rate (so that pre-copy does not converge). */
static void start_pair_guest(struct pair *p, int cpus, const char *guest, const char *rate,
			     const char *after, const char **extra)
{
	const char *argv[40] = { NULL, "--kernel", DIRTY, "--append", p->wss, "--cpus", p->cpus,
				 "--migrate", p->addr, "--migrate-after", after, "--verify-ram",
				 "--postcopy", "--max-bandwidth", rate, "--stats-json", p->sstats,
				 "--monitor", p->smon, NULL };
	int n = 19;

	memset(&p->s, 0, sizeof(p->s));
	snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", h_port());
	snprintf(p->cpus, sizeof(p->cpus), "%d", cpus);
	snprintf(p->wss, sizeof(p->wss), "%s", guest);
	path(p->sstats, sizeof(p->sstats), "s.json");
	path(p->tstats, sizeof(p->tstats), "t.json");
	path(p->smon, sizeof(p->smon), "s.sock");
	path(p->tmon, sizeof(p->tmon), "t.sock");
	h_spawn_target(&p->t, p->addr, (const char *[]){ "--stats-json", p->tstats,
							  "--monitor", p->tmon, NULL });
	while (extra && *extra && n < 39)
		argv[n++] = *extra++;
	argv[n] = NULL;
	assert_int_equal(proc_spawn(&p->s, argv), 0);
}

static void start_pair(struct pair *p, int cpus, int wss, const char *rate, const char *after,
		       const char **extra)
{
	char guest[32];

	snprintf(guest, sizeof(guest), "wss=%d", wss);
	start_pair_guest(p, cpus, guest, rate, after, extra);
}

/* Every page arrived, both ends say post-copy, the guest is whole and
 * its heartbeat went on without a gap in the sequence. */
/* cut: the link was cut, so bytes in flight then were written by the
 * source and never read by the target. */
static void check_done(struct pair *p, int wss, bool cut)
{
	long last, first;
	size_t before_v;
	double gap;

	if (wait_source(p, T_MIG) != 0)
		fail_msg("source failed: %s", p->s.err ? p->s.err : "");
	assert_true(proc_stderr_has(&p->s, "switching to post-copy"));
	assert_true(proc_wait_stderr(&p->t, "post-copy completed", 20000));
	assert_true(proc_stderr_has(&p->t, "RAM digest verified"));
	last = last_seq(&p->s);
	assert_true(proc_wait_line(&p->t, 0, "seq=", T_BOOT) >= 0);
	first = first_seq(&p->t);
	if (last >= 0 && first != last + 1)
		fail_msg("heartbeat: source ended at seq=%ld, target began at seq=%ld", last, first);
	/* Heartbeats over the whole post-copy phase before the verify. */
	assert_true(proc_wait_line(&p->t, p->t.nlines, "seq=", 5000) >= 0);
	before_v = p->t.nlines;
	proc_send(&p->t, "v");
	if (wss > 0 && proc_wait_line(&p->t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	assert_true(proc_wait_line(&p->t, p->t.nlines, "seq=", 5000) >= 0);
	gap = check_heartbeats(&p->t, before_v);
	assert_true(h_json_num(p->sstats, "result") == 1);
	assert_true(h_json_num(p->tstats, "result") == 1);
	assert_true(h_json_num(p->sstats, "postcopy") == 1);
	assert_true(h_json_num(p->tstats, "postcopy") == 1);
	/* Every missing page went once, asked for or pushed. */
	if (h_json_num(p->tstats, "postcopy_pages_requested") +
	    h_json_num(p->tstats, "postcopy_pages_pushed") !=
	    h_json_num(p->tstats, "postcopy_pages_missing"))
		fail_msg("target: %.0f requested + %.0f pushed != %.0f missing",
			 h_json_num(p->tstats, "postcopy_pages_requested"),
			 h_json_num(p->tstats, "postcopy_pages_pushed"),
			 h_json_num(p->tstats, "postcopy_pages_missing"));
	assert_true(h_json_num(p->sstats, "postcopy_pages_missing") ==
		    h_json_num(p->tstats, "postcopy_pages_missing"));
	/* The push's queue was bounded and gated (TCP): four 64 KiB loopback
	 * segments at least, never above the cap. */
	assert_in_range(h_json_num(p->sstats, "postcopy_push_queue_bytes"), 4 * 16384, 4 << 20);
	assert_in_range(h_json_num(p->sstats, "postcopy_push_gate_bytes"), 8192, 4 << 20);
	if (!cut)
		assert_true(h_json_num(p->sstats, "bytes_total") ==
			    h_json_num(p->tstats, "bytes_total"));
	assert_true(h_json_num(p->tstats, "postcopy_fault_max_ms") >=
		    h_json_num(p->tstats, "postcopy_fault_p99_ms"));
	/* Sane figures: no wait longer than the whole migration. */
	assert_true(h_json_num(p->tstats, "postcopy_fault_max_ms") <=
		    h_json_num(p->tstats, "total_ms"));
	assert_true(h_json_num(p->tstats, "postcopy_blocktime_ms") <=
		    h_json_num(p->tstats, "total_ms") * h_json_num(p->tstats, "vcpus") + 1000);
	assert_true(h_json_num(p->tstats, "postcopy_fault_p99_ms") >=
		    h_json_num(p->tstats, "postcopy_fault_p50_ms"));
	print_message("post-copy: downtime %.1f ms, post-copy %.0f ms, %.0f missing, %.0f "
		      "faults (p50 %.2f, p99 %.2f, max %.2f ms), blocktime %.1f ms; heartbeats "
		      "(every 100 ms): %.0f ms across the switch, at most %.0f ms apart on the "
		      "target\n", h_json_num(p->sstats, "downtime_ms"),
		      h_json_num(p->tstats, "postcopy_ms"),
		      h_json_num(p->tstats, "postcopy_pages_missing"),
		      h_json_num(p->tstats, "postcopy_faults"),
		      h_json_num(p->tstats, "postcopy_fault_p50_ms"),
		      h_json_num(p->tstats, "postcopy_fault_p99_ms"),
		      h_json_num(p->tstats, "postcopy_fault_max_ms"),
		      h_json_num(p->tstats, "postcopy_blocktime_ms"), switch_gap(&p->s, &p->t), gap);
}

static void end_pair(struct pair *p)
{
	proc_kill(&p->t, SIGTERM);
	if (proc_wait_exit(&p->t, 10000) < 0)
		fail_msg("the target did not exit on SIGTERM");
	proc_kill(&p->s, SIGKILL);
	proc_wait_exit(&p->s, 5000);
	proc_free(&p->s);
	proc_free(&p->t);
	unlink(p->sstats);
	unlink(p->tstats);
}

/* 64 MiB rewritten faster than 30 MB/s: pre-copy does not converge and
 * on-nonconvergence (postcopy, the default with --postcopy) switches. */
static void migrate_postcopy(int cpus)
{
	struct pair p;

	start_pair(&p, cpus, 64, "30M", "1.5", NULL);
	check_done(&p, 64, false);
	assert_true(h_json_num(p.sstats, "converged") == 0);
	/* The running vCPU's stack page (dirtied all the time) went with the
	 * state, not on demand; within the bound. */
	assert_in_range(h_json_num(p.sstats, "postcopy_pages_hot"), 1, 64);
	/* So did its tick counter, written every ms but named by no
	 * register; the working set, written once a lap, did not (a window
	 * that saw every dirty page would fill the budget). */
	assert_in_range(h_json_num(p.sstats, "postcopy_pages_busy"), 1, 16);
	/* Two windows of 5 ms and their syncs, not a walk over all RAM. */
	assert_in_range(h_json_num(p.sstats, "postcopy_hotwin_ms"), 10, 200);
	end_pair(&p);
}

/* With the delta cache the push sends the pages the guest rewrote as
 * deltas against the stale copies the target kept (the dirty guest
 * changes 16 bytes a page): every delta under the cap, the guest whole.
 * (Pages that change whole go whole: test_pcserve's test_push_deltas.) */
static void test_postcopy_delta(void **state)
{
	struct pair p;
	double sd, td;

	(void)state;
	start_pair(&p, 1, 64, "30M", "1.5", (const char *[]){ "--xbzrle-cache", "96M", NULL });
	check_done(&p, 64, false);
	sd = h_json_num(p.sstats, "postcopy_pages_delta");
	td = h_json_num(p.tstats, "postcopy_pages_delta");
	print_message("deltas: %.0f sent, %.0f placed, of %.0f pushed; %.0f bytes saved\n", sd, td,
		      h_json_num(p.tstats, "postcopy_pages_pushed"),
		      h_json_num(p.sstats, "postcopy_delta_bytes_saved"));
	if (!(td >= 1 && td <= sd))
		fail_msg("deltas: %.0f sent, %.0f placed", sd, td);
	assert_true(td <= h_json_num(p.tstats, "postcopy_pages_pushed"));
	/* Each entry is at most PC_DELTA_CAP (2048) bytes plus its length. */
	assert_true(h_json_num(p.sstats, "postcopy_delta_bytes_saved") >= sd * 2046);
	end_pair(&p);
}

static void test_postcopy_1cpu(void **state) { (void)state; migrate_postcopy(1); }
static void test_postcopy_2cpu(void **state) { (void)state; migrate_postcopy(2); }

/* Waits until the source's `info migrate` contains want. */
static void wait_info(struct pair *p, const char *mon, const char *want, int ms)
{
	char reply[8192] = "";

	for (int i = 0; i < ms / 50; i++) {
		proc_pump(&p->s, 25);
		proc_pump(&p->t, 25);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)) == 0 && strstr(reply, want))
			return;
	}
	fail_msg("info migrate never showed '%s': %s", want, reply);
}

/* The command switches at the end of the pass it arrives in: round 0
 * (64 MiB at 20 MB/s, seconds long), so the switch is round 1. */
static void test_start_postcopy_round0(void **state)
{
	char reply[4096];
	struct pair p;

	(void)state;
	start_pair(&p, 1, 64, "20M", "1", (const char *[]){ "--on-nonconvergence", "throttle",
							   NULL });
	double t;

	wait_info(&p, p.smon, "round: 0", 10000);
	/* Well inside round 0: 64 MiB at 20 MB/s take over 3 s. */
	wait_info(&p, p.smon, "bytes_total: 1", 10000);
	t = h_now_ms();
	assert_int_equal(h_monitor(p.smon, "migrate_start_postcopy", reply, sizeof(reply)), 0);
	assert_true(proc_wait_stderr(&p.s, "switching to post-copy", 10000));
	t = h_now_ms() - t;
	check_done(&p, 64, false);
	/* Round 0 ended early (the switch is round 1), at once. */
	assert_true(h_json_num(p.sstats, "rounds") == 2);
	print_message("migrate_start_postcopy in round 0: switched %.0f ms later\n", t);
	if (t > 1000)
		fail_msg("the switch came %.0f ms after migrate_start_postcopy", t);
	end_pair(&p);
}

/* A switch long after the start and a post-copy phase longer than a
 * frame's deadline (MIG_IO_TIMEOUT_MS, 10 s): the return path's first
 * reply comes 11 s after it opened, and the push runs for over 10 s after
 * the last pre-copy frame. Both used to fail their first read ("a frame
 * did not arrive in time", a deadline left over from the frame before):
 * every post-copy that began 10 s into a migration paused the guest. The
 * guest dirties slowly (200 pages/s), so that the push, not its faults,
 * brings most of the 96 MiB: 4 MB/s, round 0 cut at 11 s. */
static void test_late_long_postcopy(void **state)
{
	char reply[4096];
	struct pair p;
	double t0;

	(void)state;
	start_pair_guest(&p, 1, "wss=96 rate=200", "4M", "1",
			 (const char *[]){ "--on-nonconvergence", "throttle", NULL });
	wait_info(&p, p.smon, "round: 0", 10000);
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 11000) {
		proc_pump(&p.s, 50);
		proc_pump(&p.t, 50);
	}
	assert_int_equal(h_monitor(p.smon, "migrate_start_postcopy", reply, sizeof(reply)), 0);
	assert_true(proc_wait_stderr(&p.s, "switching to post-copy", 10000));
	check_done(&p, 96, false);
	print_message("late switch: post-copy %.0f ms, %.0f pages pushed\n",
		      h_json_num(p.tstats, "postcopy_ms"),
		      h_json_num(p.tstats, "postcopy_pages_pushed"));
	if (h_json_num(p.tstats, "postcopy_ms") <= 10000)
		fail_msg("post-copy took %.0f ms: not past a frame's deadline",
			 h_json_num(p.tstats, "postcopy_ms"));
	end_pair(&p);
}

/* The connections cut after 2000 pushed pages (test hook): both sides
 * pause and say so, then migrate_recover + migrate resume and finish.
 * With deltas: pages pushed again after the recovery are encoded against
 * the same stale copies, which the target still keeps. */
static void test_link_cut_recovered(void **state)
{
	char reply[8192], uri[32], cmd[64];
	struct pair p;

	(void)state;
	setenv("MINIVMM_TEST_PC_CUT", "2000", 1);
	start_pair(&p, 2, 64, "20M", "1.5", (const char *[]){ "--xbzrle-cache", "96M", NULL });
	unsetenv("MINIVMM_TEST_PC_CUT");
	if (!proc_wait_stderr(&p.s, "the link to the target is lost", T_MIG))
		fail_msg("source never lost the link: %s", p.s.err ? p.s.err : "");
	if (!proc_wait_stderr(&p.t, "the link to the source is lost", 15000))
		fail_msg("target never lost the link: %s", p.t.err ? p.t.err : "");
	wait_info(&p, p.smon, "status: postcopy-paused", 5000);
	wait_info(&p, p.tmon, "status: postcopy-paused", 5000);
	snprintf(uri, sizeof(uri), "127.0.0.1:%d", h_port());
	snprintf(cmd, sizeof(cmd), "migrate_recover %s", uri);
	assert_int_equal(h_monitor(p.tmon, cmd, reply, sizeof(reply)), 0);
	assert_true(proc_wait_stderr(&p.t, "waiting for the source on", 5000));
	snprintf(cmd, sizeof(cmd), "migrate %s", uri);
	assert_int_equal(h_monitor(p.smon, cmd, reply, sizeof(reply)), 0);
	check_done(&p, 64, true);
	assert_true(h_json_num(p.sstats, "postcopy_recoveries") == 1);
	assert_true(h_json_num(p.tstats, "postcopy_recoveries") == 1);
	assert_true(h_json_num(p.tstats, "postcopy_pages_delta") >= 1);
	end_pair(&p);
}

/* A pair in post-copy for seconds: 64 MiB at 10 MB/s, the target running
 * the guest. */
static void start_in_postcopy(struct pair *p)
{
	start_pair(p, 1, 64, "10M", "1.5", NULL);
	assert_true(proc_wait_stderr(&p->s, "switching to post-copy", T_MIG));
	assert_true(proc_wait_stderr(&p->t, "post-copy: its missing pages follow", 10000));
}

/* The source killed during post-copy: the target pauses the guest, says
 * how many pages are still on the source, waits for a recovery, and a
 * SIGTERM still ends it. */
static void test_source_killed(void **state)
{
	char reply[8192];
	struct pair p;

	(void)state;
	start_in_postcopy(&p);
	proc_kill(&p.s, SIGKILL);
	proc_wait_exit(&p.s, 5000);
	assert_true(proc_wait_stderr(&p.t, "the link to the source is lost", 15000));
	assert_true(proc_stderr_has(&p.t, "it is lost if the source is gone"));
	assert_int_equal(h_monitor(p.tmon, "info migrate", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "status: postcopy-paused"));
	assert_non_null(strstr(reply, "error: post-copy link lost"));
	assert_false(proc_stderr_has(&p.t, "post-copy completed"));
	end_pair(&p);
}

/* The target's VM quits during post-copy: it tells the source, which
 * stops waiting for a recovery that cannot come and says why. */
static void test_target_quits(void **state)
{
	char reply[8192];
	struct pair p;

	(void)state;
	start_in_postcopy(&p);
	assert_int_equal(h_monitor(p.tmon, "quit", reply, sizeof(reply)), 0);
	if (proc_wait_exit(&p.t, 10000) < 0)
		fail_msg("the target did not exit on quit");
	if (!proc_wait_stderr(&p.s, "the VM stopped on the target during post-copy (quit)", 5000))
		fail_msg("the source was not told: %s", p.s.err ? p.s.err : "");
	assert_false(proc_stderr_has(&p.s, "the link to the target is lost"));
	assert_int_equal(h_monitor(p.smon, "info migrate", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "status: failed"));
	assert_true(h_json_num(p.sstats, "result") != 1);
	end_pair(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postcopy_1cpu),
		cmocka_unit_test(test_postcopy_2cpu),
		cmocka_unit_test(test_postcopy_delta),
		cmocka_unit_test(test_start_postcopy_round0),
		cmocka_unit_test(test_late_long_postcopy),
		cmocka_unit_test(test_link_cut_recovered),
		cmocka_unit_test(test_source_killed),
		cmocka_unit_test(test_target_quits),
	};

	return cmocka_run_group_tests(tests, kvm_setup, NULL);
}
