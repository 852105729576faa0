/* The classic demonstration as tests: the net guest on a bridge answers
 * pings; it keeps answering while it migrates (at most one ping lost at a
 * 5 ms interval) and verifies its memory on the target; it migrates back;
 * a target whose host lacks the bridge refuses before any RAM moves and
 * the source keeps answering. All inside a network namespace of the
 * test's own (bridge mvbr0, 10.77.0.1/24; the guest is 10.77.0.2). */
#include <errno.h>
#include <sched.h>
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

#define GUEST_IP "10.77.0.2"
#define T_UP 20000

struct pings {
	long sent, received, dup;
	double max_gap_ms;
};

/* Reads `ping -D` output: counts and the longest gap between replies. */
static void ping_stats(struct proc *p, struct pings *out)
{
	double last = -1;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < p->nlines; i++) {
		const char *l = p->lines[i].text;
		double ts;

		if (strstr(l, "packets transmitted"))
			out->sent = atol(l);
		if (!strstr(l, "bytes from") || sscanf(l, "[%lf]", &ts) != 1)
			continue;
		if (strstr(l, "DUP!")) {
			out->dup++;
			continue;
		}
		if (last >= 0 && (ts - last) * 1000 > out->max_gap_ms)
			out->max_gap_ms = (ts - last) * 1000;
		last = ts;
		out->received++;
	}
}

/* A count, not a deadline: a deadline counts the replies still in
 * flight when it expires as lost. */
static void spawn_ping(struct proc *p, const char *interval, const char *count)
{
	const char *argv[] = { "ping", "-D", "-n", "-i", interval, "-c", count, "-W", "2", GUEST_IP,
			       NULL };

	assert_int_equal(proc_spawn(p, argv), 0);
}

/* A few pings, all answered: the guest is reachable where it runs now. */
static void expect_reachable(void)
{
	const char *argv[] = { "ping", "-D", "-n", "-c", "10", "-i", "0.05", "-W", "2", GUEST_IP,
			       NULL };
	struct pings st;
	struct proc p;

	assert_int_equal(proc_spawn(&p, argv), 0);
	assert_int_equal(proc_wait_exit(&p, 20000), 0);
	ping_stats(&p, &st);
	if (st.received != 10)
		fail_msg("%ld of 10 pings answered", st.received);
	proc_free(&p);
}

static void spawn_source_append(struct proc *s, const char *name, const char *tap, const char *uri,
				const char *after, const char *append)
{
	char net[64];
	const char *argv[] = { NULL, "--kernel", NET_ELF, "--append", append, "--name", name,
			       "--net", net, "--migrate", uri, "--migrate-after", after, NULL };
	const char *boot[] = { NULL, "--kernel", NET_ELF, "--append", append, "--name", name,
			       "--net", net, NULL };

	snprintf(net, sizeof(net), "tap=%s,bridge=mvbr0", tap);
	assert_int_equal(proc_spawn(s, uri ? argv : boot), 0);
	assert_true(proc_wait_line(s, 0, "net: up", T_UP) >= 0);
}

static void spawn_source(struct proc *s, const char *name, const char *tap, const char *uri,
			 const char *after)
{
	spawn_source_append(s, name, tap, uri, after, "wss=8");
}

static void spawn_target(struct proc *t, const char *uri, const char *tap, const char *wrap)
{
	char net[64];
	const char *argv[] = { NULL, "--incoming", uri, "--net", net, NULL };
	const char *wrapped[] = { "unshare", "-n", h_minivmm(), "--incoming", uri, "--net", net,
				  NULL };

	snprintf(net, sizeof(net), "tap=%s", tap);
	assert_int_equal(proc_spawn(t, wrap ? wrapped : argv), 0);
	assert_true(proc_wait_stderr(t, "waiting for a migration", 5000));
}

static void test_ping(void **state)
{
	struct proc s;

	(void)state;
	spawn_source(&s, "netmig-ping", "mvp0", NULL, NULL);
	/* The guest takes the device's INTx line (slot 1: IRQ 10), so a
	 * request preempts its dirtying instead of waiting for a poll. */
	assert_true(proc_wait_line(&s, 0, " link=1 irq=10", 1000) >= 0);
	expect_reachable();
	proc_kill(&s, SIGTERM);
	assert_int_equal(proc_wait_exit(&s, 10000), 0);
	proc_free(&s);
}

/* The guest's polling driver (irq=0, and what it falls back to without a
 * usable line) still answers. */
static void test_ping_polled(void **state)
{
	struct proc s;

	(void)state;
	spawn_source_append(&s, "netmig-poll", "mvp1", NULL, NULL, "wss=8 irq=0");
	assert_true(proc_wait_line(&s, 0, " link=1 irq=poll", 1000) >= 0);
	expect_reachable();
	proc_kill(&s, SIGTERM);
	assert_int_equal(proc_wait_exit(&s, 10000), 0);
	proc_free(&s);
}

