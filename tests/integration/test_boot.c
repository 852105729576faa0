/* Boot each guest under KVM and check its console and exit status; every
 * kind of bad input; the monitor; signals; name clashes. */
#include <errno.h>
#include <fcntl.h>
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

#define HELLO "build/guests/hello.elf"

static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	return 0;
}

/* Every consecutive heartbeat after `from` must have the next seq. */
static long check_heartbeats(struct proc *p, size_t from)
{
	long last = -1;

	for (size_t i = from; i < p->nlines; i++) {
		long seq;

		if (sscanf(p->lines[i].text, "seq=%ld", &seq) != 1)
			continue;
		if (last >= 0 && seq != last + 1)
			fail_msg("heartbeat seq=%ld after seq=%ld", seq, last);
		last = seq;
	}
	return last;
}

static void test_hello(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", HELLO, NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 30000), 1); /* (0 << 1) | 1 */
	assert_true(proc_wait_line(&p, 0, "hello: boot cpus=1 mem_mb=256", 0) >= 0);
	assert_true(proc_wait_line(&p, 0, "hello: hello from a minivmm test guest", 0) >= 0);
	proc_free(&p);
}

static void test_hello_poweroff_is_clean_exit(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", HELLO, "--append", "exit=poweroff",
			       "--mem", "64M", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 30000), 0);
	assert_true(proc_wait_line(&p, 0, "mem_mb=64", 0) >= 0);
	proc_free(&p);
}

static void test_counter(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", COUNTER, "--append",
			       "count=5 period_ms=20", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 30000), 1);
	assert_int_equal(proc_count_prefix(&p, 0, "seq="), 5);
	assert_int_equal(check_heartbeats(&p, 0), 5);
	proc_free(&p);
}

static void test_dirty_verifies_smp(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", DIRTY, "--cpus", "2", "--mem", "128M",
			       "--append", "wss=8 count=3 verify=1", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 60000), 1);
	assert_true(proc_wait_line(&p, 0, "cpus=2", 0) >= 0);
	assert_true(proc_wait_line(&p, 0, "verify: pass pages=2048", 0) >= 0);
	assert_int_equal(check_heartbeats(&p, 0), 3);
	proc_free(&p);
}

static void test_serial_input_reaches_guest(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", DIRTY, "--append",
			       "wss=4 period_ms=50", NULL };

	(void)state;
	assert_int_equal(proc_spawn(&p, argv), 0);
	assert_true(proc_wait_line(&p, 0, "seq=2", 20000) >= 0);
	proc_send(&p, "v");
	assert_true(proc_wait_line(&p, 0, "verify: pass pages=1024", 20000) >= 0);
	proc_send(&p, "q");
	assert_int_equal(proc_wait_exit(&p, 20000), 1);
	proc_free(&p);
}

static void test_large_guest_high_memory(void **state)
{
	struct proc p;
	/* 4G puts 1 GiB above the 32-bit hole; the guest maps and uses it. */
	const char *argv[] = { NULL, "--kernel", COUNTER, "--mem", "4G", "--append",
			       "count=1", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 30000), 1);
	assert_true(proc_wait_line(&p, 0, "mem_mb=4096", 0) >= 0);
	proc_free(&p);
}

static void expect_fail(const char **argv, int status, const char *needle)
{
	struct proc p;
	int st = proc_run(&p, argv, 30000);

	if (st != status || !proc_stderr_has(&p, needle))
		fail_msg("status %d (want %d), stderr '%s' (want '%s')", st, status,
			 p.err ? p.err : "", needle);
	/* one line, no sanitizer report */
	assert_non_null(p.err);
	assert_ptr_equal(strchr(p.err, '\n'), p.err + strlen(p.err) - 1);
	proc_free(&p);
}

