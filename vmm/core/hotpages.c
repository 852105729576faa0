/* Pages named by the vCPUs' registers (hotpages.h). A register that holds
 * a number, not a pointer, may name a page the guest never touches next:
 * the cost is one page sent early, so the caller bounds the count. */
#include "vmm/core/hotpages.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/core/gwalk.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

/* How far below the stack pointer the first interrupt frame and calls
 * reach. */
#define HOT_STACK_BELOW 256

#define EFER_LMA (1ull << 10)

struct cpu_view {
	struct kvm_regs r;
	struct kvm_sregs s;
};

static int read_gpa(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	return vm_read_guest(ctx, gpa, buf, len);
}

/* The linear addresses of class k (0: stack, 1: code, 2: below the stack,
 * 3: the code's next page, which a straight run of instructions reaches
 * first, 4: the other general registers) for one vCPU; returns how many. */
static int candidates(const struct cpu_view *c, int k, uint64_t *la)
{
	bool flat = (c->s.efer & EFER_LMA) != 0; /* CS/SS bases are ignored */
	uint64_t ss = flat ? 0 : c->s.ss.base, cs = flat ? 0 : c->s.cs.base;
	const struct kvm_regs *r = &c->r;

	switch (k) {
	case 0:
		la[0] = ss + r->rsp;
		return 1;
	case 1:
		la[0] = cs + r->rip;
		return 1;
	case 2:
		la[0] = ss + r->rsp - HOT_STACK_BELOW;
		return 1;
	case 3:
		la[0] = cs + r->rip + VM_PAGE_SIZE;
		return 1;
	default: {
		const uint64_t g[] = { r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp,
				       r->r8,  r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14,
				       r->r15 };

		memcpy(la, g, sizeof(g));
		return (int)(sizeof(g) / sizeof(g[0]));
	}
	}
}

static bool seen(const uint64_t *pages, int n, uint64_t p)
{
	for (int i = 0; i < n; i++)
		if (pages[i] == p)
			return true;
	return false;
}

int hotpages_find(struct vm *vm, uint64_t *pages, int max, char *err, size_t errlen)
{
	struct cpu_view *cv = calloc((size_t)vm->ncpus, sizeof(*cv));
	int n = 0, ret = 0;

	if (!cv) {
		snprintf(err, errlen, "calloc(vCPU registers): out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < vm->ncpus && !ret; i++) {
		struct vcpu *v = &vm->vcpus[i];

		ret = kvm_ioctl(v->fd, KVM_GET_REGS, &cv[i].r, "KVM_GET_REGS", v->id, err, errlen);
		if (ret >= 0)
			ret = kvm_ioctl(v->fd, KVM_GET_SREGS, &cv[i].s, "KVM_GET_SREGS", v->id, err,
					errlen);
		ret = ret < 0 ? ret : 0;
	}
	for (int k = 0; k <= 4 && !ret && n < max; k++)
		for (int i = 0; i < vm->ncpus && n < max; i++) {
			struct gwalk_mode m = { cv[i].s.cr0, cv[i].s.cr3, cv[i].s.cr4, cv[i].s.efer };
			uint64_t la[16];
			int nla = candidates(&cv[i], k, la);

			for (int j = 0; j < nla && n < max; j++) {
				uint64_t gpa, page;
				uint8_t *hva;

				if (gwalk_translate(&m, read_gpa, vm, la[j], &gpa))
					continue;
				hva = vm_gpa_to_hva(vm, gpa, 1);
				if (!hva)
					continue;
				page = (uint64_t)(hva - vm->ram) / VM_PAGE_SIZE;
				if (!seen(pages, n, page))
					pages[n++] = page;
			}
		}
	free(cv);
	return ret ? ret : n;
}
