/* One vCPU: its KVM fd, the shared kvm_run page and the thread that runs it. */
#ifndef MINIVMM_VCPU_H
#define MINIVMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	/* --dirty-tracking ring (vmm/core/dirty_ring.c) */
	struct kvm_dirty_gfn *ring;
	uint32_t ring_fetch;   /* the next entry to harvest, free running */
	uint32_t ring_kr;      /* KVM's reset index, followed (vm->dring_lock) */
	uint32_t ring_kr_run;  /* ring_kr when this thread last entered KVM_RUN */
	/* Pages harvested, published into vm->vmm_dirty only once KVM has
	 * re-protected them (dring_collect): ring entries, at most. */
	uint64_t *ring_pages;
	uint32_t ring_npages;
};

/* Creates the vCPU and gives it CPUID (from the supported table, with its
 * APIC id patched in) and the reset-time LAPIC wiring. */
int vcpu_create(struct vm *vm, struct vcpu *v, int id,
		const struct kvm_cpuid2 *cpuid, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);

/* Multiboot entry state: flat 32-bit protected mode, paging off. */
int vcpu_set_multiboot_entry(struct vcpu *v, uint32_t eip, uint32_t ebx,
			     char *err, size_t errlen);

int vcpu_start_thread(struct vcpu *v, char *err, size_t errlen);
/* Interrupts KVM_RUN so the thread notices a pause or stop request. */
void vcpu_kick(struct vcpu *v);
/* Writes general and segment registers to f (after a fatal exit). */
void vcpu_dump(struct vcpu *v, int fd);

#endif
