/* --net on a booting VM, in a network namespace of the test's own: the tap
 * exists, is a port of the bridge and is up; bad --net values, a missing
 * bridge, a non-bridge and a tap held by another process each exit 2 with
 * one line. iproute2 (tests only) builds the bridge and reads links. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/harness.h"


static bool link_has(const char *dev, const char *needle)
{
	char cmd[128], buf[1024] = "";
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "ip -o link show dev %s 2>/dev/null", dev);
	f = popen(cmd, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	pclose(f);
	return strstr(buf, needle) != NULL;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void test_tap_on_bridge(void **state)
{
	const char *argv[] = { NULL, "--kernel", COUNTER, "--name", "net-it", "--monitor",
			       "/tmp/minivmm-net-it.sock", "--net", "tap=mvtap0,bridge=mvbr0", NULL };
	struct proc p;

	(void)state;
	h_require_kvm();
	assert_int_equal(proc_spawn(&p, argv), 0);
	assert_true(proc_wait_line(&p, 0, "seq=1", 20000) >= 0);
	assert_true(link_has("mvtap0", "master mvbr0"));
	assert_true(link_has("mvtap0", ",UP"));
	proc_kill(&p, SIGTERM);
	assert_int_equal(proc_wait_exit(&p, 10000), 0);
	proc_free(&p);
	/* Not persistent: the tap goes with the VM. */
	assert_false(link_has("mvtap0", "mvtap0"));
}

static void expect_usage(const char *net, const char *msg)
{
	const char *argv[] = { NULL, "--kernel", COUNTER, "--net", net, NULL };
	struct proc p;

	assert_int_equal(proc_run(&p, argv, 20000), 2);
	if (!proc_stderr_has(&p, msg))
		fail_msg("--net %s: stderr '%s' lacks '%s'", net, p.err ? p.err : "", msg);
	assert_int_equal(count_lines(p.err), 1);
	proc_free(&p);
}

static void test_bad_net(void **state)
{
	(void)state;
	h_require_kvm();
	expect_usage("tap=mvtap1,mac=52:54:00:zz:00:01", "mac '52:54:00:zz:00:01'");
	expect_usage("tap=mvtap1,mac=01:54:00:00:00:01", "not a unicast MAC");
	expect_usage("tap=abcdefghijklmnopq", "tap name 'abcdefghijklmnopq'");
	expect_usage("tap=a/b", "tap name 'a/b'");
	expect_usage("tap=mvtap1,speed=10", "unknown key 'speed'");
	expect_usage("bridge=mvbr0", "tap=IFNAME is required");
	expect_usage("tap=mvtap1,bridge=nosuchbr", "bridge 'nosuchbr' does not exist");
	expect_usage("tap=mvtap1,bridge=lo", "'lo' is not a bridge");
}

static void test_tap_busy(void **state)
{
	struct ifreq ifr;
	int fd;

	(void)state;
	h_require_kvm();
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "mvbusy0");
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	expect_usage("tap=mvbusy0", "tap 'mvbusy0' is in use by another process");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tap_on_bridge),
		cmocka_unit_test(test_bad_net),
		cmocka_unit_test(test_tap_busy),
	};

	/* Our own namespace: nothing here touches the host's links. */
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_net: unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
		return 1;
	}
	if (system("ip link set lo up && ip link add mvbr0 type bridge && ip link set mvbr0 up") != 0) {
		fprintf(stderr, "test_net: iproute2 cannot make the bridge "
			"(tests/install-deps.sh installs iproute2)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
