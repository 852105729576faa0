// SPDX-License-Identifier: MIT
/* cmocka tests for migrate/vmstate.c on the real /dev/kvm: a counter guest
 * saved on one VM continues its heartbeat on another, and hostile blobs
 * (truncated, wrong header, wrong sizes, wrong sections) are refused. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/conline.h"
#include "devices/uart.h"
#include "migrate/state/vmstate.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

#define GUEST "build/guests/counter.elf"
#define MEM (16ULL << 20)

/* ---- helpers -------------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void wle32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void make_vm(struct vm *vm, int ncpus, uint64_t mem, int console_fd)
{
	struct vm_config cfg = { .mem_size = mem, .ncpus = ncpus };
	char err[256] = "";

	snprintf(cfg.name, sizeof(cfg.name), "vmstate-test");
	if (vm_create(vm, &cfg, err, sizeof(err)) != 0)
		fail_msg("vm_create: %s", err);
	if (console_fd >= 0)
		vm->console->fd = console_fd;
}

static void boot_counter(struct vm *vm)
{
	char err[256] = "";

	if (vm_load_kernel(vm, GUEST, "period_ms=50", err, sizeof(err)) != 0)
		fail_msg("vm_load_kernel(%s): %s", GUEST, err);
}

/* Parses every complete "seq=N t_ms=T" line of the console file. */
struct beats {
	uint64_t seq[4096], t_ms[4096];
	int n;
};

static void read_beats(int fd, struct beats *b, off_t *size)
{
	static char buf[1 << 20];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	char *line, *save = NULL;

	assert_true(n >= 0);
	buf[n] = 0;
	if (size)
		*size = n;
	b->n = 0;
	/* Only complete lines: a heartbeat may be half-written at a pause. */
	char *end = strrchr(buf, '\n');
	if (!end)
		return;
	end[1] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long s, t;

		if (sscanf(line, "seq=%llu t_ms=%llu", &s, &t) == 2 && b->n < 4096) {
			b->seq[b->n] = s;
			b->t_ms[b->n++] = t;
		}
	}
}

static uint64_t wait_seq(int fd, uint64_t want, double timeout)
{
	static struct beats b;
	double t0 = now_s();

	for (;;) {
		read_beats(fd, &b, NULL);
		if (b.n && b.seq[b.n - 1] >= want)
			return b.seq[b.n - 1];
		if (now_s() - t0 > timeout)
			fail_msg("guest reached seq %llu, wanted %llu within %.0f s",
				 b.n ? (unsigned long long)b.seq[b.n - 1] : 0ULL,
				 (unsigned long long)want, timeout);
		usleep(10000);
	}
}

/* The blob's sections, for tests that edit it. */
struct tsec {
	uint32_t type, vcpu, len;
	uint8_t *p;
};

static int walk(const uint8_t *blob, size_t len, struct tsec *s, int max)
{
	size_t off = VMSTATE_HDR_SIZE;
	int n = 0;

	while (off < len && n < max) {
		s[n].type = le32(blob + off);
		s[n].vcpu = le32(blob + off + 4);
		s[n].len = le32(blob + off + 8);
		s[n].p = (uint8_t *)blob + off + VMSTATE_SEC_HDR_SIZE;
		off += VMSTATE_SEC_HDR_SIZE + s[n].len;
		n++;
	}
	assert_int_equal(off, len);
	assert_int_equal(le32(blob + 20), n);
	return n;
}

static const struct tsec *find(const struct tsec *s, int n, uint32_t type, uint32_t vcpu)
{
	for (int i = 0; i < n; i++)
		if (s[i].type == type && s[i].vcpu == vcpu)
			return &s[i];
	return NULL;
}

/* Writes header + sections; the count in the header follows n. */
static uint8_t *rebuild(const uint8_t *hdr, const struct tsec *s, int n, size_t *len)
{
	size_t total = VMSTATE_HDR_SIZE, off;
	uint8_t *b;

	for (int i = 0; i < n; i++)
		total += VMSTATE_SEC_HDR_SIZE + s[i].len;
	b = calloc(1, total);
	assert_non_null(b);
	memcpy(b, hdr, VMSTATE_HDR_SIZE);
	wle32(b + 20, (uint32_t)n);
	off = VMSTATE_HDR_SIZE;
	for (int i = 0; i < n; i++) {
		wle32(b + off, s[i].type);
		wle32(b + off + 4, s[i].vcpu);
		wle32(b + off + 8, s[i].len);
		memcpy(b + off + VMSTATE_SEC_HDR_SIZE, s[i].p, s[i].len);
		off += VMSTATE_SEC_HDR_SIZE + s[i].len;
	}
	*len = total;
	return b;
}

