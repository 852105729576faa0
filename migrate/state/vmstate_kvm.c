/* What saving and loading machine state both ask of KVM: the capability
 * probe (the same on both sides, so both skip the same state), the ioctl
 * wrapper that names the failing call, and the MSRs: which ones may travel
 * and the chunked KVM_GET/SET_MSRS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "migrate/state/vmstate_int.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vcpu.h"

/* The kernel refuses more entries per KVM_GET/SET_MSRS (MAX_IO_MSRS). */
#define MSR_CHUNK 255

/* ---- capabilities --------------------------------------------------- */

static int cap(struct vm *vm, long c)
{
	/* The VM fd answers per-VM values (XSAVE2's size can depend on the
	 * VM's permissions); older kernels only answer on /dev/kvm. */
	int r = kvm_check_cap(vm->vm_fd, c);

	return r > 0 ? r : kvm_check_cap(vm->kvm_fd, c);
}

void vmstate_probe_caps(struct vm *vm, struct vmstate_caps *c)
{
	/* Capabilities that just make a header flag's state available. */
	static const struct {
		long cap;
		uint32_t flag;
	} flag_caps[] = {
		{ KVM_CAP_XCRS, VMSTATE_F_XCRS },
		{ KVM_CAP_DEBUGREGS, VMSTATE_F_DEBUGREGS },
		{ KVM_CAP_VCPU_EVENTS, VMSTATE_F_VCPU_EVENTS },
		{ KVM_CAP_MP_STATE, VMSTATE_F_MP_STATE },
		{ KVM_CAP_ADJUST_CLOCK, VMSTATE_F_CLOCK },
		{ KVM_CAP_PIT_STATE2, VMSTATE_F_PIT2 },
	};
	int x2 = cap(vm, KVM_CAP_XSAVE2);
	int adj = cap(vm, KVM_CAP_ADJUST_CLOCK);

	memset(c, 0, sizeof(*c));
	if (x2 >= (int)sizeof(struct kvm_xsave)) {
		c->xsave2 = true;
		c->xsave_size = (size_t)x2;
	} else if (cap(vm, KVM_CAP_XSAVE)) {
		c->xsave_size = sizeof(struct kvm_xsave);
	}
	c->flags = c->xsave_size ? VMSTATE_F_XSAVE : VMSTATE_F_FPU;
	for (size_t i = 0; i < sizeof(flag_caps) / sizeof(flag_caps[0]); i++)
		if (cap(vm, flag_caps[i].cap) > 0)
			c->flags |= flag_caps[i].flag;
	c->clock_flags = adj > 0 ? (uint32_t)adj : 0;
	c->tsc_khz = cap(vm, KVM_CAP_GET_TSC_KHZ) > 0;
	c->tsc_control = cap(vm, KVM_CAP_TSC_CONTROL) > 0;
	c->kvmclock_ctrl = cap(vm, KVM_CAP_KVMCLOCK_CTRL) > 0;
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

bool vmstate_msr_allowed(uint32_t index)
{
	return msr_lookup(index) != NULL;
}

static const char *msr_name(uint32_t index)
{
	const struct msr_range *r = msr_lookup(index);

	return r ? r->name : "not allowed";
}

/* ---- MSR I/O --------------------------------------------------------- */

/* KVM_GET/SET_MSRS in chunks; the return value is the number of MSRs the
 * kernel handled, and it stops silently at the first one it refuses. */
int vmstate_msr_io(int fd, unsigned long req, const char *what,
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

/* The MSR list both save and probe use: allow-list ∩ KVM's index list,
 * plus the probe-only entries that read back; TSC_DEADLINE goes last so a
 * loader that applies them in order restores it after IA32_TSC. */
int vmstate_msr_list(struct vm *vm, struct kvm_msr_entry **out, uint32_t *nout,
		     char *err, size_t errlen)
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
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list, "KVM_GET_MSR_INDEX_LIST",
			    -1, err, errlen);
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
		KVM_ERR(err, errlen, "%u MSRs to save, format allows %d", n, VMSTATE_MAX_MSRS);
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

