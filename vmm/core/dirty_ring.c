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
	v->ring_fetch = v->ring_kr = v->ring_kr_run = 0;
	return 0;
}

void dring_unmap(struct vcpu *v)
{
	if (!v->ring)
		return;
	munmap(v->ring, (size_t)v->vm->dring_entries * sizeof(struct kvm_dirty_gfn));
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

static bool entry_dirty(const struct kvm_dirty_gfn *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY;
}

static void entry_reset(struct kvm_dirty_gfn *e)
{
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
}

static void tracking_lost(struct vm *vm)
{
	__atomic_store_n(&vm->dring_lost, true, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->dring_suspect, true, __ATOMIC_RELEASE);
}

/* KVM is meant to stop a vCPU (KVM_EXIT_DIRTY_RING_FULL) while its ring
 * still has room; under nested kvm_pvm the guest runs in KVM's emulator,
 * which checks for the stop only when it leaves its loop, so a vCPU
 * pushes on past a full ring, overwriting entries not yet harvested
 * (docs/migration.md, "Dirty tracking"). A harvest that finds every
 * entry dirty has seen that happen: the pages of the overwritten entries
 * are lost to tracking.
 *
 * min: harvest only when at least that many entries wait (the entry
 * min-1 past our cursor is filled), so a periodic reaper costs one load
 * per vCPU. vm->dring_lock held. */
static uint32_t harvest(struct vcpu *v, uint32_t min)
{
	uint32_t n = v->vm->dring_entries, got = 0;

	if (min > 1 && !entry_dirty(&v->ring[(v->ring_fetch + min - 1) & (n - 1)]))
		return 0;
	for (; got < n; got++) {
		struct kvm_dirty_gfn *e = &v->ring[v->ring_fetch & (n - 1)];

		if (!entry_dirty(e))
			break;
		mark(v->vm, e->slot, e->offset);
		entry_reset(e);
		v->ring_fetch++;
	}
	if (got == n)
		tracking_lost(v->vm);
	return got;
}

/* KVM_RESET_DIRTY_RINGS with only v's ring holding reset entries
 * (vm->dring_lock held, and every harvest ends with a reset): the count
 * it returns is v's, so ring_kr follows KVM's reset index exactly. KVM
 * stopping short of our cursor means it overwrote an entry we had taken
 * before it reset it: its view and ours differ from here on. */
static int reset(struct vcpu *v, char *err, size_t errlen)
{
	int ret = ioctl(v->vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);

	if (ret < 0) {
		int e = errno;

		KVM_ERR(err, errlen, "KVM_RESET_DIRTY_RINGS: %s", strerror(e));
		return -e;
	}
	__atomic_store_n(&v->ring_kr, v->ring_kr + (uint32_t)ret, __ATOMIC_RELEASE);
	if (v->ring_kr != v->ring_fetch)
		tracking_lost(v->vm);
	/* What KVM has reset is behind us whatever we thought. */
	if ((int32_t)(v->ring_kr - v->ring_fetch) > 0)
		v->ring_fetch = v->ring_kr;
	return 0;
}

int64_t dring_collect(struct vm *vm, uint32_t min, char *err, size_t errlen)
{
	int64_t got = 0;
	int ret = 0;

	pthread_mutex_lock(&vm->dring_lock);
	for (int i = 0; i < vm->ncpus && !ret; i++) {
		struct vcpu *v = &vm->vcpus[i];
		uint32_t n;

		if (!v->ring || !(n = harvest(v, min)))
			continue;
		got += n;
		ret = reset(v, err, errlen);
	}
	pthread_mutex_unlock(&vm->dring_lock);
	return ret ? ret : got;
}

/* KVM's soft limit is the ring minus 64 entries minus a PML buffer at
 * most (512): this many entries past its reset index are surely in use
 * when it stops a vCPU on a full ring. */
#define DRING_RSVD_MAX 576u

/* After an overflow KVM's reset index can sit on an entry it has already
 * reset under an earlier index (the slot was overwritten, we took it, KVM
 * reset it as the older one): an empty slot KVM still counts as in use,
 * and the vCPU exits on a full ring forever while we find nothing to
 * harvest. KVM stopped the vCPU with at least its soft limit in use past
 * its reset index; only this thread pushes to the ring, and resets since
 * this KVM_RUN began moved the index by what dring_full subtracts: the
 * `used` entries from ring_kr on are still in use, and resetting them
 * cannot move KVM past its own write index. Dirty ones are harvested
 * first; the empty ones are those KVM still counts. */
static void resync(struct vcpu *v, uint32_t used)
{
	uint32_t n = v->vm->dring_entries;

	for (uint32_t i = 0; i < used; i++) {
		struct kvm_dirty_gfn *e = &v->ring[(v->ring_kr + i) & (n - 1)];

		if (entry_dirty(e))
			mark(v->vm, e->slot, e->offset);
		entry_reset(e);
	}
	v->ring_fetch = v->ring_kr + used;
	__atomic_fetch_add(&v->vm->dring_resyncs, 1, __ATOMIC_RELAXED);
	tracking_lost(v->vm);
}

int dring_full(struct vcpu *v, char *err, size_t errlen)
{
	uint32_t soft, since;
	int ret = 0;

	__atomic_fetch_add(&v->vm->dring_full_exits, 1, __ATOMIC_RELAXED);
	if (!v->ring) {
		KVM_ERR(err, errlen, "KVM_EXIT_DIRTY_RING_FULL on vcpu%d without a ring", v->id);
		return -EPROTO;
	}
	soft = v->vm->dring_entries - DRING_RSVD_MAX; /* entries >= DRING_MIN_ENTRIES */
	pthread_mutex_lock(&v->vm->dring_lock);
	if (harvest(v, 1)) {
		ret = reset(v, err, errlen);
	} else {
		/* Nothing at our cursor. If another thread reset the ring
		 * since this KVM_RUN began, it may have taken what KVM
		 * stopped us for: run again. If not, KVM and we disagree. */
		since = v->ring_kr - v->ring_kr_run;
		if (since < soft) {
			resync(v, soft - since);
			ret = reset(v, err, errlen);
		}
	}
	pthread_mutex_unlock(&v->vm->dring_lock);
	return ret;
}