/* ---- (a) round trip with a running guest ------------------------------ */

static void compare_section(const struct tsec *a, int na, const struct tsec *b, int nb,
			    uint32_t type, uint32_t vcpu)
{
	const struct tsec *x = find(a, na, type, vcpu), *y = find(b, nb, type, vcpu);

	if (!x && !y)
		return;
	assert_non_null(x);
	assert_non_null(y);
	assert_int_equal(x->len, y->len);
	if (memcmp(x->p, y->p, x->len) != 0)
		fail_msg("%s (vcpu %u) differs after load", vmstate_sec_name(type), vcpu);
}

static void compare_msrs(const struct tsec *a, const struct tsec *b)
{
	uint32_t n = le32(a->p);

	assert_int_equal(n, le32(b->p));
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *x = a->p + 8 + 16 * i, *y = b->p + 8 + 16 * i;

		assert_int_equal(le32(x), le32(y));
		/* The TSC has moved on since the save. */
		if (le32(x) == 0x10)
			continue;
		if (memcmp(x + 8, y + 8, 8) != 0)
			fail_msg("MSR 0x%x differs after load", le32(x));
	}
}

static void migrate_counter(int ncpus)
{
	struct vm *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	char path[] = "/tmp/test_vmstate_XXXXXX";
	int fd = mkstemp(path);
	uint8_t *blob = NULL, *blob2 = NULL;
	size_t len = 0, len2 = 0;
	char err[256] = "";
	static struct beats beats;
	uint64_t last_before;
	struct tsec s1[256], s2[256];
	int n1, n2;

	assert_true(fd >= 0);
	unlink(path);
	/* Both VMs write the same console file, as one guest would. */
	assert_int_equal(fcntl(fd, F_SETFL, O_APPEND), 0);
	make_vm(a, ncpus, MEM, fd);
	boot_counter(a);
	if (vm_start(a, err, sizeof(err)))
		fail_msg("vm_start: %s", err);
	wait_seq(fd, 3, 30);

	assert_int_equal(vm_pause(a), 0);
	/* Saving a running VM must be refused; a paused one succeeds. */
	if (vmstate_save(a, &blob, &len, err, sizeof(err)) != 0)
		fail_msg("vmstate_save: %s", err);
	assert_true(len > VMSTATE_HDR_SIZE);
	read_beats(fd, &beats, NULL);
	assert_true(beats.n >= 3);
	last_before = beats.seq[beats.n - 1];

	make_vm(b, ncpus, MEM, fd);
	memcpy(b->ram, a->ram, a->ram_size);
	if (vmstate_load(b, blob, len, err, sizeof(err)) != 0)
		fail_msg("vmstate_load: %s", err);

	/* Before anything runs, the target must hold what the source had:
	 * save it again and compare the sections time does not change. */
	if (vmstate_save(b, &blob2, &len2, err, sizeof(err)) != 0)
		fail_msg("vmstate_save (target): %s", err);
	n1 = walk(blob, len, s1, 256);
	n2 = walk(blob2, len2, s2, 256);
	assert_int_equal(n1, n2);
	compare_section(s1, n1, s2, n2, UART_STATE_TYPE, VMSTATE_VM_SCOPE);
	compare_section(s1, n1, s2, n2, VMSTATE_SEC_PIC_MASTER, VMSTATE_VM_SCOPE);
	compare_section(s1, n1, s2, n2, VMSTATE_SEC_PIC_SLAVE, VMSTATE_VM_SCOPE);
	compare_section(s1, n1, s2, n2, VMSTATE_SEC_IOAPIC, VMSTATE_VM_SCOPE);
	for (uint32_t c = 0; c < (uint32_t)ncpus; c++) {
		static const uint32_t same[] = {
			VMSTATE_SEC_MP_STATE, VMSTATE_SEC_REGS, VMSTATE_SEC_SREGS,
			VMSTATE_SEC_XSAVE, VMSTATE_SEC_FPU, VMSTATE_SEC_XCRS,
			VMSTATE_SEC_DEBUGREGS, VMSTATE_SEC_LAPIC, VMSTATE_SEC_VCPU_EVENTS,
		};
		for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++)
			compare_section(s1, n1, s2, n2, same[k], c);
		compare_msrs(find(s1, n1, VMSTATE_SEC_MSRS, c), find(s2, n2, VMSTATE_SEC_MSRS, c));
	}
	if (ncpus > 1) {
		/* The AP never got INIT/SIPI: it must still be waiting. */
		struct kvm_mp_state mp;

		assert_int_equal(ioctl(b->vcpus[1].fd, KVM_GET_MP_STATE, &mp), 0);
		assert_int_equal(mp.mp_state, KVM_MP_STATE_UNINITIALIZED);
	}

	if (vm_start(b, err, sizeof(err)))
		fail_msg("vm_start (target): %s", err);
	vm_stop_vcpus(a);
	vm_destroy(a);

	wait_seq(fd, last_before + 3, 30);
	vm_stop_vcpus(b);
	read_beats(fd, &beats, NULL);
	/* One guest's heartbeat: no gap, no repeat, no clock going back. */
	for (int i = 1; i < beats.n; i++) {
		if (beats.seq[i] != beats.seq[i - 1] + 1)
			fail_msg("heartbeat seq %llu followed by %llu",
				 (unsigned long long)beats.seq[i - 1],
				 (unsigned long long)beats.seq[i]);
		assert_true(beats.t_ms[i] >= beats.t_ms[i - 1]);
	}
	assert_true(beats.seq[beats.n - 1] >= last_before + 3);
	print_message("    %d vCPU(s): source stopped after seq=%llu, target continued to seq=%llu (blob %zu bytes)\n",
		      ncpus, (unsigned long long)last_before,
		      (unsigned long long)beats.seq[beats.n - 1], len);
	vm_destroy(b);
	free(blob);
	free(blob2);
	free(a);
	free(b);
	close(fd);
}

