/* Save and load the machine state of a paused VM (see docs/vmstate.md).
 * Orders follow Firecracker's, whose reasons are quoted where they apply;
 * everything read from a blob is validated before any of it reaches KVM. */
#include "migrate/vmstate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>

#include "devices/uart.h"
#include "vmm/kvm.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* KVM's structs are the x86-64 kernel ABI and are copied as they are: on
 * x86 that is already little-endian. The sizes are part of the format. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "x86 only");
_Static_assert(sizeof(struct kvm_pit_state2) == 112, "ABI");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "ABI");
_Static_assert(sizeof(struct kvm_irqchip) == 520, "ABI");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "ABI");
_Static_assert(sizeof(struct kvm_regs) == 144, "ABI");
_Static_assert(sizeof(struct kvm_sregs) == 312, "ABI");
_Static_assert(sizeof(struct kvm_fpu) == 416, "ABI");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "ABI");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "ABI");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "ABI");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "ABI");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "ABI");
_Static_assert(sizeof(struct kvm_msr_entry) == 16, "ABI");

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
/* The kernel refuses more entries per KVM_GET/SET_MSRS (MAX_IO_MSRS). */
#define MSR_CHUNK 255
#define MSRS_HDR 8 /* u32 count, u32 reserved */
/* Firecracker's tolerance (from QEMU): below it no scaling is needed. */
#define TSC_TOL_PPM 250

/* ---- section table ------------------------------------------------- */

enum { VS_UART, VS_PIT2, VS_CLOCK, VS_PIC_M, VS_PIC_S, VS_IOAPIC, VS_TSC_KHZ, VS_CONSOLE, VS_N };
enum { CS_MP, CS_REGS, CS_SREGS, CS_XSAVE, CS_FPU, CS_XCRS, CS_DR, CS_LAPIC,
       CS_MSRS, CS_EVENTS, CS_N };

struct secdesc {
	uint32_t type;
	const char *name;
	bool per_cpu;
	int slot;
	uint32_t size;	    /* exact payload size; 0 = checked by its parser */
	uint32_t need_flag; /* header flag that makes it mandatory; 0 = always */
};

static const struct secdesc secdescs[] = {
	{ VMSTATE_SEC_UART, "UART", false, VS_UART, UART_STATE_SIZE, 0 },
	{ VMSTATE_SEC_PIT2, "PIT2", false, VS_PIT2, sizeof(struct kvm_pit_state2), VMSTATE_F_PIT2 },
	{ VMSTATE_SEC_CLOCK, "CLOCK", false, VS_CLOCK, sizeof(struct kvm_clock_data), VMSTATE_F_CLOCK },
	{ VMSTATE_SEC_PIC_MASTER, "PIC_MASTER", false, VS_PIC_M, sizeof(struct kvm_irqchip), 0 },
	{ VMSTATE_SEC_PIC_SLAVE, "PIC_SLAVE", false, VS_PIC_S, sizeof(struct kvm_irqchip), 0 },
	{ VMSTATE_SEC_IOAPIC, "IOAPIC", false, VS_IOAPIC, sizeof(struct kvm_irqchip), 0 },
	{ VMSTATE_SEC_TSC_KHZ, "TSC_KHZ", false, VS_TSC_KHZ, 4, 0 },
	{ VMSTATE_SEC_CONSOLE, "CONSOLE", false, VS_CONSOLE, 0, 0 },
	{ VMSTATE_SEC_MP_STATE, "MP_STATE", true, CS_MP, sizeof(struct kvm_mp_state), VMSTATE_F_MP_STATE },
	{ VMSTATE_SEC_REGS, "REGS", true, CS_REGS, sizeof(struct kvm_regs), 0 },
	{ VMSTATE_SEC_SREGS, "SREGS", true, CS_SREGS, sizeof(struct kvm_sregs), 0 },
	{ VMSTATE_SEC_XSAVE, "XSAVE", true, CS_XSAVE, 0, VMSTATE_F_XSAVE },
	{ VMSTATE_SEC_FPU, "FPU", true, CS_FPU, sizeof(struct kvm_fpu), VMSTATE_F_FPU },
	{ VMSTATE_SEC_XCRS, "XCRS", true, CS_XCRS, sizeof(struct kvm_xcrs), VMSTATE_F_XCRS },
	{ VMSTATE_SEC_DEBUGREGS, "DEBUGREGS", true, CS_DR, sizeof(struct kvm_debugregs), VMSTATE_F_DEBUGREGS },
	{ VMSTATE_SEC_LAPIC, "LAPIC", true, CS_LAPIC, sizeof(struct kvm_lapic_state), 0 },
	{ VMSTATE_SEC_MSRS, "MSRS", true, CS_MSRS, 0, 0 },
	{ VMSTATE_SEC_VCPU_EVENTS, "VCPU_EVENTS", true, CS_EVENTS, sizeof(struct kvm_vcpu_events), VMSTATE_F_VCPU_EVENTS },
};
#define NSECDESCS (sizeof(secdescs) / sizeof(secdescs[0]))

static const struct secdesc *secdesc_find(uint32_t type)
{
	for (size_t i = 0; i < NSECDESCS; i++)
		if (secdescs[i].type == type)
			return &secdescs[i];
	return NULL;
}

const char *vmstate_sec_name(uint32_t type)
{
	const struct secdesc *d = secdesc_find(type);

	return d ? d->name : "unknown";
}

/* ---- MSR allow-list ------------------------------------------------ */

/* Guest-visible architectural and KVM paravirtual MSRs worth carrying.
 * Feature/capability MSRs (ARCH_CAPABILITIES, PERF_CAPABILITIES, ...) are
 * left out on purpose: they describe the host, and the target sets its own.
 * APICBASE, EFER and FS/GS_BASE also travel in SREGS; KVM does not list
 * them, so the intersection normally drops them. "probe" entries are MSRs
 * KVM emulates but leaves out of KVM_GET_MSR_INDEX_LIST (the MTRRs): they
 * are kept when a one-MSR KVM_GET_MSRS reads them. */
