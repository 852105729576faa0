/* Snapshots written by earlier releases must keep restoring: the v1
 * fixture (an 8 MiB dirty guest saved mid-run by the release before the
 * device list) restores, runs on to its own verify and exits with the
 * guest's status. The blob's device sections (UART, console line) are
 * read by today's device list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "tests/harness.h"

#define FIXTURE_V1 "tests/fixtures/v1-dirty-8m.snap"

static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	return 0;
}

static void test_v1_fixture_restores(void **state)
{
	const char *argv[] = { NULL, "--incoming", "file:" FIXTURE_V1, NULL };
	struct proc p;
	long last = -1, first = -1;
	int status;

	(void)state;
	status = proc_run(&p, argv, 60000);
	if (status != 1)
		fail_msg("status %d, expected 1 (guest verify passed); stderr: %s", status,
			 p.err ? p.err : "");
	assert_true(proc_wait_line(&p, 0, "verify: pass pages=256", 0) >= 0);
	assert_true(proc_stderr_has(&p, "incoming migration completed"));
	/* The guest continues where it was saved: one heartbeat after
	 * another, no line cut or doubled. */
	for (size_t i = 0; i < p.nlines; i++) {
		long seq;

		if (sscanf(p.lines[i].text, "seq=%ld", &seq) != 1)
			continue;
		if (first < 0)
			first = seq;
		else if (seq != last + 1)
			fail_msg("heartbeat seq=%ld after seq=%ld", seq, last);
		last = seq;
	}
	assert_true(first > 0);
	assert_true(last > first);
	print_message("    v1 fixture: restored at seq=%ld, ran to seq=%ld, verify passed\n",
		      first, last);
	proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_fixture_restores),
	};
	return cmocka_run_group_tests_name("snapshot", tests, kvm_setup, NULL);
}
