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

/* Why a migration stopped trusting the rings (vm->dring_loss). */
enum dring_loss {
	DRING_LOSS_NONE,
	DRING_LOSS_EARLIER,  /* an earlier migration of this VM saw an overflow */
	DRING_LOSS_FULL,     /* a ring was full when read: KVM may have pushed past it */
	DRING_LOSS_OVERFLOW, /* KVM pushed past a full ring, overwriting entries */
	DRING_LOSS_RESET,    /* KVM_RESET_DIRTY_RINGS failed or was interrupted */
};
const char *dring_loss_name(enum dring_loss l);

/* On a VM without vCPUs yet (KVM's rule): entries per vCPU, a power of
 * two that KVM accepts. */
int dring_enable(struct vm *vm, uint32_t entries, char *err, size_t errlen);
/* Maps the ring of a just created vCPU (no-op without a ring). */
int dring_map(struct vcpu *v, char *err, size_t errlen);
void dring_unmap(struct vcpu *v);
/* Takes the dirty entries of every ring that holds at least min of them,
 * has KVM re-protect them (one KVM_RESET_DIRTY_RINGS for all rings), and
 * only then puts their pages into vm->vmm_dirty. Returns the pages
 * harvested. Safe while vCPUs run. A ring that overflowed sets
 * vm->dring_lost (and vm->dring_suspect); a reset that failed sets
 * vm->dring_lost, counts in vm->dring_reset_errors and says why in err,
 * and does not fail the collect: the rings are simply not trusted. */
int64_t dring_collect(struct vm *vm, uint32_t min, char *err, size_t errlen);
/* KVM_EXIT_DIRTY_RING_FULL on v's thread: harvest, reset, run on; after
 * an overflow, puts KVM's reset index back where the vCPU can run.
 * -errno when v has no ring or the reset has failed many times in a row. */
int dring_full(struct vcpu *v, char *err, size_t errlen);

#endif