static char *write_temp(const void *data, size_t len)
{
	char *path = strdup("/tmp/minivmm-test-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_bad_input(void **state)
{
	uint8_t junk[4096];
	char *junkf, *big;

	(void)state;
	memset(junk, 0x41, sizeof(junk));
	junkf = write_temp(junk, sizeof(junk));
	expect_fail((const char *[]){ NULL, "--kernel", "/nonexistent.elf", NULL }, 2,
		    "No such file");
	expect_fail((const char *[]){ NULL, "--kernel", "/tmp", NULL }, 2, "not a regular");
	expect_fail((const char *[]){ NULL, "--kernel", junkf, NULL }, 2, "not a Multiboot image");
	/* An ELF that is not multiboot: our own binary. */
	expect_fail((const char *[]){ NULL, "--kernel", "minivmm", NULL }, 2,
		    "not a Multiboot image");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--mem", "1M", NULL }, 2, "too small");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--mem", "9T", NULL }, 2, "too large");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--mem", "abc", NULL }, 2, "not a size");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--cpus", "0", NULL }, 2, "--cpus");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--cpus", "65", NULL }, 2, "--cpus");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--frobnicate", NULL }, 2,
		    "unknown option");
	expect_fail((const char *[]){ NULL, NULL }, 2, "no --kernel");
	/* A bad migration address is bad usage (2), found before anything
	 * listens or boots, not a failed migration (3). */
	expect_fail((const char *[]){ NULL, "--incoming", "127.0.0.1:99999", NULL }, 2,
		    "port 99999 is out of range (1-65535)");
	expect_fail((const char *[]){ NULL, "--incoming", "127.0.0.1:0", NULL }, 2,
		    "out of range");
	expect_fail((const char *[]){ NULL, "--incoming", "unix:", NULL }, 2, "no path");
	expect_fail((const char *[]){ NULL, "--migrate", "nonsense", NULL }, 2,
		    "--migrate: bad address 'nonsense'");
	expect_fail((const char *[]){ NULL, "--migrate", ":4444", NULL }, 2, "no host");
	expect_fail((const char *[]){ NULL, "--kernel", HELLO, "--migrate", "host:port", NULL },
		    2, "port 'port' is not a number");
	unlink(junkf);
	free(junkf);
	/* A 4 MiB guest cannot hold a segment loaded at 8 MiB. */
	{
		uint8_t img[0x200] = { 0 };
		uint32_t h[8] = { 0x1badb002u, 0x10003u, (uint32_t)-(0x1badb002u + 0x10003u),
				  0x800000, 0x800000, 0x800100, 0x900000, 0x800040 };

		memcpy(img, h, sizeof(h));
		big = write_temp(img, sizeof(img));
		expect_fail((const char *[]){ NULL, "--kernel", big, "--mem", "4M", NULL }, 2,
			    "outside guest RAM");
		unlink(big);
		free(big);
	}
}

static void test_crash_is_reported(void **state)
{
	/* a.out-kludge image whose entry executes ud2 with no IDT: KVM ends
	 * it as a shutdown (triple fault) or an emulation failure. */
	uint8_t img[0x200] = { 0 };
	uint32_t h[8] = { 0x1badb002u, 0x10003u, (uint32_t)-(0x1badb002u + 0x10003u),
			  0x100000, 0x100000, 0x100200, 0x101000, 0x100100 };
	struct proc p;
	char *f;

	(void)state;
	memcpy(img, h, sizeof(h));
	img[0x100] = 0x0f;
	img[0x101] = 0x0b;
	f = write_temp(img, sizeof(img));
	assert_int_equal(proc_run(&p, (const char *[]){ NULL, "--kernel", f, NULL }, 30000), 4);
	assert_true(proc_stderr_has(&p, "minivmm: "));
	assert_true(proc_stderr_has(&p, "rip="));
	assert_true(proc_stderr_has(&p, "triple fault") ||
		    proc_stderr_has(&p, "KVM_EXIT_INTERNAL_ERROR"));
	proc_free(&p);
	unlink(f);
	free(f);
}

static void test_no_kvm_permission(void **state)
{
	struct proc p;
	const char *argv[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			       h_minivmm(), "--kernel", HELLO, "--monitor",
			       "/tmp/minivmm-nobody.sock", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 30000), 2);
	assert_true(proc_stderr_has(&p, "/dev/kvm: Permission denied"));
	proc_free(&p);
}

