/* Saving a paused VM's machine state into a vmstate blob, in Firecracker's
 * order: devices, VM-level KVM state, then every vCPU (the per-section
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

static bool vm_quiescent(struct vm *vm)
{
	bool ok;

	pthread_mutex_lock(&vm->lock);
	ok = vm->threads == 0 || (vm->pause_count > 0 && vm->parked == vm->threads);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

/* One scope's worth of what the section handlers need. */
struct save_ctx {
	int fd, cpu;	/* cpu: -1 for VM scope */
	uint32_t scope; /* the section header's vcpu field */
	const struct vmstate_caps *c;
	const struct kvm_msr_entry *msrlist;
	uint32_t nmsrs;
	struct vmstate_wbuf *b;
	char *err;
	size_t errlen;
};

/* A section that is one KVM_GET_* of a fixed-size struct. */
static int save_plain(const struct vmstate_secdesc *d, void *arg)
{
	struct save_ctx *x = arg;
	union vmstate_kvm_buf u;
	int ret;

	if (!d->get)
		return 0; /* TSC_KHZ: its own code */
	memset(&u, 0, sizeof(u));
	if (d->get == KVM_GET_IRQCHIP)
		u.ic.chip_id = d->chip;
	ret = kvm_ioctl(x->fd, d->get, &u, d->get_name, x->cpu, x->err, x->errlen);
	if (ret < 0)
		return ret;
	return vmstate_wb_put(x->b, d->type, x->scope, &u, d->size);
}

static int save_xsave(const struct vmstate_secdesc *d, void *arg)
{
	struct save_ctx *x = arg;
	bool x2 = x->c->xsave2;
	uint8_t *buf = calloc(1, x->c->xsave_size);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = kvm_ioctl(x->fd, x2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf,
			    x2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", x->cpu, x->err, x->errlen);
	if (ret >= 0)
		ret = vmstate_wb_put(x->b, d->type, x->scope, buf, x->c->xsave_size);
	free(buf);
	return ret;
}

static int save_msrs(const struct vmstate_secdesc *d, void *arg)
{
	struct save_ctx *x = arg;
	uint32_t n = x->nmsrs;
	struct kvm_msr_entry *e = malloc((n ? n : 1) * sizeof(*e));
	uint8_t *buf = malloc(MSRS_HDR + (size_t)n * 16);
	int ret;

	if (!e || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(e, x->msrlist, n * sizeof(*e));
	ret = vmstate_msr_io(x->fd, KVM_GET_MSRS, "KVM_GET_MSRS", e, n, x->cpu, x->err,
			     x->errlen);
	if (ret)
		goto out;
	le_put32(buf, n);
	le_put32(buf + 4, 0);
	for (uint32_t i = 0; i < n; i++) {
		le_put32(buf + MSRS_HDR + 16 * i, e[i].index);
		le_put32(buf + MSRS_HDR + 16 * i + 4, 0);
		le_put64(buf + MSRS_HDR + 16 * i + 8, e[i].data);
	}
	ret = vmstate_wb_put(x->b, d->type, x->scope, buf, MSRS_HDR + (size_t)n * 16);
out:
	free(e);
	free(buf);
	return ret;
}

static const struct vmstate_handlers savers = {
	.plain = save_plain, .xsave = save_xsave, .msrs = save_msrs,
};

static int save_tsc_khz(struct vm *vm, const struct vmstate_caps *c,
			struct vmstate_wbuf *b)
{
	int khz = c->tsc_khz ? ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0) : 0;
	uint8_t le[4];

	if (khz <= 0)
		return 0;
	le_put32(le, (uint32_t)khz);
	return vmstate_wb_put(b, VMSTATE_SEC_TSC_KHZ, VMSTATE_VM_SCOPE, le, 4);
}

int vmstate_save(struct vm *vm, uint8_t **out, size_t *outlen, char *err,
		 size_t errlen)
{
	struct vmstate_wbuf b = { 0 };
	struct kvm_msr_entry *msrs = NULL;
	uint32_t nmsrs = 0;
	struct vmstate_caps c;
	struct save_ctx x;
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
	vmstate_probe_caps(vm, &c);
	ret = vmstate_msr_list(vm, &msrs, &nmsrs, err, errlen);
	if (ret)
		goto fail;
	ret = vmstate_wb_init(&b);
	if (ret)
		goto fail;
	/* Devices first: saving a device may raise an interrupt, which must
	 * then be in the irqchip/LAPIC state read below (Firecracker). */
	ret = vmstate_save_devices(&vm->devices, &b, err, errlen);
	if (ret)
		goto fail;
	x = (struct save_ctx){ .fd = vm->vm_fd, .cpu = -1, .scope = VMSTATE_VM_SCOPE,
			       .c = &c, .msrlist = msrs, .nmsrs = nmsrs, .b = &b,
			       .err = err, .errlen = errlen };
	ret = vmstate_walk(false, c.flags, &savers, &x);
	if (!ret)
		ret = save_tsc_khz(vm, &c, &b);
	for (int i = 0; i < vm->ncpus && !ret; i++) {
		x.fd = vm->vcpus[i].fd;
		x.cpu = vm->vcpus[i].id;
		x.scope = (uint32_t)vm->vcpus[i].id;
		ret = vmstate_walk(true, c.flags, &savers, &x);
	}
	if (ret)
		goto fail;
	vmstate_wb_finish(&b, (uint32_t)vm->ncpus, vm->ram_size, c.flags);
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