static const struct msr_range {
	uint32_t first, last;
	const char *name;
	bool probe;
} msr_allow[] = {
	{ 0x10, 0x10, "IA32_TSC", false },
	{ 0x11, 0x11, "KVM_WALL_CLOCK", false },
	{ 0x12, 0x12, "KVM_SYSTEM_TIME", false },
	{ 0x1b, 0x1b, "IA32_APICBASE", false },
	{ 0x3b, 0x3b, "IA32_TSC_ADJUST", false },
	{ 0x174, 0x174, "IA32_SYSENTER_CS", false },
	{ 0x175, 0x175, "IA32_SYSENTER_ESP", false },
	{ 0x176, 0x176, "IA32_SYSENTER_EIP", false },
	{ 0x1a0, 0x1a0, "IA32_MISC_ENABLE", false },
	{ 0x200, 0x20f, "MTRR_PHYSBASE/MASK", true },
	{ 0x250, 0x250, "MTRR_FIX64K_00000", true },
	{ 0x258, 0x259, "MTRR_FIX16K", true },
	{ 0x268, 0x26f, "MTRR_FIX4K", true },
	{ 0x277, 0x277, "IA32_PAT", false },
	{ 0x2ff, 0x2ff, "MTRR_DEF_TYPE", true },
	{ 0x6e0, 0x6e0, "IA32_TSC_DEADLINE", false },
	{ 0xc0000080, 0xc0000080, "EFER", false },
	{ 0xc0000081, 0xc0000081, "STAR", false },
	{ 0xc0000082, 0xc0000082, "LSTAR", false },
	{ 0xc0000083, 0xc0000083, "CSTAR", false },
	{ 0xc0000084, 0xc0000084, "SFMASK", false },
	{ 0xc0000100, 0xc0000100, "FS_BASE", false },
	{ 0xc0000101, 0xc0000101, "GS_BASE", false },
	{ 0xc0000102, 0xc0000102, "KERNEL_GS_BASE", false },
	{ 0xc0000103, 0xc0000103, "TSC_AUX", true },
	{ 0x4b564d00, 0x4b564dff, "KVM_PV (kvmclock, async PF, steal time, PV EOI)", false },
};
#define NMSR_ALLOW (sizeof(msr_allow) / sizeof(msr_allow[0]))

static const struct msr_range *msr_lookup(uint32_t index)
{
	for (size_t i = 0; i < NMSR_ALLOW; i++)
		if (index >= msr_allow[i].first && index <= msr_allow[i].last)
			return &msr_allow[i];
	return NULL;
}

static const char *msr_name(uint32_t index)
{
	const struct msr_range *r = msr_lookup(index);

	return r ? r->name : "not allowed";
}

/* ---- little-endian helpers ----------------------------------------- */

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- KVM capabilities (the same probe on both sides) ---------------- */

struct caps {
	size_t xsave_size; /* 0: no XSAVE, use KVM_GET/SET_FPU */
	bool xsave2;
	bool xcrs, debugregs, events, mp_state, clock, pit2;
	uint32_t clock_flags; /* KVM_CAP_ADJUST_CLOCK bits */
	bool tsc_khz, tsc_control, kvmclock_ctrl;
};

static int cap(struct vm *vm, long c)
{
	/* The VM fd answers per-VM values (XSAVE2's size can depend on the
	 * VM's permissions); older kernels only answer on /dev/kvm. */
	int r = kvm_check_cap(vm->vm_fd, c);

	return r > 0 ? r : kvm_check_cap(vm->kvm_fd, c);
}

static void probe_caps(struct vm *vm, struct caps *c)
{
	int x2 = cap(vm, KVM_CAP_XSAVE2);
	int adj = cap(vm, KVM_CAP_ADJUST_CLOCK);

	memset(c, 0, sizeof(*c));
	if (x2 >= (int)sizeof(struct kvm_xsave)) {
		c->xsave2 = true;
		c->xsave_size = (size_t)x2;
	} else if (cap(vm, KVM_CAP_XSAVE)) {
		c->xsave_size = sizeof(struct kvm_xsave);
	}
	c->xcrs = cap(vm, KVM_CAP_XCRS) > 0;
	c->debugregs = cap(vm, KVM_CAP_DEBUGREGS) > 0;
	c->events = cap(vm, KVM_CAP_VCPU_EVENTS) > 0;
	c->mp_state = cap(vm, KVM_CAP_MP_STATE) > 0;
	c->clock = adj > 0;
	c->clock_flags = adj > 0 ? (uint32_t)adj : 0;
	c->pit2 = cap(vm, KVM_CAP_PIT_STATE2) > 0;
	c->tsc_khz = cap(vm, KVM_CAP_GET_TSC_KHZ) > 0;
	c->tsc_control = cap(vm, KVM_CAP_TSC_CONTROL) > 0;
	c->kvmclock_ctrl = cap(vm, KVM_CAP_KVMCLOCK_CTRL) > 0;
}

static uint32_t caps_flags(const struct caps *c)
{
	uint32_t f = 0;

	f |= c->xsave_size ? VMSTATE_F_XSAVE : VMSTATE_F_FPU;
	if (c->xcrs)
		f |= VMSTATE_F_XCRS;
	if (c->debugregs)
		f |= VMSTATE_F_DEBUGREGS;
	if (c->events)
		f |= VMSTATE_F_VCPU_EVENTS;
	if (c->mp_state)
		f |= VMSTATE_F_MP_STATE;
	if (c->clock)
		f |= VMSTATE_F_CLOCK;
	if (c->pit2)
		f |= VMSTATE_F_PIT2;
	return f;
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what,
		  int cpu, char *err, size_t errlen)
{
	int r = ioctl(fd, req, arg);

	if (r < 0) {
		int e = errno;

		if (cpu >= 0)
			KVM_ERR(err, errlen, "%s (vcpu%d): %s", what, cpu, strerror(e));
		else
			KVM_ERR(err, errlen, "%s: %s", what, strerror(e));
		return -e;
	}
	return r;
}

#define IOC(fd, req, arg, cpu) xioctl((fd), (req), (arg), #req, (cpu), err, errlen)

