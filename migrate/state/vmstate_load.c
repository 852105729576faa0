/* Loading a vmstate blob into a VM whose vCPUs have not run: the whole
 * blob is parsed and checked against this KVM first, then devices, vCPUs
 * and VM-level state are applied in Firecracker's order (the per-section
 * reasons are in the section table, vmstate.c). */
#include "migrate/state/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "migrate/proto/stream.h"
#include "migrate/state/vmstate_int.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

/* Firecracker's tolerance (from QEMU): below it no scaling is needed. */
#define TSC_TOL_PPM 250

/* Everything that depends on the target's KVM, checked before any state
 * is applied. */
static int preflight(struct vm *vm, const struct vmstate_parsed *ps,
		     const struct vmstate_caps *c, bool *scale_tsc,
		     uint32_t *tsc_khz, char *err, size_t errlen)
{
	uint32_t missing = ps->flags & ~c->flags;
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
		const struct vmstate_secref *x = &ps->cpu[i][CS_XSAVE];

		if (x->p && x->len > c->xsave_size) {
			KVM_ERR(err, errlen, "vmstate_load: vcpu%u XSAVE area is %u bytes, this KVM holds %zu",
				i, x->len, c->xsave_size);
			return -ENOTSUP;
		}
	}
	*scale_tsc = false;
	*tsc_khz = 0;
	if (ps->vm[VS_TSC_KHZ].p && c->tsc_khz) {
		uint32_t src = le_get32(ps->vm[VS_TSC_KHZ].p);
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

/* One scope's worth of what the section handlers need. */
struct load_ctx {
	int fd, cpu; /* cpu: -1 for VM scope */
	const struct vmstate_secref *secs; /* ps->vm or ps->cpu[cpu] */
	const struct vmstate_caps *c;
	const struct vmstate_load_opts *o;
	char *err;
	size_t errlen;
};

/* Both passes keep the blob's order; TSC_DEADLINE goes after IA32_TSC, in
 * its own call: "otherwise we risk 'losing' timer interrupts"
 * (Firecracker), and it needs the LAPIC (already set) in TSC-deadline
 * mode. */
static int load_msrs(const struct vmstate_secdesc *d, void *arg)
{
	struct load_ctx *x = arg;
	const uint8_t *msrs = x->secs[d->slot].p;
	uint32_t n = le_get32(msrs), k = 0, nfirst = 0;
	struct kvm_msr_entry *e = calloc(n ? n : 1, sizeof(*e));
	int ret;

	if (!e)
		return -ENOMEM;
	for (int deadline = 0; deadline < 2; deadline++) {
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *p = msrs + MSRS_HDR + 16 * i;

			if ((le_get32(p) == MSR_IA32_TSC_DEADLINE) != deadline)
				continue;
			e[k].index = le_get32(p);
			e[k++].data = le_get64(p + 8);
		}
		if (!deadline)
			nfirst = k;
	}
	ret = vmstate_msr_io(x->fd, KVM_SET_MSRS, "KVM_SET_MSRS", e, nfirst, x->cpu,
			     x->err, x->errlen);
	if (!ret)
		ret = vmstate_msr_io(x->fd, KVM_SET_MSRS, "KVM_SET_MSRS(TSC_DEADLINE)",
				     e + nfirst, k - nfirst, x->cpu, x->err, x->errlen);
	free(e);
	return ret;
}

static int load_xsave(const struct vmstate_secdesc *d, void *arg)
{
	struct load_ctx *x = arg;
	const struct vmstate_secref *s = &x->secs[d->slot];
	/* KVM_SET_XSAVE reads as many bytes as this KVM's XSAVE2 size; a
	 * shorter area from the source is zero-padded. */
	uint8_t *buf = calloc(1, x->c->xsave_size);
	int ret;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, s->p, s->len);
	ret = kvm_ioctl(x->fd, KVM_SET_XSAVE, buf, "KVM_SET_XSAVE", x->cpu, x->err,
			    x->errlen);
	free(buf);
	return ret < 0 ? ret : 0;
}

/* Only the fields KVM_SET_CLOCK reads; never pass on flags the source's
 * kernel returned. Default: kvmclock resumes at the saved value, so guest
 * time continues without a jump. */