/* Migrates the guest running in `from` (by its monitor when mon is set,
 * else it was started with --migrate) to t while pinging every 5 ms. */
static void migrate_pinging(struct proc *from, const char *mon, struct proc *t,
			    const char *uri)
{
	struct pings st;
	struct proc ping;
	char buf[512];

	spawn_ping(&ping, "0.005", "1000");
	if (mon) {
		char cmd[160];

		usleep(1000 * 1000);
		snprintf(cmd, sizeof(cmd), "migrate %s", uri);
		assert_int_equal(h_monitor(mon, cmd, buf, sizeof(buf)), 0);
	}
	if (proc_wait_exit(from, T_MIG) != 0)
		fail_msg("source failed: %s", from->err ? from->err : "");
	assert_true(proc_stderr_has(from, "completed"));
	assert_true(proc_wait_line(t, 0, "seq=", T_UP) >= 0);
	assert_true(proc_wait_exit(&ping, 30000) >= 0);
	ping_stats(&ping, &st);
	print_message("pings: sent %ld, received %ld, dup %ld, longest gap %.1f ms\n", st.sent,
		      st.received, st.dup, st.max_gap_ms);
	if (st.sent < 100 || st.sent - st.received > 1)
		fail_msg("%ld pings sent, %ld answered: more than one lost", st.sent, st.received);
	proc_free(&ping);
	expect_reachable();
	/* The guest's own check of every page it dirtied, on the target. */
	proc_send(t, "v");
	assert_true(proc_wait_line(t, 0, "verify: pass", 30000) >= 0);
}

static void test_migrate_and_back(void **state)
{
	char a1[32], a2[32], mon[64];
	struct proc s, t, u;

	(void)state;
	snprintf(a1, sizeof(a1), "127.0.0.1:%d", h_port());
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", h_port());
	spawn_target(&t, a1, "mvt1", NULL);
	spawn_source(&s, "netmig-ab", "mvs1", a1, "3");
	migrate_pinging(&s, NULL, &t, a1);
	proc_free(&s);

	/* And back, through the monitor of the VM that now runs on t. */
	spawn_target(&u, a2, "mvs1", NULL);
	snprintf(mon, sizeof(mon), "/run/minivmm/netmig-ab.sock");
	migrate_pinging(&t, mon, &u, a2);
	proc_free(&t);
	proc_send(&u, "q");
	proc_wait_exit(&u, 30000);
	proc_free(&u);
}

/* The target's host has no bridge mvbr0: a namespace of its own, reached
 * through a unix socket. It refuses at HELLO; the guest stays. */
static void test_target_without_bridge(void **state)
{
	char uri[96];
	struct proc s, t;

	(void)state;
	snprintf(uri, sizeof(uri), "unix:/tmp/test_netmig_%d.sock", (int)getpid());
	spawn_target(&t, uri, "mvt2", "unshare");
	spawn_source(&s, "netmig-nobr", "mvs2", uri, "1");
	proc_wait_stderr(&s, "keeps running here", 10000);
	if (!proc_stderr_has(&s, "bridge mvbr0 not found on this host"))
		fail_msg("source stderr: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "keeps running here"));
	/* The target refused this source and waits on for another. */
	proc_wait_stderr(&t, "still waiting", 5000);
	assert_true(proc_stderr_has(&t, "bridge mvbr0 not found on this host"));
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	expect_reachable();
	proc_kill(&s, SIGTERM);
	assert_int_equal(proc_wait_exit(&s, 10000), 0);
	proc_free(&s);
	proc_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping),
		cmocka_unit_test(test_ping_polled),
		cmocka_unit_test(test_migrate_and_back),
		cmocka_unit_test(test_target_without_bridge),
	};

	h_ports_init(53);
	h_require_kvm();
	/* Our own namespace: nothing here touches the host's links. A
	 * machine that cannot make one fails the test, loudly. */
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_netmig: unshare(CLONE_NEWNET): %s (needs root)\n",
			strerror(errno));
		return 1;
	}
	if (system("ip link set lo up && ip link add mvbr0 type bridge && "
		   "ip link set mvbr0 type bridge forward_delay 0 stp_state 0 && "
		   /* fixed: else the bridge takes its ports' lowest MAC, which
		    * changes when the source's tap goes (replies then lost) */
		   "ip link set mvbr0 address 02:00:00:77:00:01 && "
		   "ip addr add 10.77.0.1/24 dev mvbr0 && ip link set mvbr0 up") != 0) {
		fprintf(stderr, "test_netmig: iproute2 cannot make the bridge "
			"(tests/install-deps.sh installs iproute2)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
