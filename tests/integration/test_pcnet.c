/* Post-copy of the net guest: on the target the VMM's own accesses to
 * guest RAM (the virtio-net rings and buffers, from the NIC's I/O thread
 * and vCPU exits) fault on missing pages like the guest's do and are
 * served without a deadlock: pings every 5 ms keep being answered
 * through the switch and the post-copy phase, and the guest verifies its
 * memory on the target. In a network namespace of the test's own (bridge
 * pcbr0, 10.77.0.1/24; the guest is 10.77.0.2). */
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

/* Replies and the longest gap between them, from `ping -D` output. */
static long replies(struct proc *p, long *sent, double *gap_ms)
{
	double last = -1;
	long n = 0;

	*sent = 0;
	*gap_ms = 0;
	for (size_t i = 0; i < p->nlines; i++) {
		const char *l = p->lines[i].text;
		double ts;

		if (strstr(l, "packets transmitted"))
			*sent = atol(l);
		if (!strstr(l, "bytes from") || strstr(l, "DUP!") || sscanf(l, "[%lf]", &ts) != 1)
			continue;
		if (last >= 0 && (ts - last) * 1000 > *gap_ms)
			*gap_ms = (ts - last) * 1000;
		last = ts;
		n++;
	}
	return n;
}

static void test_postcopy_pinged(void **state)
{
	char addr[32], mon[96], tst[96], reply[4096], cmd[64];
	const char *src[] = { NULL, "--kernel", NET_ELF, "--append", "wss=8", "--name", "pcnet",
			      "--net", "tap=pcs0,bridge=pcbr0", "--postcopy", "--max-bandwidth",
			      "4M", "--monitor", mon, NULL };
	const char *ping[] = { "ping", "-D", "-n", "-i", "0.005", "-c", "1000", "-W", "2",
			       GUEST_IP, NULL };
	struct proc s, t, p;
	long sent, got;
	double gap;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h_port());
	snprintf(mon, sizeof(mon), "/tmp/test_pcnet_%d.sock", (int)getpid());
	snprintf(tst, sizeof(tst), "/tmp/test_pcnet_%d.json", (int)getpid());
	h_spawn_target(&t, addr, (const char *[]){ "--net", "tap=pct0", "--stats-json", tst,
						    NULL });
	assert_int_equal(proc_spawn(&s, src), 0);
	assert_true(proc_wait_line(&s, 0, "net: up", T_BOOT) >= 0);
	assert_int_equal(proc_spawn(&p, ping), 0);
	proc_pump(&p, 500);
	snprintf(cmd, sizeof(cmd), "migrate %s", addr);
	assert_int_equal(h_monitor(mon, cmd, reply, sizeof(reply)), 0);
	for (int i = 0; i < 100; i++) {
		proc_pump(&p, 50);
		if (h_monitor(mon, "info migrate", reply, sizeof(reply)) == 0 &&
		    strstr(reply, "status: active"))
			break;
	}
	proc_pump(&p, 300);
	/* Inside round 0 (16 MiB at 4 MB/s): the switch leaves most pages
	 * to be fetched while the guest answers pings on the target. */
	assert_int_equal(h_monitor(mon, "migrate_start_postcopy", reply, sizeof(reply)), 0);
	if (proc_wait_exit(&s, T_MIG) != 0)
		fail_msg("source failed: %s", s.err ? s.err : "");
	assert_true(proc_stderr_has(&s, "switching to post-copy"));
	assert_true(proc_wait_stderr(&t, "post-copy completed", 20000));
	{
		const char *c = strstr(t.err, "post-copy completed: ");
		unsigned long pages = c ? strtoul(c + 21, NULL, 10) : 0;

		/* Pages were fetched while the guest ran there. */
		if (pages == 0)
			fail_msg("no page went post-copy: %s", t.err);
	}
	assert_true(proc_wait_exit(&p, 30000) >= 0);
	got = replies(&p, &sent, &gap);
	print_message("pings through post-copy: sent %ld, answered %ld, longest gap %.1f ms\n",
		      sent, got, gap);
	if (sent < 100 || sent - got > 1)
		fail_msg("%ld pings sent, %ld answered: more than one lost", sent, got);
	proc_send(&t, "v");
	if (proc_wait_line(&t, 0, "verify: pass", 30000) < 0)
		fail_msg("guest verify on the target did not pass");
	proc_kill(&t, SIGTERM);
	proc_wait_exit(&t, 10000);
	proc_free(&p);
	proc_free(&s);
	proc_free(&t);
	unlink(tst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postcopy_pinged),
	};

	h_ports_init(121);
	h_require_kvm();
	/* Our own namespace: nothing here touches the host's links. */
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_pcnet: unshare(CLONE_NEWNET): %s (needs root)\n",
			strerror(errno));
		return 1;
	}
	if (system("ip link set lo up && ip link add pcbr0 type bridge && "
		   "ip link set pcbr0 type bridge forward_delay 0 stp_state 0 && "
		   "ip link set pcbr0 address 02:00:00:77:00:01 && "
		   "ip addr add 10.77.0.1/24 dev pcbr0 && ip link set pcbr0 up") != 0) {
		fprintf(stderr, "test_pcnet: iproute2 cannot make the bridge "
			"(tests/install-deps.sh installs iproute2)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