static void clock_for_set(struct kvm_clock_data *clk, const struct vmstate_caps *c,
			  const struct vmstate_load_opts *o)
{
	struct kvm_clock_data saved = *clk;

	memset(clk, 0, sizeof(*clk));
	clk->clock = saved.clock;
	if (o->clock_realtime && (saved.flags & KVM_CLOCK_REALTIME) &&
	    (c->clock_flags & KVM_CLOCK_REALTIME)) {
		clk->flags = KVM_CLOCK_REALTIME;
		clk->realtime = saved.realtime;
	}
}

/* A section that is one KVM_SET_* of a fixed-size struct. */
static int load_plain(const struct vmstate_secdesc *d, void *arg)
{
	struct load_ctx *x = arg;
	const struct vmstate_secref *s = &x->secs[d->slot];
	union vmstate_kvm_buf u;
	int ret;

	/* TSC_KHZ has no set ioctl: preflight checks it. */
	if (!d->set || !s->p)
		return 0;
	memcpy(&u, s->p, d->size);
	if (d->set == KVM_SET_CLOCK)
		clock_for_set(&u.clock, x->c, x->o);
	ret = kvm_ioctl(x->fd, d->set, &u, d->set_name, x->cpu, x->err, x->errlen);
	return ret < 0 ? ret : 0;
}

static const struct vmstate_handlers loaders = {
	.plain = load_plain, .xsave = load_xsave, .msrs = load_msrs,
};

static int load_vcpu(struct load_ctx *x, bool scale_tsc, uint32_t tsc_khz,
		     uint32_t flags)
{
	/* CPUID was set by vcpu_create. The frequency must be right before
	 * IA32_TSC is written, or the offset KVM derives is wrong. */
	if (scale_tsc) {
		int ret = kvm_ioctl(x->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)tsc_khz,
					"KVM_SET_TSC_KHZ", x->cpu, x->err, x->errlen);

		if (ret < 0)
			return ret;
	}
	return vmstate_walk(true, flags, &loaders, x);
}

int vmstate_load_opts(struct vm *vm, const uint8_t *blob, size_t len,
		      const struct vmstate_load_opts *opts, char *err,
		      size_t errlen)
{
	static const struct vmstate_load_opts defaults = { .clock_realtime = false };
	struct vmstate_parsed *ps;
	struct vmstate_caps c;
	bool scale_tsc;
	uint32_t tsc_khz;
	struct load_ctx x;
	int ret;

	if (!opts)
		opts = &defaults;
	ps = malloc(sizeof(*ps));
	if (!ps) {
		KVM_ERR(err, errlen, "vmstate_load: out of memory");
		return -ENOMEM;
	}
	ret = vmstate_parse(blob, len, ps, err, errlen);
	if (ret)
		goto out;
	vmstate_probe_caps(vm, &c);
	ret = preflight(vm, ps, &c, &scale_tsc, &tsc_khz, err, errlen);
	if (ret)
		goto out;

	ret = vmstate_check_devices(&vm->devices, ps, err, errlen);
	if (ret)
		goto out;

	/* Devices first, so the interrupt line a device re-drives reaches
	 * KVM's per-source line state before SET_IRQCHIP (last) overwrites
	 * the chips' registers with the saved ones. */
	ret = vmstate_load_devices(&vm->devices, ps, err, errlen);
	if (ret)
		goto out;
	x = (struct load_ctx){ .c = &c, .o = opts, .err = err, .errlen = errlen };
	for (int i = 0; i < vm->ncpus; i++) {
		x.fd = vm->vcpus[i].fd;
		x.cpu = vm->vcpus[i].id;
		x.secs = ps->cpu[i];
		ret = load_vcpu(&x, scale_tsc, tsc_khz, ps->flags);
		if (ret)
			goto out;
	}
	/* VM-level after the vCPUs, before they run: the clock is set after
	 * every IA32_TSC write (QEMU sets it at resume), the irqchips after
	 * the LAPICs (see the section table). */
	x.fd = vm->vm_fd;
	x.cpu = -1;
	x.secs = ps->vm;
	ret = vmstate_walk(false, ps->flags, &loaders, &x);
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