static void test_migrate_1cpu(void **state)
{
	(void)state;
	migrate_counter(1);
}

static void test_migrate_2cpu(void **state)
{
	(void)state;
	migrate_counter(2);
}

static void test_save_running_refused(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	int fd = open("/dev/null", O_WRONLY);
	uint8_t *blob = NULL;
	size_t len = 0;
	char err[256] = "";

	(void)state;
	make_vm(vm, 1, MEM, fd);
	boot_counter(vm);
	assert_int_equal(vm_start(vm, err, sizeof(err)), 0);
	assert_int_equal(vmstate_save(vm, &blob, &len, err, sizeof(err)), -EBUSY);
	assert_null(blob);
	assert_non_null(strstr(err, "running"));
	/* And loading into a VM whose threads run is refused too. */
	assert_int_equal(vm_pause(vm), 0);
	assert_int_equal(vmstate_save(vm, &blob, &len, err, sizeof(err)), 0);
	assert_int_equal(vmstate_load(vm, blob, len, err, sizeof(err)), -EBUSY);
	vm_resume(vm);
	vm_stop_vcpus(vm);
	vm_destroy(vm);
	free(blob);
	free(vm);
	close(fd);
}

/* ---- (b) hostile blobs ------------------------------------------------ */

struct fixture {
	struct vm vm;	/* fresh target, never started */
	uint8_t *blob;	/* valid blob from a 1-vCPU VM */
	size_t len;
	uint8_t *blob2; /* valid blob from a 2-vCPU VM */
	size_t len2;
};

static void saved_blob(int ncpus, uint8_t **blob, size_t *len)
{
	struct vm *src = calloc(1, sizeof(*src));
	char err[256] = "";

	make_vm(src, ncpus, MEM, -1);
	boot_counter(src);
	if (vmstate_save(src, blob, len, err, sizeof(err)) != 0)
		fail_msg("vmstate_save: %s", err);
	vm_destroy(src);
	free(src);
}

