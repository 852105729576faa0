// SPDX-License-Identifier: MIT
/* cmocka tests for migrate/cpucompat.c: description of this host and of a
 * VM's vCPU 0, wire round trip, and every reason to refuse a migration. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/state/cpucompat.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vm.h"

#define NX_BIT (1u << 20)
#define LM_BIT (1u << 29)
#define SSE2_BIT (1u << 26)

struct fx {
	struct cpucompat vm;   /* vCPU 0 of a real VM */
	struct cpucompat host; /* vCPU 0 of a second VM, as a target makes */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct vm *vm = calloc(1, sizeof(*vm));
	struct vm_config cfg = { .name = "cpucompat", .mem_size = 4 << 20, .ncpus = 1 };
	char err[256] = "";

	if (vm_create(vm, &cfg, err, sizeof(err)))
		fail_msg("vm_create: %s", err);
	if (cpucompat_get(vm, &f->vm, err, sizeof(err)))
		fail_msg("cpucompat_get: %s", err);
	vm_destroy(vm);
	cfg.ncpus = 2;
	if (vm_create(vm, &cfg, err, sizeof(err)))
		fail_msg("vm_create: %s", err);
	if (cpucompat_get(vm, &f->host, err, sizeof(err)))
		fail_msg("cpucompat_get: %s", err);
	vm_destroy(vm);
	free(vm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static void expect_refused(const struct cpucompat *s, const struct cpucompat *t,
			   const char *needle)
{
	char why[512] = "";

	assert_int_equal(cpucompat_check(s, t, why, sizeof(why)), -ENOTSUP);
	if (!strstr(why, needle))
		fail_msg("reason '%s' does not mention '%s'", why, needle);
}

static void expect_ok(const struct cpucompat *s, const struct cpucompat *t)
{
	char why[512] = "";

	if (cpucompat_check(s, t, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
}

static void test_this_host(void **state)
{
	struct fx *f = *state;

	print_message("    vendor %s, TSC %u kHz, flags 0x%x, %u phys bits, xsave %u bytes\n",
		      f->vm.vendor, f->vm.tsc_khz, f->vm.flags, f->vm.phys_bits,
		      f->vm.xsave_size);
	assert_int_equal(strlen(f->vm.vendor), 12);
	assert_true(f->vm.ext1_edx & LM_BIT);
	assert_true(f->vm.ext1_edx & NX_BIT);
	assert_true(f->vm.leaf1_edx & SSE2_BIT);
	assert_true(f->vm.flags & CPUCOMPAT_F_TSC_KHZ);
	assert_true(f->vm.tsc_khz > 0);
	/* Same machine: the guest's view and the host's agree both ways. */
	expect_ok(&f->vm, &f->host);
	expect_ok(&f->host, &f->vm);
	expect_ok(&f->vm, &f->vm);
}

static void test_round_trip(void **state)
{
	struct fx *f = *state;
	uint8_t buf[CPUCOMPAT_WIRE_SIZE + 8];
	struct cpucompat d;
	char err[256] = "";

	assert_int_equal(cpucompat_encode(&f->vm, buf, CPUCOMPAT_WIRE_SIZE - 1), -ENOSPC);
	assert_int_equal(cpucompat_encode(&f->vm, buf, sizeof(buf)), CPUCOMPAT_WIRE_SIZE);
	assert_int_equal(cpucompat_decode(&d, buf, CPUCOMPAT_WIRE_SIZE, err, sizeof(err)), 0);
	assert_memory_equal(&d, &f->vm, sizeof(d));
	/* Fixed little-endian layout: the version is the first byte. */
	assert_int_equal(buf[0], CPUCOMPAT_VERSION);
	assert_int_equal(buf[4], CPUCOMPAT_WIRE_SIZE);
	assert_memory_equal(buf + 8, f->vm.vendor, 12);
}

static void test_truncated_and_bad_input(void **state)
{
	struct fx *f = *state;
	uint8_t buf[CPUCOMPAT_WIRE_SIZE + 1], *b;
	struct cpucompat d;
	char err[256];

	cpucompat_encode(&f->vm, buf, sizeof(buf));
	for (size_t l = 0; l <= sizeof(buf); l++) {
		if (l == CPUCOMPAT_WIRE_SIZE)
			continue;
		b = malloc(l ? l : 1); /* exact size: ASan catches overreads */
		memcpy(b, buf, l);
		err[0] = 0;
		assert_true(cpucompat_decode(&d, b, l, err, sizeof(err)) < 0);
		assert_true(err[0] != 0);
		free(b);
	}
	assert_true(cpucompat_decode(&d, NULL, 0, err, sizeof(err)) < 0);
	buf[0] = 2; /* version */
	assert_int_equal(cpucompat_decode(&d, buf, CPUCOMPAT_WIRE_SIZE, err, sizeof(err)), -EPROTO);
	buf[0] = 1;
	buf[4] = CPUCOMPAT_WIRE_SIZE + 4; /* size field */
	assert_true(cpucompat_decode(&d, buf, CPUCOMPAT_WIRE_SIZE, err, sizeof(err)) < 0);
	buf[4] = CPUCOMPAT_WIRE_SIZE;
	buf[10] = 0x07; /* vendor byte */
	assert_true(cpucompat_decode(&d, buf, CPUCOMPAT_WIRE_SIZE, err, sizeof(err)) < 0);
	cpucompat_encode(&f->vm, buf, sizeof(buf));
	buf[CPUCOMPAT_WIRE_SIZE - 1] = 0x80; /* flags: unknown bit */
	assert_true(cpucompat_decode(&d, buf, CPUCOMPAT_WIRE_SIZE, err, sizeof(err)) < 0);
}

static void test_vendor_mismatch(void **state)
{
	struct fx *f = *state;
	struct cpucompat t = f->host;
	char err[256] = "";

	assert_int_equal(cpucompat_override(&t, strcmp(f->vm.vendor, "GenuineIntel") ?
					    "vendor=GenuineIntel" : "vendor=AuthenticAMD",
					    err, sizeof(err)), 0);
	expect_refused(&f->vm, &t, "vendor");
}

static void test_missing_features(void **state)
{
	struct fx *f = *state;
	struct cpucompat t;
	char err[256] = "";

	t = f->host;
	assert_int_equal(cpucompat_override(&t, "-nx", err, sizeof(err)), 0);
	assert_false(t.ext1_edx & NX_BIT);
	expect_refused(&f->vm, &t, "NX");

	t = f->host;
	assert_int_equal(cpucompat_override(&t, "-LM,-sse2", err, sizeof(err)), 0);
	expect_refused(&f->vm, &t, "LM");
	expect_refused(&f->vm, &t, "SSE2");

	/* A bit without a name is still refused, and named by position. */
	t = f->host;
	struct cpucompat s = f->vm;
	s.leaf7_ebx |= 1u << 13;
	t.leaf7_ebx &= ~(1u << 13);
	expect_refused(&s, &t, "leaf7_ebx bit 13");

	/* More on the target is fine: the guest never saw it. */
	t = f->host;
	s = f->vm;
	assert_int_equal(cpucompat_override(&s, "-avx,-nx", err, sizeof(err)), 0);
	expect_ok(&s, &t);

	/* Bits KVM flips at run time (OSXSAVE, OSPKE, APIC) do not count. */
	s = f->vm;
	t = f->host;
	s.leaf1_ecx |= 1u << 27;
	t.leaf1_ecx &= ~(1u << 27);
	s.leaf7_ecx |= 1u << 4;
	t.leaf7_ecx &= ~(1u << 4);
	expect_ok(&s, &t);

	/* XSAVE components and address width. */
	t = f->host;
	t.xcr0_lo = 0x3;
	if (f->vm.xcr0_lo & ~3u)
		expect_refused(&f->vm, &t, "XSAVE components");
	t = f->host;
	t.phys_bits = f->vm.phys_bits - 1;
	expect_refused(&f->vm, &t, "physical address bits");
}

static void test_tsc(void **state)
{
	struct fx *f = *state;
	struct cpucompat s = f->vm, t = f->host;
	char err[256] = "";
	uint32_t khz = 2000000;

	s.tsc_khz = khz;
	t.tsc_khz = khz + khz / 1000000 * 200; /* 200 ppm: tolerated */
	t.flags &= ~CPUCOMPAT_F_TSC_SCALING;
	expect_ok(&s, &t);
	t.tsc_khz = khz + khz / 1000000 * 300; /* 300 ppm */
	expect_refused(&s, &t, "TSC frequency");
	t.tsc_khz = khz - khz / 1000000 * 300;
	expect_refused(&s, &t, "KVM_CAP_TSC_CONTROL");
	/* A target that can scale takes any frequency. */
	assert_int_equal(cpucompat_override(&t, "flags+=2,tsc_khz=1000000", err, sizeof(err)), 0);
	expect_ok(&s, &t);
	/* Unknown frequency on either side: nothing to compare. */
	t = f->host;
	t.tsc_khz = 1;
	t.flags &= ~CPUCOMPAT_F_TSC_KHZ;
	expect_ok(&s, &t);
}

static void test_override_syntax(void **state)
{
	struct fx *f = *state;
	struct cpucompat c = f->vm;
	char err[256];
	static const char *const bad[] = {
		"bogus", "-nosuchfeature", "tsc_khz=abc", "tsc_khz=", "vendor=short",
		"nofield=1", "=5", "tsc_khz=0x1ffffffff", "vendor+=GenuineIntelX",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (cpucompat_override(&c, bad[i], err, sizeof(err)) == 0)
			fail_msg("override '%s' accepted", bad[i]);
		assert_true(err[0] != 0);
	}
	c = f->vm;
	assert_int_equal(cpucompat_override(&c, "ext1_edx-=0x20000000,phys_bits=36,+nx", err, sizeof(err)), 0);
	assert_false(c.ext1_edx & LM_BIT);
	assert_true(c.ext1_edx & NX_BIT);
	assert_int_equal(c.phys_bits, 36);
}

/* The handshake pair, with the environment posing as another CPU. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_this_host),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_bad_input),
		cmocka_unit_test(test_vendor_mismatch),
		cmocka_unit_test(test_missing_features),
		cmocka_unit_test(test_tsc),
		cmocka_unit_test(test_override_syntax),
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "test_cpucompat: /dev/kvm: %s (these tests need KVM)\n",
			strerror(errno));
		return 1;
	}
	close(fd);
	return cmocka_run_group_tests_name("cpucompat", tests, setup, teardown);
}
