/* Snapshots written by earlier releases must keep restoring: the v1
 * fixture (an 8 MiB dirty guest saved mid-run by the release before the
 * device list, 398fc55) restores, runs on to its own verify and exits
 * with the guest's status. The blob's device sections (UART, console
 * line) are read by today's device list. A snapshot carries its host's
 * CPU, so there is one per vendor: this host's restores (or, where this
 * host's CPU differs from that fixture's, one the same release writes
 * here), the other's is refused with one clear line before the guest
 * runs. */
#include <cpuid.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/harness.h"

#define FIXTURE_V1_AMD "tests/fixtures/v1-dirty-8m.snap"
#define FIXTURE_V1_INTEL "tests/fixtures/v1-dirty-8m-intel.snap"

static bool host_is_intel(void)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	char v[13];

	assert_true(__get_cpuid(0, &a, &b, &c, &d));
	memcpy(v, &b, 4);
	memcpy(v + 4, &d, 4);
	memcpy(v + 8, &c, 4);
	v[12] = 0;
	if (strcmp(v, "GenuineIntel") && strcmp(v, "AuthenticAMD"))
		fail_msg("host CPU vendor %s: no fixture of it", v);
	return strcmp(v, "GenuineIntel") == 0;
}

static int kvm_setup(void **state)
{
	(void)state;
	h_require_kvm();
	return 0;
}

#define V1_HOST_SNAP "build/v1-dirty-8m-host.snap"

/* Restores a v1 snapshot; its status (the guest's exit status: 1 once its
 * verify passed), with p holding what it printed. */
static int restore(struct proc *p, const char *uri)
{
	const char *argv[] = { NULL, "--incoming", uri, NULL };

	return proc_run(p, argv, 60000);
}

/* The committed fixture of the host's vendor; on a host of that vendor
 * whose CPU differs from the fixture's (features, XSAVE layout, TSC rate:
 * the fixture is refused, rightly), one written here by the same release,
 * rebuilt from this repository's history (tests/fixtures/make-v1.sh). */
static void test_v1_fixture_restores(void **state)
{
	const char *fixture = host_is_intel() ? "file:" FIXTURE_V1_INTEL : "file:" FIXTURE_V1_AMD;
	struct proc p;
	long last = -1, first = -1;
	int status;

	(void)state;
	status = restore(&p, fixture);
	if (status != 1 && proc_stderr_has(&p, "incompatible CPU") &&
	    !proc_stderr_has(&p, "CPU vendor differs")) {
		print_message("    %s was saved on another CPU (%s); writing one with the same "
			      "release on this host\n", fixture + 5, p.err ? p.err : "");
		proc_free(&p);
		if (system("tests/fixtures/make-v1.sh " V1_HOST_SNAP) != 0)
			fail_msg("tests/fixtures/make-v1.sh could not write a v1 snapshot here");
		fixture = "file:" V1_HOST_SNAP;
		status = restore(&p, fixture);
	}
	if (status != 1)
		fail_msg("%s: status %d, expected 1 (guest verify passed); stderr: %s", fixture + 5,
			 status, p.err ? p.err : "");
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
	print_message("    v1 snapshot %s: restored at seq=%ld, ran to seq=%ld, verify passed\n",
		      fixture + 5, first, last);
	proc_free(&p);
}

static void test_other_vendor_refused(void **state)
{
	bool intel = host_is_intel();
	const char *argv[] = { NULL, "--incoming",
			       intel ? "file:" FIXTURE_V1_AMD : "file:" FIXTURE_V1_INTEL, NULL };
	const char *want = intel ? "CPU vendor differs: source AuthenticAMD, target GenuineIntel" :
				   "CPU vendor differs: source GenuineIntel, target AuthenticAMD";
	struct proc p;
	int status;

	(void)state;
	status = proc_run(&p, argv, 60000);
	if (status == 0 || status == 1 || !proc_stderr_has(&p, want))
		fail_msg("status %d, want a refusal saying '%s'; stderr: %s", status, want,
			 p.err ? p.err : "");
	assert_true(proc_stderr_has(&p, "incompatible CPU"));
	for (size_t i = 0; i < p.nlines; i++)
		if (strncmp(p.lines[i].text, "seq=", 4) == 0)
			fail_msg("the guest ran: %s", p.lines[i].text);
	proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_fixture_restores),
		cmocka_unit_test(test_other_vendor_refused),
	};
	return cmocka_run_group_tests_name("snapshot", tests, kvm_setup, NULL);
}