static int setup_fixture(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	saved_blob(1, &f->blob, &f->len);
	saved_blob(2, &f->blob2, &f->len2);
	make_vm(&f->vm, 1, MEM, -1);
	*state = f;
	return 0;
}

static int teardown_fixture(void **state)
{
	struct fixture *f = *state;

	vm_destroy(&f->vm);
	free(f->blob);
	free(f->blob2);
	free(f);
	return 0;
}

/* Must fail with a message; validation comes first, so the target VM is
 * untouched and can serve the next case. */
/* What each case's refusal must say: the reason, not just any failure.
 * A case not listed is a section-size case named after its section,
 * whose message names that section. */
static const struct {
	const char *what;
	const char *says[3]; /* any of these */
} reasons[] = {
	{ "truncated", { "shorter than its header", " claims ", "truncated at section" } },
	{ "NULL blob", { "shorter than its header" } },
	{ "0 vCPUs", { "vCPU count" } },
	{ "huge vCPU count", { "vCPU count" } },
	{ "2 vCPUs for 1", { "no MP_STATE" } },
	{ "MSR count", { "does not match" } },
	{ "MSR count huge", { "does not match" } },
	{ "MSR outside the allow-list", { "allow-list" } },
	{ "duplicate MSR", { "appears twice" } },
	{ "TSC 0 kHz", { "0 kHz" } },
	{ "TSC half the frequency", { "cannot scale" } },
	{ "UART version", { "version 99" } },
	{ "device", { "UART state is" } },
	{ "VM scope on a vCPU section", { "bad vcpu index" } },
	{ "bad vcpu index", { "bad vcpu index" } },
	{ "XCRS count", { "XCRS count" } },
	{ "XSAVE and FPU", { "header flags" } },
	{ "unknown flags", { "header flags" } },
	{ "reserved field", { "header flags" } },
	{ "bad magic", { "bad magic" } },
	{ "header size", { "header 48" } },
	{ "version + 1", { "version 2" } },
	{ "version 0", { "version 0" } },
	{ "huge section count", { "truncated at section" } },
	{ "too few sections", { "trailing bytes" } },
	{ "irqchip id", { "names chip" } },
	{ "missing section", { ": no ", "has no " } },
	{ "duplicate section", { "duplicate" } },
	{ "other memory size", { "bytes of RAM" } },
	{ "oversized section length", { " claims " } },
	{ "unknown mandatory section", { "unknown mandatory section" } },
};

static void expect_reject(struct fixture *f, const uint8_t *b, size_t len, const char *what)
{
	char err[256] = "";
	int r = vmstate_load(&f->vm, b, len, err, sizeof(err));
	const char *const *says = NULL;
	const char *name[3] = { what };

	if (r >= 0)
		fail_msg("%s: load accepted a bad blob", what);
	if (!err[0])
		fail_msg("%s: failed (%d) without a message", what, r);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (!strcmp(reasons[i].what, what))
			says = reasons[i].says;
	if (!says)
		says = name;
	for (int i = 0; i < 3 && says[i]; i++)
		if (strstr(err, says[i]))
			return;
	fail_msg("%s: refused for another reason: %s", what, err);
}

static void test_valid_blob_loads(void **state)
{
	struct fixture *f = *state;
	struct vm *vm = calloc(1, sizeof(*vm));
	char err[256] = "";
	uint32_t ncpus = 0;
	uint64_t mem = 0;

	assert_int_equal(vmstate_check(f->blob, f->len, &ncpus, &mem, err, sizeof(err)), 0);
	assert_int_equal(ncpus, 1);
	assert_int_equal(mem, MEM);
	make_vm(vm, 1, MEM, -1);
	if (vmstate_load(vm, f->blob, f->len, err, sizeof(err)) != 0)
		fail_msg("vmstate_load: %s", err);
	vm_destroy(vm);
	free(vm);
}