/* KVM_GET/SET_MSRS in chunks; the return value is the number of MSRs the
 * kernel handled, and it stops silently at the first one it refuses. */
static int msr_io(int fd, unsigned long req, const char *what,
		  struct kvm_msr_entry *e, uint32_t n, int cpu, char *err,
		  size_t errlen)
{
	struct kvm_msrs *m = malloc(sizeof(*m) + MSR_CHUNK * sizeof(*e));
	int ret = 0;

	if (!m)
		return -ENOMEM;
	for (uint32_t done = 0; done < n;) {
		uint32_t k = n - done < MSR_CHUNK ? n - done : MSR_CHUNK;
		int r;

		memset(m, 0, sizeof(*m));
		m->nmsrs = k;
		memcpy(m->entries, e + done, k * sizeof(*e));
		r = ioctl(fd, req, m);
		if (r < 0) {
			ret = -errno;
			KVM_ERR(err, errlen, "%s (vcpu%d): %s", what, cpu, strerror(-ret));
			goto out;
		}
		if ((uint32_t)r != k) {
			uint32_t bad = m->entries[r].index;

			KVM_ERR(err, errlen, "%s (vcpu%d): MSR 0x%x (%s) refused after %u of %u",
				what, cpu, bad, msr_name(bad), done + (uint32_t)r, n);
			ret = -EIO;
			goto out;
		}
		memcpy(e + done, m->entries, k * sizeof(*e));
		done += k;
	}
out:
	free(m);
	return ret;
}

/* ---- save ----------------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	uint32_t nsec;
};

static int wb_grow(struct wbuf *b, size_t need)
{
	if (b->cap - b->len < need) {
		size_t ncap = b->cap ? b->cap : 16384;
		uint8_t *np;

		while (ncap - b->len < need)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	return 0;
}

static int wb_put(struct wbuf *b, uint32_t type, uint32_t vcpu,
		  const void *data, size_t len)
{
	size_t need = VMSTATE_SEC_HDR_SIZE + len;

	if (len > UINT32_MAX)
		return -E2BIG;
	if (wb_grow(b, need))
		return -ENOMEM;
	put_le32(b->p + b->len, type);
	put_le32(b->p + b->len + 4, vcpu);
	put_le32(b->p + b->len + 8, (uint32_t)len);
	memcpy(b->p + b->len + VMSTATE_SEC_HDR_SIZE, data, len);
	b->len += need;
	b->nsec++;
	return 0;
}

/* The MSR list both save and probe use: allow-list ∩ KVM's index list,
 * plus the probe-only entries that read back; TSC_DEADLINE goes last so a
 * loader that applies them in order restores it after IA32_TSC. */
static int build_msr_list(struct vm *vm, struct kvm_msr_entry **out,
			  uint32_t *nout, char *err, size_t errlen)
{
	struct kvm_msr_list probe_hdr = { .nmsrs = 0 };
	struct kvm_msr_list *list = NULL;
	struct kvm_msr_entry *e = NULL;
	uint32_t n = 0, max;
	bool deadline = false;
	int ret;

	/* The first call fails with E2BIG and reports the count. */
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe_hdr) < 0 && errno != E2BIG) {
		ret = -errno;
		KVM_ERR(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
		return ret;
	}
	list = calloc(1, sizeof(*list) + (size_t)probe_hdr.nmsrs * sizeof(uint32_t));
	max = probe_hdr.nmsrs + 64; /* + every probe entry */
	e = calloc(max, sizeof(*e));
	if (!list || !e) {
		ret = -ENOMEM;
		goto fail;
	}
	list->nmsrs = probe_hdr.nmsrs;
	ret = IOC(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list, -1);
	if (ret < 0)
		goto fail;
	for (uint32_t i = 0; i < list->nmsrs && n < max; i++) {
		const struct msr_range *r = msr_lookup(list->indices[i]);

		if (!r || r->probe)
			continue;
		if (list->indices[i] == MSR_IA32_TSC_DEADLINE) {
			deadline = true;
			continue;
		}
		e[n++].index = list->indices[i];
	}
	for (size_t i = 0; i < NMSR_ALLOW; i++) {
		if (!msr_allow[i].probe)
			continue;
		for (uint32_t idx = msr_allow[i].first; idx <= msr_allow[i].last && n < max; idx++) {
			struct {
				struct kvm_msrs h;
				struct kvm_msr_entry e;
			} one = { .h = { .nmsrs = 1 }, .e = { .index = idx } };

			if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &one) == 1)
				e[n++].index = idx;
		}
	}
	if (deadline && n < max)
		e[n++].index = MSR_IA32_TSC_DEADLINE;
	if (n > VMSTATE_MAX_MSRS) {
		KVM_ERR(err, errlen, "%u MSRs to save, format allows %u", n, VMSTATE_MAX_MSRS);
		ret = -E2BIG;
		goto fail;
	}
	free(list);
	*out = e;
	*nout = n;
	return 0;
fail:
	free(list);
	free(e);
	return ret;
}