static void test_monitor_and_name_clash(void **state)
{
	char sock[64], name[32];
	struct proc vm, other;
	char buf[8192];
	size_t mark;
	const char *argv[] = { NULL, "--kernel", COUNTER, "--name", name,
			       "--append", "period_ms=20", NULL };

	(void)state;
	/* Per pid: two runs of the suite at once must not share a VM name. */
	snprintf(name, sizeof(name), "itest-mon-%d", (int)getpid());
	snprintf(sock, sizeof(sock), "/run/minivmm/%s.sock", name);
	assert_int_equal(proc_spawn(&vm, argv), 0);
	assert_true(proc_wait_line(&vm, 0, "seq=3", 20000) >= 0);

	/* The name is taken while this VM runs. */
	assert_int_equal(proc_run(&other, argv, 30000), 2);
	assert_true(proc_stderr_has(&other, "already in use"));
	proc_free(&other);

	assert_int_equal(h_monitor(sock, "info status", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "status: running"));
	assert_non_null(strstr(buf, name));
	assert_int_equal(h_monitor(sock, "bogus", buf, sizeof(buf)), 1);
	assert_non_null(strstr(buf, "unknown command"));
	assert_int_equal(h_monitor(sock, "help", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "migrate"));
	/* `help` lists every migration parameter (one table makes it). */
	for (const char *const *p = (const char *const[]){ "downtime-ms", "max-bandwidth",
		"verify-ram", "channels", "nice", "max-rounds", "max-bytes-factor", "max-time-s",
		"on-nonconvergence", "manual-protect", "stats-json", "dirty-trace", NULL }; *p; p++)
		if (!strstr(buf, *p))
			fail_msg("help lacks %s", *p);

	/* stop: no heartbeat for a while; cont: the next seq follows. */
	assert_int_equal(h_monitor(sock, "stop", buf, sizeof(buf)), 0);
	assert_int_equal(h_monitor(sock, "info status", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "status: paused"));
	while (proc_pump(&vm, 50) && vm.nlines == 0)
		;
	mark = vm.nlines;
	for (int i = 0; i < 10; i++)
		proc_pump(&vm, 50);
	assert_int_equal(vm.nlines, mark);
	assert_int_equal(h_monitor(sock, "cont", buf, sizeof(buf)), 0);
	assert_true(proc_wait_line(&vm, mark, "seq=", 20000) >= 0);
	check_heartbeats(&vm, 0);

	assert_int_equal(h_monitor(sock, "quit", buf, sizeof(buf)), 0);
	assert_int_equal(proc_wait_exit(&vm, 20000), 0);
	assert_true(access(sock, F_OK) != 0); /* socket removed */
	proc_free(&vm);
}

static void test_sigterm_stops_cleanly(void **state)
{
	struct proc p;
	const char *argv[] = { NULL, "--kernel", COUNTER, "--cpus", "2", NULL };

	(void)state;
	assert_int_equal(proc_spawn(&p, argv), 0);
	assert_true(proc_wait_line(&p, 0, "seq=2", 20000) >= 0);
	proc_kill(&p, SIGTERM);
	assert_int_equal(proc_wait_exit(&p, 20000), 0);
	assert_true(proc_stderr_has(&p, "terminating on signal 15"));
	proc_free(&p);
}

static void test_valgrind_clean(void **state)
{
	struct proc p;
	/* The optimised binary, not the sanitizer one: valgrind and ASan
	 * do not mix. Two vCPUs exercise the thread start/stop paths. */
	const char *argv[] = { "valgrind", "-q", "--error-exitcode=9", "--leak-check=full",
			       "--errors-for-leak-kinds=definite,indirect", "./minivmm",
			       "--kernel", COUNTER, "--cpus", "2", "--append",
			       "count=2 period_ms=10", NULL };

	(void)state;
	assert_int_equal(proc_run(&p, argv, 120000), 1);
	assert_int_equal(proc_count_prefix(&p, 0, "seq="), 2);
	if (p.err && *p.err)
		fail_msg("valgrind reported: %s", p.err);
	proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_hello_poweroff_is_clean_exit),
		cmocka_unit_test(test_counter),
		cmocka_unit_test(test_dirty_verifies_smp),
		cmocka_unit_test(test_serial_input_reaches_guest),
		cmocka_unit_test(test_large_guest_high_memory),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_crash_is_reported),
		cmocka_unit_test(test_no_kvm_permission),
		cmocka_unit_test(test_monitor_and_name_clash),
		cmocka_unit_test(test_sigterm_stops_cleanly),
		cmocka_unit_test(test_valgrind_clean),
	};
	return cmocka_run_group_tests_name("boot", tests, kvm_setup, NULL);
}
