/* KVM's per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]): instead
 * of a bitmap per slot that a sync copies out whole, each vCPU pushes the
 * pages it dirties into a ring shared with us. Harvesting costs what was
 * dirtied, not what RAM is. Harvested pages land in vm->vmm_dirty, the
 * bitmap migration already drains each round. */
#ifndef VMM_CORE_DIRTY_RING_H
#define VMM_CORE_DIRTY_RING_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

#define DRING_DEFAULT_ENTRIES 4096u
#define DRING_MIN_ENTRIES 4096u

/* On a VM without vCPUs yet (KVM's rule): entries per vCPU, a power of
 * two that KVM accepts. */
int dring_enable(struct vm *vm, uint32_t entries, char *err, size_t errlen);
/* Maps the ring of a just created vCPU (no-op without a ring). */
int dring_map(struct vcpu *v, char *err, size_t errlen);
void dring_unmap(struct vcpu *v);
/* Moves the dirty entries of every ring that holds at least min of them
 * into vm->vmm_dirty and has KVM re-protect them (KVM_RESET_DIRTY_RINGS).
 * Returns the pages harvested or -errno. Safe while vCPUs run. A ring
 * that overflowed sets vm->dring_lost (and vm->dring_suspect). */
int64_t dring_collect(struct vm *vm, uint32_t min, char *err, size_t errlen);
/* KVM_EXIT_DIRTY_RING_FULL on v's thread: harvest, reset, run on; after
 * an overflow, puts KVM's reset index back where the vCPU can run. */
int dring_full(struct vcpu *v, char *err, size_t errlen);

#endif