static void test_truncated_every_length(void **state)
{
	struct fixture *f = *state;
	char err[256];

	for (size_t l = 0; l < f->len; l++) {
		/* A fresh copy of exactly l bytes, so ASan sees any overread. */
		uint8_t *b = malloc(l ? l : 1);

		memcpy(b, f->blob, l);
		err[0] = 0;
		if (vmstate_check(b, l, NULL, NULL, err, sizeof(err)) >= 0)
			fail_msg("truncated at %zu of %zu: accepted", l, f->len);
		assert_true(err[0] != 0);
		if (l % 97 == 0 || l < VMSTATE_HDR_SIZE + 16)
			expect_reject(f, b, l, "truncated");
		free(b);
	}
	expect_reject(f, NULL, 0, "NULL blob");
}

static void test_bad_header(void **state)
{
	struct fixture *f = *state;
	uint8_t *b = malloc(f->len);
	static const struct {
		size_t off;
		uint32_t val;
		const char *what;
	} cases[] = {
		{ 0, 0x4d564d4e, "bad magic" },
		{ 8, VMSTATE_VERSION + 1, "version + 1" },
		{ 8, 0, "version 0" },
		{ 12, VMSTATE_HDR_SIZE + 8, "header size" },
		{ 16, 0, "0 vCPUs" },
		{ 16, 2, "2 vCPUs for 1" },
		{ 16, 100000, "huge vCPU count" },
		{ 20, 0xffffffff, "huge section count" },
		{ 20, 3, "too few sections" },
		{ 24, (uint32_t)(MEM * 2), "other memory size" },
		{ 32, 0xffffffff, "unknown flags" },
		{ 32, VMSTATE_F_XSAVE | VMSTATE_F_FPU, "XSAVE and FPU" },
		{ 36, 1, "reserved field" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(b, f->blob, f->len);
		wle32(b + cases[i].off, cases[i].val);
		expect_reject(f, b, f->len, cases[i].what);
	}
	free(b);
}

static void test_wrong_vcpu_count(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";

	/* A valid 2-vCPU blob into a 1-vCPU VM. */
	assert_int_equal(vmstate_check(f->blob2, f->len2, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(vmstate_load(&f->vm, f->blob2, f->len2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vCPUs"));
}

static void test_section_lengths(void **state)
{
	struct fixture *f = *state;
	static struct tsec s[256], t[256];
	uint8_t *b = malloc(f->len);
	int n = walk(f->blob, f->len, s, 256);
	size_t off = VMSTATE_HDR_SIZE;

	for (int i = 0; i < n; i++) {
		static const uint32_t bad[] = { 0xffffffff, 0x7fffffff, 1u << 20 };

		/* Lengths past the end, in place. */
		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			memcpy(b, f->blob, f->len);
			wle32(b + off + 8, bad[k]);
			expect_reject(f, b, f->len, "oversized section length");
		}
		/* One byte more and one byte less, blob rebuilt around it. */
		for (int delta = -1; delta <= 1; delta += 2) {
			uint8_t *p = calloc(1, s[i].len + 1);
			size_t l;
			uint8_t *r;

			memcpy(t, s, sizeof(s[0]) * n);
			memcpy(p, s[i].p, s[i].len);
			t[i].p = p;
			t[i].len = s[i].len + delta;
			r = rebuild(f->blob, t, n, &l);
			expect_reject(f, r, l, vmstate_sec_name(s[i].type));
			free(r);
			free(p);
		}
		off += VMSTATE_SEC_HDR_SIZE + s[i].len;
	}
	free(b);
}

static void test_bad_sections(void **state)
{
	struct fixture *f = *state;
	static struct tsec s[256], t[257];
	int n = walk(f->blob, f->len, s, 256);
	uint8_t *r;
	size_t l;
	char err[256];

	for (int i = 0; i < n; i++) {
		/* Dropped: every section this blob has is mandatory for it,
		 * except the optional TSC_KHZ. */
		memcpy(t, s, sizeof(s[0]) * i);
		memcpy(t + i, s + i + 1, sizeof(s[0]) * (n - i - 1));
		r = rebuild(f->blob, t, n - 1, &l);
		if (s[i].type & VMSTATE_SEC_OPTIONAL)
			assert_int_equal(vmstate_check(r, l, NULL, NULL, err, sizeof(err)), 0);
		else
			expect_reject(f, r, l, "missing section");
		free(r);
		/* Duplicated. */
		memcpy(t, s, sizeof(s[0]) * n);
		t[n] = s[i];
		r = rebuild(f->blob, t, n + 1, &l);
		expect_reject(f, r, l, "duplicate section");
		free(r);
		/* Wrong scope: VM sections with a vCPU index, vCPU sections
		 * with an index past the count or the VM marker. */
		memcpy(t, s, sizeof(s[0]) * n);
		t[i].vcpu = s[i].vcpu == VMSTATE_VM_SCOPE ? 0 : 1;
		r = rebuild(f->blob, t, n, &l);
		expect_reject(f, r, l, "bad vcpu index");
		free(r);
		if (s[i].vcpu != VMSTATE_VM_SCOPE) {
			t[i].vcpu = VMSTATE_VM_SCOPE;
			r = rebuild(f->blob, t, n, &l);
			expect_reject(f, r, l, "VM scope on a vCPU section");
			free(r);
		}
	}

	/* Unknown mandatory type: refused. Unknown optional type: skipped. */
	{
		uint8_t junk[7] = { 1, 2, 3, 4, 5, 6, 7 };

		memcpy(t, s, sizeof(s[0]) * n);
		t[n] = (struct tsec){ .type = 0x7777, .vcpu = VMSTATE_VM_SCOPE, .len = 7, .p = junk };
		r = rebuild(f->blob, t, n + 1, &l);
		expect_reject(f, r, l, "unknown mandatory section");
		free(r);
		t[n].type = VMSTATE_SEC_OPTIONAL | 0x7777;
		r = rebuild(f->blob, t, n + 1, &l);
		err[0] = 0;
		if (vmstate_check(r, l, NULL, NULL, err, sizeof(err)) != 0)
			fail_msg("unknown optional section refused: %s", err);
		free(r);
	}
}

static void test_bad_payloads(void **state)
{
	struct fixture *f = *state;
	static struct tsec s[256];
	uint8_t *b = malloc(f->len);
	int n;

	memcpy(b, f->blob, f->len);
	n = walk(b, f->len, s, 256);
	for (int i = 0; i < n; i++) {
		uint8_t save[16];

		memcpy(save, s[i].p, sizeof(save) < s[i].len ? sizeof(save) : s[i].len);
		switch (s[i].type) {
		case VMSTATE_SEC_MSRS:
			wle32(s[i].p, le32(s[i].p) + 1); /* count vs length */
			expect_reject(f, b, f->len, "MSR count");
			memcpy(s[i].p, save, 16);
			wle32(s[i].p, 0xffffffff);
			expect_reject(f, b, f->len, "MSR count huge");
			memcpy(s[i].p, save, 16);
			wle32(s[i].p + 8, 0x10a); /* ARCH_CAPABILITIES: not allowed */
			expect_reject(f, b, f->len, "MSR outside the allow-list");
			memcpy(s[i].p, save, 16);
			if (le32(s[i].p) >= 2) {
				wle32(s[i].p + 8 + 16, le32(s[i].p + 8));
				expect_reject(f, b, f->len, "duplicate MSR");
				memcpy(s[i].p, save, 16);
				memcpy(s[i].p + 16, f->blob + (s[i].p + 16 - b), 16);
			}
			break;
		case VMSTATE_SEC_XCRS:
			wle32(s[i].p, 17);
			expect_reject(f, b, f->len, "XCRS count");
			break;
		case VMSTATE_SEC_PIC_MASTER:
		case VMSTATE_SEC_PIC_SLAVE:
		case VMSTATE_SEC_IOAPIC:
			wle32(s[i].p, le32(s[i].p) == 0 ? 2 : 0);
			expect_reject(f, b, f->len, "irqchip id");
			break;
		case UART_STATE_TYPE:
			s[i].p[0] = 99; /* UART state version */
			expect_reject(f, b, f->len, "UART version");
			break;
		case VMSTATE_SEC_TSC_KHZ:
			wle32(s[i].p, 0);
			expect_reject(f, b, f->len, "TSC 0 kHz");
			wle32(s[i].p, le32(save) / 2);
			expect_reject(f, b, f->len, "TSC half the frequency");
			break;
		default:
			break;
		}
		memcpy(s[i].p, save, sizeof(save) < s[i].len ? sizeof(save) : s[i].len);
		assert_memory_equal(b, f->blob, f->len);
	}
	free(b);
}

/* Device sections are the device list's: the parser checks their shape,
 * the VM's devices claim them at load. */
static void test_device_sections(void **state)
{
	struct fixture *f = *state;
	static struct tsec s[256], t[258];
	int n = walk(f->blob, f->len, s, 256);
	uint8_t junk[5] = { 1, 2, 3, 4, 5 };
	uint8_t *r;
	size_t l;
	char err[256] = "";

	/* The UART's section leads the blob, as before the device list. */
	assert_int_equal(s[0].type, UART_STATE_TYPE);
	assert_int_equal(s[0].len, UART_STATE_SIZE);
	/* A mandatory device section no device here owns: the format is
	 * fine, this VM cannot take it. */
	memcpy(t, s, sizeof(s[0]) * n);
	t[n] = (struct tsec){ .type = 0x0042, .vcpu = VMSTATE_VM_SCOPE, .len = 5, .p = junk };
	r = rebuild(f->blob, t, n + 1, &l);
	assert_int_equal(vmstate_check(r, l, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(vmstate_load(&f->vm, r, l, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "0x42"));
	free(r);
	/* ... with a vCPU index it is malformed. */
	t[n].vcpu = 0;
	r = rebuild(f->blob, t, n + 1, &l);
	assert_int_not_equal(vmstate_check(r, l, NULL, NULL, err, sizeof(err)), 0);
	free(r);
	/* An optional one is skipped; the console's, duplicated, is not. */
	t[n] = (struct tsec){ .type = 0x80000042u, .vcpu = VMSTATE_VM_SCOPE, .len = 5, .p = junk };
	r = rebuild(f->blob, t, n + 1, &l);
	if (vmstate_load(&f->vm, r, l, err, sizeof(err)) != 0)
		fail_msg("optional device section refused: %s", err);
	free(r);
	t[n] = (struct tsec){ .type = CONLINE_STATE_TYPE, .vcpu = VMSTATE_VM_SCOPE, .len = 5, .p = junk };
	t[n + 1] = t[n];
	r = rebuild(f->blob, t, n + 2, &l);
	assert_int_not_equal(vmstate_check(r, l, NULL, NULL, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "duplicate"));
	free(r);
	/* An oversized console line: the device refuses it at load. A full
	 * buffer (exactly CONLINE_MAX) too: the guest's next byte would be
	 * stored past it (a live buffer is flushed when it fills, so a
	 * source never saves one that full). */
	for (size_t len = CONLINE_MAX; len <= CONLINE_MAX + 1; len++) {
		uint8_t big[CONLINE_MAX + 1];

		memset(big, 'x', sizeof(big));
		t[n] = (struct tsec){ .type = CONLINE_STATE_TYPE, .vcpu = VMSTATE_VM_SCOPE,
				      .len = (uint32_t)len, .p = big };
		r = rebuild(f->blob, t, n + 1, &l);
		if (vmstate_load(&f->vm, r, l, err, sizeof(err)) != -EINVAL)
			fail_msg("a console line of %zu bytes was accepted", len);
		assert_non_null(strstr(err, "console"));
		free(r);
	}
	/* Too many device sections. */
	{
		static struct tsec many[256 + VMSTATE_MAX_DEVSECS + 1];

		memcpy(many, s, sizeof(s[0]) * n);
		for (int k = 0; k <= VMSTATE_MAX_DEVSECS; k++)
			many[n + k] = (struct tsec){ .type = 0x80001000u + (uint32_t)k,
						     .vcpu = VMSTATE_VM_SCOPE, .len = 1, .p = junk };
		r = rebuild(f->blob, many, n + VMSTATE_MAX_DEVSECS + 1, &l);
		assert_int_not_equal(vmstate_check(r, l, NULL, NULL, err, sizeof(err)), 0);
		free(r);
	}
}

/* Random byte flips: the validator must never crash or overread. */
/* A line the guest was printing at the pause is not written by the source:
 * it travels in the blob and the target prints it whole. */
static void test_partial_console_line_moves(void **state)
{
	struct vm a, b;
	uint8_t *blob;
	size_t len;
	char err[256];
	int fds[2];
	char out[64] = "";

	(void)state;
	assert_int_equal(pipe(fds), 0);
	make_vm(&a, 1, 16 << 20, fds[1]);
	make_vm(&b, 1, 16 << 20, fds[1]);
	memcpy(a.console->line, "seq=7 t_m", 9);
	a.console->len = 9;
	assert_int_equal(vmstate_save(&a, &blob, &len, err, sizeof(err)), 0);
	/* UART, then the console's line, then the KVM state: as before. */
	assert_int_equal(le32(blob + 40), UART_STATE_TYPE);
	assert_int_equal(le32(blob + 40 + 12 + UART_STATE_SIZE), CONLINE_STATE_TYPE);
	assert_int_equal(le32(blob + 40 + 12 + UART_STATE_SIZE + 8), 9);
	assert_int_equal(vmstate_load(&b, blob, len, err, sizeof(err)), 0);
	assert_int_equal(b.console->len, 9);
	assert_memory_equal(b.console->line, "seq=7 t_m", 9);
	/* A paused VM's partial line may yet migrate: never flushed by age. */
	assert_int_equal(vm_pause(&b), 0);
	b.console->first_ns = 0; /* as old as it gets */
	vm_console_flush(&b, false);
	assert_int_equal(b.console->len, 9);
	vm_resume(&b);
	vm_console_flush(&b, true);
	assert_int_equal(read(fds[0], out, sizeof(out) - 1), 9);
	assert_string_equal(out, "seq=7 t_m");
	/* An oversized CONSOLE section is refused before anything loads. */
	a.console->len = CONLINE_MAX;
	free(blob);
	assert_int_equal(vmstate_save(&a, &blob, &len, err, sizeof(err)), 0);
	for (size_t off = 40; off + 12 <= len;) {
		uint32_t type = le32(blob + off), slen = le32(blob + off + 8);

		if (type == CONLINE_STATE_TYPE) {
			wle32(blob + off + 8, slen + 1);
			break;
		}
		off += 12 + slen;
	}
	{
		uint8_t *big = calloc(1, len + 1);

		assert_non_null(big);
		memcpy(big, blob, len);
		assert_int_not_equal(vmstate_load(&b, big, len + 1, err, sizeof(err)), 0);
		free(big);
	}
	free(blob);
	a.console->len = 0; /* nothing to print at teardown */
	vm_destroy(&a);
	vm_destroy(&b);
	close(fds[0]);
	close(fds[1]);
}

static void test_fuzz(void **state)
{
	struct fixture *f = *state;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	uint8_t *b = malloc(f->len);
	char err[256];

	for (int round = 0; round < 20000; round++) {
		int flips = 1 + round % 4;

		memcpy(b, f->blob, f->len);
		for (int k = 0; k < flips; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* Bias towards headers, where lengths and counts live. */
			size_t pos = (round & 1) ? x % f->len : x % (VMSTATE_HDR_SIZE + 64);
			b[pos] = (uint8_t)(x >> 32);
		}
		(void)vmstate_check(b, f->len, NULL, NULL, err, sizeof(err));
	}
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate_1cpu),
		cmocka_unit_test(test_migrate_2cpu),
		cmocka_unit_test(test_save_running_refused),
		cmocka_unit_test(test_valid_blob_loads),
		cmocka_unit_test(test_truncated_every_length),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_wrong_vcpu_count),
		cmocka_unit_test(test_section_lengths),
		cmocka_unit_test(test_bad_sections),
		cmocka_unit_test(test_bad_payloads),
		cmocka_unit_test(test_device_sections),
		cmocka_unit_test(test_partial_console_line_moves),
		cmocka_unit_test(test_fuzz),
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	/* These tests exist to exercise KVM: never skip them silently. */
	if (fd < 0) {
		fprintf(stderr, "test_vmstate: /dev/kvm: %s (these tests need KVM)\n",
			strerror(errno));
		return 1;
	}
	close(fd);
	if (access(GUEST, R_OK) != 0) {
		fprintf(stderr, "test_vmstate: %s missing (run `make guests` first)\n", GUEST);
		return 1;
	}
	return cmocka_run_group_tests_name("vmstate", tests, setup_fixture, teardown_fixture);
}
