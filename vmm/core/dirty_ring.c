#include "vmm/core/dirty_ring.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/core/kvm.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

int dring_enable(struct vm *vm, uint32_t entries, char *err, size_t errlen)
{
	uint64_t bytes = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
	struct kvm_enable_cap c = { 0 };
	int max;

	if (!entries || (entries & (entries - 1))) {
		KVM_ERR(err, errlen, "dirty ring size %u: must be a power of two", entries);
		return -EINVAL;
	}
	/* ACQ_REL is the same ring with the ordering rules spelled out; we
	 * follow them either way (acquire the flags, release the reset). */
	c.cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, c.cap);
	if (max <= 0) {
		c.cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, c.cap);
	}
	if (max <= 0) {
		KVM_ERR(err, errlen, "--dirty-tracking ring: this KVM has no dirty ring "
			"(KVM_CAP_DIRTY_LOG_RING)");
		return -EOPNOTSUPP;
	}
	/* Smaller rings than DRING_MIN_ENTRIES fill between the reaper's
	 * passes, and a full ring is where nested kvm_pvm goes wrong
	 * (docs/migration.md, "Dirty tracking"). */
	if (bytes > (uint64_t)max || entries < DRING_MIN_ENTRIES) {
		KVM_ERR(err, errlen, "dirty ring size %u: minivmm takes %u to %zu entries here",
			entries, DRING_MIN_ENTRIES, (size_t)max / sizeof(struct kvm_dirty_gfn));
		return -EINVAL;
	}
	c.args[0] = bytes;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &c) < 0) {
		int e = errno;

		KVM_ERR(err, errlen, "KVM_ENABLE_CAP(dirty ring, %u entries): %s", entries,
			strerror(e));
		return -e;
	}
	vm->dring_entries = entries;
	return 0;
}

int dring_map(struct vcpu *v, char *err, size_t errlen)
{
	size_t bytes = (size_t)v->vm->dring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (!v->vm->dring_entries)
		return 0;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
		 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
	if (p == MAP_FAILED) {
		int e = errno;

		KVM_ERR(err, errlen, "mmap(dirty ring of vcpu%d): %s", v->id, strerror(e));
		return -e;
	}
	v->ring = p;
	v->ring_fetch = 0;
	pthread_mutex_init(&v->ring_lock, NULL);
	return 0;
}

void dring_unmap(struct vcpu *v)
{
	if (!v->ring)
		return;
	munmap(v->ring, (size_t)v->vm->dring_entries * sizeof(struct kvm_dirty_gfn));
	pthread_mutex_destroy(&v->ring_lock);
	v->ring = NULL;
}

/* A ring entry names a slot and a page in it; both come from the kernel
 * but are checked like any other index into our bitmap. */
static void mark(struct vm *vm, uint32_t slot, uint64_t offset)
{
	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_slot *s = &vm->slots[i];
		uint64_t pg;

		if (s->id != (slot & 0xffff) || offset >= s->size / VM_PAGE_SIZE)
			continue;
		pg = s->ram_offset / VM_PAGE_SIZE + offset;
		vm_page_dirty(vm, pg);
		return;
	}
}

/* KVM is meant to stop a vCPU (KVM_EXIT_DIRTY_RING_FULL) while its ring
 * still has room; under nested kvm_pvm it has been seen to push on past
 * a full ring (a WARN in kvm_dirty_ring_push), overwriting entries and
 * leaving ours out of step with its own. A ring found full, or a full
 * exit with nothing to harvest, marks the tracking as lost (migration
 * must not trust it) and is rescanned whole so the vCPU can run on. */
static uint32_t rescan(struct vcpu *v)
{
	uint32_t n = v->vm->dring_entries, got = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct kvm_dirty_gfn *e = &v->ring[(v->ring_fetch + i) & (n - 1)];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			continue;
		mark(v->vm, e->slot, e->offset);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		got++;
	}
	return got;
}

/* min: harvest only when at least that many entries wait (the entry
 * min-1 past our cursor is filled), so a periodic reaper costs one load
 * per vCPU. */
static uint32_t harvest(struct vcpu *v, uint32_t min)
{
	uint32_t n = v->vm->dring_entries, got = 0;

	pthread_mutex_lock(&v->ring_lock);
	if (min > 1 && !(__atomic_load_n(&v->ring[(v->ring_fetch + min - 1) & (n - 1)].flags,
					 __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY)) {
		pthread_mutex_unlock(&v->ring_lock);
		return 0;
	}
	for (; got < n; got++) {
		struct kvm_dirty_gfn *e = &v->ring[v->ring_fetch & (n - 1)];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			break;
		mark(v->vm, e->slot, e->offset);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		v->ring_fetch++;
	}
	if (got == n)
		__atomic_store_n(&v->vm->dring_lost, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&v->ring_lock);
	return got;
}

static int reset(struct vm *vm, char *err, size_t errlen)
{
	int ret = ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);

	if (ret < 0) {
		int e = errno;

		KVM_ERR(err, errlen, "KVM_RESET_DIRTY_RINGS: %s", strerror(e));
		return -e;
	}
	return 0;
}

int64_t dring_collect(struct vm *vm, uint32_t min, char *err, size_t errlen)
{
	int64_t got = 0;
	int ret;

	for (int i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].ring)
			got += harvest(&vm->vcpus[i], min);
	if (!got)
		return 0;
	ret = reset(vm, err, errlen);
	return ret ? ret : got;
}

int dring_full(struct vcpu *v, char *err, size_t errlen)
{
	__atomic_fetch_add(&v->vm->dring_full_exits, 1, __ATOMIC_RELAXED);
	if (!v->ring) {
		KVM_ERR(err, errlen, "KVM_EXIT_DIRTY_RING_FULL on vcpu%d without a ring", v->id);
		return -EPROTO;
	}
	if (!harvest(v, 1)) {
		pthread_mutex_lock(&v->ring_lock);
		rescan(v);
		pthread_mutex_unlock(&v->ring_lock);
		__atomic_store_n(&v->vm->dring_lost, true, __ATOMIC_RELEASE);
	}
	return reset(v->vm, err, errlen);
}