static bool vm_quiescent(struct vm *vm)
{
	bool ok;

	pthread_mutex_lock(&vm->lock);
	ok = vm->threads == 0 || (vm->pause_count > 0 && vm->parked == vm->threads);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

static int save_devices(struct vm *vm, struct wbuf *b)
{
	uint8_t u[UART_STATE_SIZE], line[VM_CONSOLE_LINE_MAX];
	uint32_t line_len;
	int ret;

	/* The bus lock keeps the console back-end from feeding the UART
	 * while it is copied. */
	bus_lock(&vm->pio);
	uart_save(&vm->uart, u);
	line_len = vm->con_len;
	memcpy(line, vm->con_line, line_len);
	bus_unlock(&vm->pio);
	ret = wb_put(b, VMSTATE_SEC_UART, VMSTATE_VM_SCOPE, u, sizeof(u));
	if (ret || line_len == 0)
		return ret;
	return wb_put(b, VMSTATE_SEC_CONSOLE, VMSTATE_VM_SCOPE, line, line_len);
}

static int save_vm_level(struct vm *vm, const struct caps *c, struct wbuf *b,
			 char *err, size_t errlen)
{
	static const struct {
		uint32_t chip, type;
	} chips[] = {
		{ KVM_IRQCHIP_PIC_MASTER, VMSTATE_SEC_PIC_MASTER },
		{ KVM_IRQCHIP_PIC_SLAVE, VMSTATE_SEC_PIC_SLAVE },
		{ KVM_IRQCHIP_IOAPIC, VMSTATE_SEC_IOAPIC },
	};
	int ret;

	if (c->pit2) {
		struct kvm_pit_state2 pit;

		memset(&pit, 0, sizeof(pit));
		ret = IOC(vm->vm_fd, KVM_GET_PIT2, &pit, -1);
		if (ret < 0)
			return ret;
		ret = wb_put(b, VMSTATE_SEC_PIT2, VMSTATE_VM_SCOPE, &pit, sizeof(pit));
		if (ret)
			return ret;
	}
	if (c->clock) {
		struct kvm_clock_data clk;

		memset(&clk, 0, sizeof(clk));
		ret = IOC(vm->vm_fd, KVM_GET_CLOCK, &clk, -1);
		if (ret < 0)
			return ret;
		ret = wb_put(b, VMSTATE_SEC_CLOCK, VMSTATE_VM_SCOPE, &clk, sizeof(clk));
		if (ret)
			return ret;
	}
	for (size_t i = 0; i < 3; i++) {
		struct kvm_irqchip ic;

		memset(&ic, 0, sizeof(ic));
		ic.chip_id = chips[i].chip;
		ret = IOC(vm->vm_fd, KVM_GET_IRQCHIP, &ic, -1);
		if (ret < 0)
			return ret;
		ret = wb_put(b, chips[i].type, VMSTATE_VM_SCOPE, &ic, sizeof(ic));
		if (ret)
			return ret;
	}
	if (c->tsc_khz) {
		int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
		uint8_t le[4];

		if (khz > 0) {
			put_le32(le, (uint32_t)khz);
			ret = wb_put(b, VMSTATE_SEC_TSC_KHZ, VMSTATE_VM_SCOPE, le, 4);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int save_vcpu(struct vcpu *v, const struct caps *c,
		     const struct kvm_msr_entry *msrlist, uint32_t nmsrs,
		     struct wbuf *b, char *err, size_t errlen)
{
	union {
		struct kvm_mp_state mp;
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_fpu fpu;
		struct kvm_xcrs xcrs;
		struct kvm_debugregs dr;
		struct kvm_lapic_state lapic;
		struct kvm_vcpu_events ev;
	} u;
	uint32_t id = (uint32_t)v->id;
	struct kvm_msr_entry *e = NULL;
	uint8_t *buf = NULL;
	int ret;

#define GET_PUT(req, field, type)                                        \
	do {                                                             \
		memset(&u, 0, sizeof(u));                                \
		ret = IOC(v->fd, req, &u.field, v->id);                  \
		if (ret < 0)                                             \
			goto out;                                        \
		ret = wb_put(b, type, id, &u.field, sizeof(u.field));    \
		if (ret)                                                 \
			goto out;                                        \
	} while (0)

	/* MP_STATE first: it runs kvm_apic_accept_events(), which may change
	 * vCPU and LAPIC state that the later reads must see. */
	if (c->mp_state)
		GET_PUT(KVM_GET_MP_STATE, mp, VMSTATE_SEC_MP_STATE);
	GET_PUT(KVM_GET_REGS, regs, VMSTATE_SEC_REGS);
	GET_PUT(KVM_GET_SREGS, sregs, VMSTATE_SEC_SREGS);
	if (c->xsave_size) {
		buf = calloc(1, c->xsave_size);
		if (!buf) {
			ret = -ENOMEM;
			goto out;
		}
		ret = c->xsave2 ? IOC(v->fd, KVM_GET_XSAVE2, buf, v->id)
				: IOC(v->fd, KVM_GET_XSAVE, buf, v->id);
		if (ret < 0)
			goto out;
		ret = wb_put(b, VMSTATE_SEC_XSAVE, id, buf, c->xsave_size);
		if (ret)
			goto out;
	} else {
		GET_PUT(KVM_GET_FPU, fpu, VMSTATE_SEC_FPU);
	}
	if (c->xcrs)
		GET_PUT(KVM_GET_XCRS, xcrs, VMSTATE_SEC_XCRS);
	if (c->debugregs)
		GET_PUT(KVM_GET_DEBUGREGS, dr, VMSTATE_SEC_DEBUGREGS);
	GET_PUT(KVM_GET_LAPIC, lapic, VMSTATE_SEC_LAPIC);

	e = malloc((nmsrs ? nmsrs : 1) * sizeof(*e));
	free(buf);
	buf = malloc(MSRS_HDR + (size_t)nmsrs * 16);
	if (!e || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(e, msrlist, nmsrs * sizeof(*e));
	ret = msr_io(v->fd, KVM_GET_MSRS, "KVM_GET_MSRS", e, nmsrs, v->id, err, errlen);
	if (ret)
		goto out;
	put_le32(buf, nmsrs);
	put_le32(buf + 4, 0);
	for (uint32_t i = 0; i < nmsrs; i++) {
		put_le32(buf + MSRS_HDR + 16 * i, e[i].index);
		put_le32(buf + MSRS_HDR + 16 * i + 4, 0);
		put_le64(buf + MSRS_HDR + 16 * i + 8, e[i].data);
	}
	ret = wb_put(b, VMSTATE_SEC_MSRS, id, buf, MSRS_HDR + (size_t)nmsrs * 16);
	if (ret)
		goto out;

	/* Last: "should probably be last to save" (Firecracker); it holds
	 * the pending exception/interrupt/NMI that the reads above leave. */
	if (c->events)
		GET_PUT(KVM_GET_VCPU_EVENTS, ev, VMSTATE_SEC_VCPU_EVENTS);
#undef GET_PUT
	ret = 0;
out:
	free(e);
	free(buf);
	return ret;
}

int vmstate_save(struct vm *vm, uint8_t **out, size_t *outlen, char *err,
		 size_t errlen)
{
	struct wbuf b = { 0 };
	struct kvm_msr_entry *msrs = NULL;
	uint32_t nmsrs = 0;
	struct caps c;
	uint8_t hdr[VMSTATE_HDR_SIZE];
	int ret;

	*out = NULL;
	*outlen = 0;
	if (vm->ncpus < 1 || !vm->vcpus) {
		KVM_ERR(err, errlen, "vmstate_save: VM has no vCPUs");
		return -EINVAL;
	}
	if (!vm_quiescent(vm)) {
		KVM_ERR(err, errlen, "vmstate_save: VM is running (vm_pause() first)");
		return -EBUSY;
	}
	probe_caps(vm, &c);
	ret = build_msr_list(vm, &msrs, &nmsrs, err, errlen);
	if (ret)
		goto fail;
	/* Room for the header; nsections is known at the end. */
	ret = wb_grow(&b, VMSTATE_HDR_SIZE);
	if (ret)
		goto fail;
	b.len = VMSTATE_HDR_SIZE;
	/* Devices first: saving a device may raise an interrupt, which must
	 * then be in the irqchip/LAPIC state read below (Firecracker). */
	ret = save_devices(vm, &b);
	if (ret)
		goto fail;
	ret = save_vm_level(vm, &c, &b, err, errlen);
	if (ret < 0)
		goto fail;
	for (int i = 0; i < vm->ncpus; i++) {
		ret = save_vcpu(&vm->vcpus[i], &c, msrs, nmsrs, &b, err, errlen);
		if (ret)
			goto fail;
	}
	memcpy(hdr, VMSTATE_MAGIC, 8);
	put_le32(hdr + 8, VMSTATE_VERSION);
	put_le32(hdr + 12, VMSTATE_HDR_SIZE);
	put_le32(hdr + 16, (uint32_t)vm->ncpus);
	put_le32(hdr + 20, b.nsec);
	put_le64(hdr + 24, vm->ram_size);
	put_le32(hdr + 32, caps_flags(&c));
	put_le32(hdr + 36, 0);
	memcpy(b.p, hdr, sizeof(hdr));
	free(msrs);
	*out = b.p;
	*outlen = b.len;
	return 0;
fail:
	if (ret == -ENOMEM)
		KVM_ERR(err, errlen, "vmstate_save: out of memory");
	free(msrs);
	free(b.p);
	return ret;
}

/* ---- parse and validate -------------------------------------------- */

struct secref {
	const uint8_t *p;
	uint32_t len;
};

struct parsed {
	uint32_t ncpus, flags, nsec;
	uint64_t mem_size;
	struct secref vm[VS_N];
	struct secref cpu[VM_MAX_CPUS][CS_N];
};

static int check_msrs(const struct secref *s, uint32_t cpu, char *err,
		      size_t errlen)
{
	uint32_t n;

	if (s->len < MSRS_HDR) {
		KVM_ERR(err, errlen, "vmstate: vcpu%u MSRS section too short (%u bytes)", cpu, s->len);
		return -EINVAL;
	}
	n = get_le32(s->p);
	if (n > VMSTATE_MAX_MSRS || get_le32(s->p + 4) != 0 ||
	    s->len != MSRS_HDR + 16 * n) {
		KVM_ERR(err, errlen, "vmstate: vcpu%u MSRS section: count %u does not match %u bytes",
			cpu, n, s->len);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ent = s->p + MSRS_HDR + 16 * i;
		uint32_t idx = get_le32(ent);

		/* Only allow-listed MSRs: a blob must not be able to poke
		 * arbitrary host-visible MSRs through KVM_SET_MSRS. */
		if (!msr_lookup(idx) || get_le32(ent + 4) != 0) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u MSR 0x%x is not on the allow-list", cpu, idx);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (get_le32(s->p + MSRS_HDR + 16 * j) == idx) {
				KVM_ERR(err, errlen, "vmstate: vcpu%u MSR 0x%x appears twice", cpu, idx);
				return -EINVAL;
			}
	}
	return 0;
}

static int check_payload(const struct secdesc *d, const struct secref *s,
			 uint32_t cpu, char *err, size_t errlen)
{
	static const uint32_t chip_of[] = {
		[VS_PIC_M] = KVM_IRQCHIP_PIC_MASTER,
		[VS_PIC_S] = KVM_IRQCHIP_PIC_SLAVE,
		[VS_IOAPIC] = KVM_IRQCHIP_IOAPIC,
	};

	if (d->size && s->len != d->size) {
		KVM_ERR(err, errlen, "vmstate: %s section is %u bytes, expected %u",
			d->name, s->len, d->size);
		return -EINVAL;
	}
	switch (d->type) {
	case VMSTATE_SEC_XSAVE:
		if (s->len < sizeof(struct kvm_xsave) || s->len > VMSTATE_MAX_XSAVE) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u XSAVE section is %u bytes (%zu..%u allowed)",
				cpu, s->len, sizeof(struct kvm_xsave), VMSTATE_MAX_XSAVE);
			return -EINVAL;
		}
		return 0;
	case VMSTATE_SEC_MSRS:
		return check_msrs(s, cpu, err, errlen);
	case VMSTATE_SEC_XCRS:
		if (get_le32(s->p) > KVM_MAX_XCRS) {
			KVM_ERR(err, errlen, "vmstate: vcpu%u XCRS count %u > %d", cpu,
				get_le32(s->p), KVM_MAX_XCRS);
			return -EINVAL;
		}
		return 0;
	case VMSTATE_SEC_PIC_MASTER:
	case VMSTATE_SEC_PIC_SLAVE:
	case VMSTATE_SEC_IOAPIC:
		if (get_le32(s->p) != chip_of[d->slot]) {
			KVM_ERR(err, errlen, "vmstate: %s section names chip %u", d->name,
				get_le32(s->p));
			return -EINVAL;
		}
		return 0;
	default:
		return 0;
	}
}

static int parse(const uint8_t *blob, size_t len, struct parsed *ps, char *err,
		 size_t errlen)
{
	size_t off = VMSTATE_HDR_SIZE;
	uint32_t version, hdr_size;

	memset(ps, 0, sizeof(*ps));
	if (!blob || len < VMSTATE_HDR_SIZE) {
		KVM_ERR(err, errlen, "vmstate: blob of %zu bytes is shorter than its header", len);
		return -EINVAL;
	}
	if (memcmp(blob, VMSTATE_MAGIC, 8) != 0) {
		KVM_ERR(err, errlen, "vmstate: bad magic (not a minivmm vmstate blob)");
		return -EINVAL;
	}
	version = get_le32(blob + 8);
	hdr_size = get_le32(blob + 12);
	if (version != VMSTATE_VERSION || hdr_size != VMSTATE_HDR_SIZE) {
		KVM_ERR(err, errlen, "vmstate: version %u (header %u bytes) not supported; this build reads version %d",
			version, hdr_size, VMSTATE_VERSION);
		return -EPROTO;
	}
	ps->ncpus = get_le32(blob + 16);
	ps->nsec = get_le32(blob + 20);
	ps->mem_size = get_le64(blob + 24);
	ps->flags = get_le32(blob + 32);
	if (ps->ncpus < 1 || ps->ncpus > VM_MAX_CPUS) {
		KVM_ERR(err, errlen, "vmstate: vCPU count %u out of range 1..%d", ps->ncpus, VM_MAX_CPUS);
		return -EINVAL;
	}
	if ((ps->flags & ~VMSTATE_F_ALL) || get_le32(blob + 36) != 0 ||
	    !(ps->flags & VMSTATE_F_XSAVE) == !(ps->flags & VMSTATE_F_FPU)) {
		KVM_ERR(err, errlen, "vmstate: invalid header flags 0x%x", ps->flags);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < ps->nsec; i++) {
		const struct secdesc *d;
		struct secref *slot;
		uint32_t type, vcpu, slen;
		int ret;

		if (len - off < VMSTATE_SEC_HDR_SIZE) {
			KVM_ERR(err, errlen, "vmstate: truncated at section %u of %u (offset %zu)",
				i, ps->nsec, off);
			return -EINVAL;
		}
		type = get_le32(blob + off);
		vcpu = get_le32(blob + off + 4);
		slen = get_le32(blob + off + 8);
		off += VMSTATE_SEC_HDR_SIZE;
		if (slen > len - off) {
			KVM_ERR(err, errlen, "vmstate: section %u (%s) claims %u bytes, %zu left",
				i, vmstate_sec_name(type), slen, len - off);
			return -EINVAL;
		}
		d = secdesc_find(type);
		if (!d) {
			if (type & VMSTATE_SEC_OPTIONAL) {
				off += slen;
				continue;
			}
			KVM_ERR(err, errlen, "vmstate: unknown mandatory section type 0x%x", type);
			return -EPROTO;
		}
		if (d->per_cpu ? vcpu >= ps->ncpus : vcpu != VMSTATE_VM_SCOPE) {
			KVM_ERR(err, errlen, "vmstate: %s section has bad vcpu index %u", d->name, vcpu);
			return -EINVAL;
		}
		if (d->need_flag && !(ps->flags & d->need_flag)) {
			KVM_ERR(err, errlen, "vmstate: %s section present but its header flag is not set",
				d->name);
			return -EINVAL;
		}
		slot = d->per_cpu ? &ps->cpu[vcpu][d->slot] : &ps->vm[d->slot];
		if (slot->p) {
			KVM_ERR(err, errlen, "vmstate: duplicate %s section", d->name);
			return -EINVAL;
		}
		slot->p = blob + off;
		slot->len = slen;
		ret = check_payload(d, slot, d->per_cpu ? vcpu : 0, err, errlen);
		if (ret)
			return ret;
		off += slen;
	}
	if (off != len) {
		KVM_ERR(err, errlen, "vmstate: %zu trailing bytes after %u sections", len - off, ps->nsec);
		return -EINVAL;
	}
	for (size_t k = 0; k < NSECDESCS; k++) {
		const struct secdesc *d = &secdescs[k];

		if (d->type & VMSTATE_SEC_OPTIONAL)
			continue;
		if (d->need_flag && !(ps->flags & d->need_flag))
			continue;
		for (uint32_t c = 0; c < (d->per_cpu ? ps->ncpus : 1); c++) {
			if (!(d->per_cpu ? ps->cpu[c][d->slot].p : ps->vm[d->slot].p)) {
				if (d->per_cpu)
					KVM_ERR(err, errlen, "vmstate: vcpu%u has no %s section", c, d->name);
				else
					KVM_ERR(err, errlen, "vmstate: no %s section", d->name);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int vmstate_check(const uint8_t *blob, size_t len, uint32_t *ncpus,
		  uint64_t *mem_size, char *err, size_t errlen)
{
	struct parsed *ps = malloc(sizeof(*ps));
	int ret;

	if (!ps)
		return -ENOMEM;
	ret = parse(blob, len, ps, err, errlen);
	if (!ret) {
		if (ncpus)
			*ncpus = ps->ncpus;
		if (mem_size)
			*mem_size = ps->mem_size;
	}
	free(ps);
	return ret;
}

/* ---- load ----------------------------------------------------------- */

/* Everything that depends on the target's KVM, checked before any state
 * is applied. */
static int preflight(struct vm *vm, const struct parsed *ps, const struct caps *c,
		     bool *scale_tsc, uint32_t *tsc_khz, char *err, size_t errlen)
{
	uint32_t missing = ps->flags & ~caps_flags(c);
	bool started;

	pthread_mutex_lock(&vm->lock);
	started = vm->threads > 0;
	pthread_mutex_unlock(&vm->lock);
	if (started) {
		KVM_ERR(err, errlen, "vmstate_load: the VM's vCPU threads already run");
		return -EBUSY;
	}
	if (ps->ncpus != (uint32_t)vm->ncpus) {
		KVM_ERR(err, errlen, "vmstate_load: blob has %u vCPUs, VM has %d", ps->ncpus, vm->ncpus);
		return -EINVAL;
	}
	if (ps->mem_size != vm->ram_size) {
		KVM_ERR(err, errlen, "vmstate_load: blob is for %llu bytes of RAM, VM has %llu",
			(unsigned long long)ps->mem_size, (unsigned long long)vm->ram_size);
		return -EINVAL;
	}
	/* An FPU-only blob loads fine where XSAVE exists (KVM_SET_FPU is
	 * always there); any other capability the blob used must exist. */
	missing &= ~VMSTATE_F_FPU;
	if (missing) {
		KVM_ERR(err, errlen, "vmstate_load: this KVM lacks state the source saved (flags 0x%x)",
			missing);
		return -ENOTSUP;
	}
	for (uint32_t i = 0; i < ps->ncpus; i++) {
		const struct secref *x = &ps->cpu[i][CS_XSAVE];

		if (x->p && x->len > c->xsave_size) {
			KVM_ERR(err, errlen, "vmstate_load: vcpu%u XSAVE area is %u bytes, this KVM holds %zu",
				i, x->len, c->xsave_size);
			return -ENOTSUP;
		}
	}
	*scale_tsc = false;
	*tsc_khz = 0;
	if (ps->vm[VS_TSC_KHZ].p && c->tsc_khz) {
		uint32_t src = get_le32(ps->vm[VS_TSC_KHZ].p);
		int dst = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
		uint64_t diff;

		if (src == 0) {
			KVM_ERR(err, errlen, "vmstate_load: TSC_KHZ section says 0 kHz");
			return -EINVAL;
		}
		if (dst > 0) {
			diff = src > (uint32_t)dst ? src - (uint32_t)dst : (uint32_t)dst - src;
			if (diff * 1000000ULL > (uint64_t)src * TSC_TOL_PPM) {
				if (!c->tsc_control) {
					KVM_ERR(err, errlen, "vmstate_load: guest TSC is %u kHz, this host's is %d kHz and KVM cannot scale it (no KVM_CAP_TSC_CONTROL)",
						src, dst);
					return -ENOTSUP;
				}
				*scale_tsc = true;
				*tsc_khz = src;
			}
		}
	}
	return 0;
}

static int load_msrs(struct vcpu *v, const struct secref *s, char *err,
		     size_t errlen)
{
	uint32_t n = get_le32(s->p), nfirst = 0, nlast = 0;
	struct kvm_msr_entry *e = calloc(n ? n : 1, sizeof(*e));
	int ret;

	if (!e)
		return -ENOMEM;
	/* TSC_DEADLINE after IA32_TSC, in its own call, whatever the blob's
	 * order: "otherwise we risk 'losing' timer interrupts" (Firecracker),
	 * and it needs the LAPIC (already set) in TSC-deadline mode. */
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = s->p + MSRS_HDR + 16 * i;

		if (get_le32(p) != MSR_IA32_TSC_DEADLINE) {
			e[nfirst].index = get_le32(p);
			e[nfirst++].data = get_le64(p + 8);
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = s->p + MSRS_HDR + 16 * i;

		if (get_le32(p) == MSR_IA32_TSC_DEADLINE) {
			e[nfirst + nlast].index = get_le32(p);
			e[nfirst + nlast++].data = get_le64(p + 8);
		}
	}
	ret = msr_io(v->fd, KVM_SET_MSRS, "KVM_SET_MSRS", e, nfirst, v->id, err, errlen);
	if (!ret)
		ret = msr_io(v->fd, KVM_SET_MSRS, "KVM_SET_MSRS(TSC_DEADLINE)", e + nfirst,
			     nlast, v->id, err, errlen);
	free(e);
	return ret;
}

static int load_vcpu(struct vcpu *v, const struct secref *s, const struct caps *c,
		     bool scale_tsc, uint32_t tsc_khz, char *err, size_t errlen)
{
	union {
		struct kvm_mp_state mp;
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_fpu fpu;
		struct kvm_xcrs xcrs;
		struct kvm_debugregs dr;
		struct kvm_lapic_state lapic;
		struct kvm_vcpu_events ev;
	} u;
	int ret;

#define SET_FROM(slot, req, field)                                       \
	do {                                                             \
		memcpy(&u.field, s[slot].p, sizeof(u.field));            \
		ret = IOC(v->fd, req, &u.field, v->id);                  \
		if (ret < 0)                                             \
			return ret;                                      \
	} while (0)

	/* CPUID was set by vcpu_create. The frequency must be right before
	 * IA32_TSC is written, or the offset KVM derives is wrong. */
	if (scale_tsc) {
		ret = IOC(v->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)tsc_khz, v->id);
		if (ret < 0)
			return ret;
	}
	if (s[CS_MP].p)
		SET_FROM(CS_MP, KVM_SET_MP_STATE, mp);
	/* REGS before VCPU_EVENTS: "SET_REGS clears pending exceptions
	 * unconditionally". */
	SET_FROM(CS_REGS, KVM_SET_REGS, regs);
	SET_FROM(CS_SREGS, KVM_SET_SREGS, sregs);
	if (s[CS_XSAVE].p) {
		/* KVM_SET_XSAVE reads as many bytes as this KVM's XSAVE2 size;
		 * a shorter area from the source is zero-padded. */
		uint8_t *x = calloc(1, c->xsave_size);

		if (!x)
			return -ENOMEM;
		memcpy(x, s[CS_XSAVE].p, s[CS_XSAVE].len);
		ret = IOC(v->fd, KVM_SET_XSAVE, x, v->id);
		free(x);
		if (ret < 0)
			return ret;
	} else {
		SET_FROM(CS_FPU, KVM_SET_FPU, fpu);
	}
	if (s[CS_XCRS].p)
		SET_FROM(CS_XCRS, KVM_SET_XCRS, xcrs);
	if (s[CS_DR].p)
		SET_FROM(CS_DR, KVM_SET_DEBUGREGS, dr);
	/* LAPIC after SREGS (which restores the APIC base) and before the
	 * MSRs (TSC_DEADLINE only sticks on a configured LAPIC). */
	SET_FROM(CS_LAPIC, KVM_SET_LAPIC, lapic);
	ret = load_msrs(v, &s[CS_MSRS], err, errlen);
	if (ret)
		return ret;
	if (s[CS_EVENTS].p)
		SET_FROM(CS_EVENTS, KVM_SET_VCPU_EVENTS, ev);
#undef SET_FROM
	return 0;
}

static int load_vm_level(struct vm *vm, const struct parsed *ps, const struct caps *c,
			 const struct vmstate_load_opts *o, char *err, size_t errlen)
{
	static const int chip_slots[] = { VS_PIC_M, VS_PIC_S, VS_IOAPIC };
	int ret;

	if (ps->vm[VS_PIT2].p) {
		struct kvm_pit_state2 pit;

		memcpy(&pit, ps->vm[VS_PIT2].p, sizeof(pit));
		ret = IOC(vm->vm_fd, KVM_SET_PIT2, &pit, -1);
		if (ret < 0)
			return ret;
	}
	if (ps->vm[VS_CLOCK].p) {
		struct kvm_clock_data saved, clk;

		memcpy(&saved, ps->vm[VS_CLOCK].p, sizeof(saved));
		/* Only the fields KVM_SET_CLOCK reads; never pass on flags the
		 * source's kernel returned. Default: kvmclock resumes at the
		 * saved value, so guest time continues without a jump. */
		memset(&clk, 0, sizeof(clk));
		clk.clock = saved.clock;
		if (o->clock_realtime && (saved.flags & KVM_CLOCK_REALTIME) &&
		    (c->clock_flags & KVM_CLOCK_REALTIME)) {
			clk.flags = KVM_CLOCK_REALTIME;
			clk.realtime = saved.realtime;
		}
		ret = IOC(vm->vm_fd, KVM_SET_CLOCK, &clk, -1);
		if (ret < 0)
			return ret;
	}
	/* Last: KVM_SET_IRQCHIP re-evaluates the PIC output and re-delivers
	 * pending IOAPIC interrupts into the LAPICs, which must therefore
	 * already hold their restored state. */
	for (size_t i = 0; i < 3; i++) {
		struct kvm_irqchip ic;

		memcpy(&ic, ps->vm[chip_slots[i]].p, sizeof(ic));
		ret = IOC(vm->vm_fd, KVM_SET_IRQCHIP, &ic, -1);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int vmstate_load_opts(struct vm *vm, const uint8_t *blob, size_t len,
		      const struct vmstate_load_opts *opts, char *err,
		      size_t errlen)
{
	static const struct vmstate_load_opts defaults = { .clock_realtime = false };
	struct parsed *ps;
	struct caps c;
	bool scale_tsc;
	uint32_t tsc_khz;
	struct timespec now;
	int ret;

	if (!opts)
		opts = &defaults;
	ps = malloc(sizeof(*ps));
	if (!ps) {
		KVM_ERR(err, errlen, "vmstate_load: out of memory");
		return -ENOMEM;
	}
	ret = parse(blob, len, ps, err, errlen);
	if (ret)
		goto out;
	probe_caps(vm, &c);
	ret = preflight(vm, ps, &c, &scale_tsc, &tsc_khz, err, errlen);
	if (ret)
		goto out;

	/* Devices first, so the interrupt line a device re-drives reaches
	 * KVM's per-source line state before SET_IRQCHIP (last) overwrites
	 * the chips' registers with the saved ones. */
	if (ps->vm[VS_CONSOLE].len > VM_CONSOLE_LINE_MAX) {
		KVM_ERR(err, errlen, "vmstate_load: CONSOLE section of %u bytes exceeds %d",
			ps->vm[VS_CONSOLE].len, VM_CONSOLE_LINE_MAX);
		ret = -EINVAL;
		goto out;
	}
	bus_lock(&vm->pio);
	ret = uart_load(&vm->uart, ps->vm[VS_UART].p, ps->vm[VS_UART].len);
	if (ret == 0 && ps->vm[VS_CONSOLE].p) {
		/* The rest of the line follows from the guest, on this host. */
		memcpy(vm->con_line, ps->vm[VS_CONSOLE].p, ps->vm[VS_CONSOLE].len);
		vm->con_len = ps->vm[VS_CONSOLE].len;
		clock_gettime(CLOCK_MONOTONIC, &now);
		vm->con_first_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	}
	bus_unlock(&vm->pio);
	if (ret) {
		KVM_ERR(err, errlen, "vmstate_load: UART state rejected: %s", strerror(-ret));
		goto out;
	}
	for (int i = 0; i < vm->ncpus; i++) {
		ret = load_vcpu(&vm->vcpus[i], ps->cpu[i], &c, scale_tsc, tsc_khz, err, errlen);
		if (ret)
			goto out;
	}
	/* VM-level after the vCPUs, before they run: the clock is set after
	 * every IA32_TSC write (QEMU sets it at resume), the irqchips after
	 * the LAPICs (see load_vm_level). */
	ret = load_vm_level(vm, ps, &c, opts, err, errlen);
	if (ret)
		goto out;
	/* Tell a kvmclock guest it was stopped, so its watchdogs do not
	 * report a soft lockup. EINVAL just means the guest has no kvmclock. */
	if (c.kvmclock_ctrl)
		for (int i = 0; i < vm->ncpus; i++)
			if (ioctl(vm->vcpus[i].fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL) {
				ret = -errno;
				KVM_ERR(err, errlen, "KVM_KVMCLOCK_CTRL (vcpu%d): %s", i, strerror(-ret));
				goto out;
			}
	ret = 0;
out:
	if (ret == -ENOMEM)
		KVM_ERR(err, errlen, "vmstate_load: out of memory");
	free(ps);
	return ret;
}

int vmstate_load(struct vm *vm, const uint8_t *blob, size_t len, char *err,
		 size_t errlen)
{
	return vmstate_load_opts(vm, blob, len, NULL, err, errlen);
}
