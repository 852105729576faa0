#include "vmm/core/dirty_ring.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <linux/kvm.h>
#include <stdlib.h>
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
	v->ring_pages = calloc(v->vm->dring_entries, sizeof(*v->ring_pages));
	if (!v->ring_pages) {
		munmap(p, bytes);
		KVM_ERR(err, errlen, "dirty ring of vcpu%d: out of memory", v->id);
		return -ENOMEM;
	}
	v->ring = p;
	v->ring_fetch = v->ring_kr = v->ring_kr_run = 0;
	v->ring_npages = 0;
	return 0;
}

void dring_unmap(struct vcpu *v)
{
	if (!v->ring)
		return;
	munmap(v->ring, (size_t)v->vm->dring_entries * sizeof(struct kvm_dirty_gfn));
	free(v->ring_pages);
	v->ring = NULL;
	v->ring_pages = NULL;
}

const char *dring_loss_name(enum dring_loss l)
{
	switch (l) {
	case DRING_LOSS_NONE:
		return "none";
	case DRING_LOSS_EARLIER:
		return "earlier";
	case DRING_LOSS_FULL:
		return "ring-full";
	case DRING_LOSS_OVERFLOW:
		return "overflow";
	case DRING_LOSS_RESET:
		return "reset-failed";
	}
	return "unknown";
}

static bool entry_dirty(const struct kvm_dirty_gfn *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY;
}

static void entry_reset(struct kvm_dirty_gfn *e)
{
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
}

/* The first reason of the migration is the one the stats give. */
static void tracking_lost(struct vm *vm, enum dring_loss why, bool suspect)
{
	enum dring_loss none = DRING_LOSS_NONE;

	__atomic_compare_exchange_n(&vm->dring_loss, &none, why, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	__atomic_store_n(&vm->dring_lost, true, __ATOMIC_RELEASE);
	if (suspect)
		__atomic_store_n(&vm->dring_suspect, true, __ATOMIC_RELEASE);
}

/* A ring entry names a slot and a page in it; both come from the kernel
 * but are checked like any other index into our bitmap. The page waits
 * in v->ring_pages for publish(). */
static void stash(struct vcpu *v, const struct kvm_dirty_gfn *e)
{
	struct vm *vm = v->vm;
	uint32_t slot = e->slot;
	uint64_t offset = e->offset;

	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_slot *s = &vm->slots[i];
		uint64_t pg;

		if (s->id != (slot & 0xffff) || offset >= s->size / VM_PAGE_SIZE)
			continue;
		pg = s->ram_offset / VM_PAGE_SIZE + offset;
		if (v->ring_npages < vm->dring_entries)
			v->ring_pages[v->ring_npages++] = pg;
		else /* not reached: a collect takes at most a ring's entries */
			vm_page_dirty(vm, pg);
		return;
	}
}

/* A harvested page goes into vmm_dirty only once KVM has re-protected it:
 * a sync takes vmm_dirty and reads the pages without our lock, and a page
 * it read before the reset could be written after the read and before the
 * reset with nothing logged (the write found it still writable). */
static void publish(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		for (uint32_t k = 0; k < v->ring_npages; k++)
			vm_page_dirty(vm, v->ring_pages[k]);
		v->ring_npages = 0;
	}
}

/* KVM stops a vCPU (KVM_EXIT_DIRTY_RING_FULL) once its soft limit (the
 * ring minus 64 minus a PML buffer) is in use, and a correct KVM never
 * has more than the ring's n entries in use past its reset index
 * (ring_kr): exactly full is no overflow. An overflow is an (n+1)-th
 * push, and it lands on the slot of ring_kr. Under nested kvm_pvm the
 * guest runs in KVM's emulator, which checks for the stop only when it
 * leaves its loop, so a vCPU does push on past a full ring, overwriting
 * entries not yet harvested (docs/migration.md, "Dirty tracking"): their
 * pages are lost to tracking.
 *
 * So the test counts from KVM's reset index, not from our cursor: more
 * than n entries seen past ring_kr is an overflow; exactly n is one only
 * when the (n+1)-th is there (ring_kr's slot dirty again after we read
 * it), or when the ring was already full as we read its first entry: an
 * (n+1)-th may then have overwritten that entry before we read it, and
 * entries carry no sequence number that would tell (the safe side). A
 * ring that fills while we read it is exact.
 *
 * min: harvest only when at least that many entries wait (the entry
 * min-1 past our cursor is filled), so a periodic reaper costs one load
 * per vCPU. vm->dring_lock held. */
static uint32_t harvest(struct vcpu *v, uint32_t min)
{
	struct kvm_dirty_gfn *ring = v->ring;
	uint32_t n = v->vm->dring_entries, mask = n - 1, got = 0, seen;
	bool full_first = false;

	if (min > 1 && !entry_dirty(&ring[(v->ring_fetch + min - 1) & mask]))
		return 0;
	while (got < n) {
		struct kvm_dirty_gfn *e = &ring[v->ring_fetch & mask];

		if (!entry_dirty(e))
			break;
		stash(v, e);
		if (!got++) {
			/* The first entry's contents are read before this look. */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			full_first = entry_dirty(&ring[(v->ring_kr + n - 1) & mask]);
		}
		entry_reset(e);
		v->ring_fetch++;
	}
	seen = v->ring_fetch - v->ring_kr;
	if (got && (seen > n || (seen == n && entry_dirty(&ring[v->ring_kr & mask]))))
		tracking_lost(v->vm, DRING_LOSS_OVERFLOW, true);
	else if (got && seen == n && full_first)
		tracking_lost(v->vm, DRING_LOSS_FULL, true);
	return got;
}

/* Where KVM's reset index is on each ring after KVM_RESET_DIRTY_RINGS.
 * done: the last call walked every ring; count: what the calls reset,
 * -1 when unknown (an interrupted call's share is not returned). KVM
 * walks each ring from its index over the entries we marked reset, so no
 * ring gives more than it was marked: a total equal to the sum proves
 * every ring in step, and one ring's count is its own. Otherwise each
 * ring is read: KVM zeroes what it resets and stops at the first entry
 * not marked, and a vCPU pushes into a zeroed entry only after filling
 * the rest of its ring again. A walk that finished short of what we
 * marked met an entry KVM overwrote: an overflow. vm->dring_lock held. */
static void settle(struct vm *vm, bool done, int64_t count)
{
	uint32_t mask = vm->dring_entries - 1;
	int64_t want = 0, sum = 0;
	int owners = 0;
	bool odd = false; /* a ring short of what we marked, or past it */

	for (int i = 0; i < vm->ncpus; i++) {
		const struct vcpu *v = &vm->vcpus[i];

		if (v->ring && v->ring_fetch != v->ring_kr) {
			want += v->ring_fetch - v->ring_kr;
			owners++;
		}
	}
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		uint32_t span = v->ring_fetch - v->ring_kr, c = 0;

		if (!v->ring || !span)
			continue;
		if (done && count == want) {
			c = span;
		} else if (count >= 0 && owners == 1) {
			c = (uint32_t)count;
			/* What KVM has reset is behind us whatever we thought. */
			if (c > span) {
				v->ring_fetch = v->ring_kr + c;
				odd = true;
			}
		} else {
			/* A walk zeroes each slot once: at most a ring. */
			while (c < span && c <= mask &&
			       !__atomic_load_n(&v->ring[(v->ring_kr + c) & mask].flags,
						__ATOMIC_ACQUIRE))
				c++;
		}
		odd |= c < span;
		sum += c;
		__atomic_store_n(&v->ring_kr, v->ring_kr + c, __ATOMIC_RELEASE);
	}
	if (done && (odd || (count >= 0 && count != sum)))
		tracking_lost(vm, DRING_LOSS_OVERFLOW, true);
}

/* Every signal that can be is blocked around the call: a pending one
 * stops the kernel's walk part way, and whether it then says so (-EINTR)
 * or returns what it reset, the last batch it took may stay writable and
 * its pages' next writes unlogged. Only SIGSTOP and SIGKILL get through
 * (docs/migration.md). */
static int reset_ioctl(struct vm *vm)
{
	sigset_t all, old;
	int ret, e;

	if (vm->dring_reset_fn)
		return vm->dring_reset_fn(vm);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret < 0 ? -e : ret;
}

static void note_reset_error(struct vm *vm, int e)
{
	__atomic_fetch_add(&vm->dring_reset_errors, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->dring_reset_errno, e, __ATOMIC_RELAXED);
}

/* Tries of an interrupted KVM_RESET_DIRTY_RINGS; each goes on from where
 * the last stopped. */
#define DRING_RESET_TRIES 8

/* One KVM_RESET_DIRTY_RINGS for all rings (it is VM-wide: KVM walks every
 * vCPU's ring), the bookkeeping, then the pages go public. Since Linux
 * 6.16 (kvm_dirty_ring_reset) a pending signal stops the walk part way
 * (reset_ioctl blocks all it can: a stop or SIGKILL still can): with
 * -EINTR the count of
 * what it reset is lost and, worse, the last batch it took (up to 64
 * entries, reset in the ring but not yet write-protected) stays writable,
 * so those pages' next writes go unlogged. The call is retried for the
 * rest, and the migration's tracking is lost. Any other failure leaves
 * the marked entries to the next reset and their pages writable
 * meanwhile: lost too. Either way the pages are published (they are
 * dirty) after the loss is set. vm->dring_lock held. */
static bool reset_and_publish(struct vm *vm, char *err, size_t errlen)
{
	bool interrupted = false;
	int ret = 0;

	for (int i = 0; i < DRING_RESET_TRIES; i++) {
		ret = reset_ioctl(vm);
		if (ret != -EINTR)
			break;
		interrupted = true;
		note_reset_error(vm, EINTR);
	}
	if (ret < 0 && ret != -EINTR)
		note_reset_error(vm, -ret);
	if (ret < 0)
		KVM_ERR(err, errlen, "KVM_RESET_DIRTY_RINGS: %s; the dirty rings are not trusted",
			strerror(-ret));
	vm->dring_reset_fail_run = ret < 0 ? vm->dring_reset_fail_run + 1 : 0;
	settle(vm, ret >= 0, interrupted || ret < 0 ? -1 : ret);
	if (ret < 0 || interrupted)
		tracking_lost(vm, DRING_LOSS_RESET, false);
	publish(vm);
	return ret >= 0;
}

int64_t dring_collect(struct vm *vm, uint32_t min, char *err, size_t errlen)
{
	bool pending = false;
	int64_t got = 0;

	pthread_mutex_lock(&vm->dring_lock);
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->ring)
			continue;
		got += harvest(v, min);
		/* also what an earlier failed reset left */
		pending |= v->ring_fetch != v->ring_kr;
	}
	if (pending)
		reset_and_publish(vm, err, errlen);
	pthread_mutex_unlock(&vm->dring_lock);
	return got;
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
			stash(v, e);
		entry_reset(e);
	}
	/* Forward only: entries past it that we marked reset stay ours to
	 * count, or one ring's reset could pass for another's in settle(). */
	if ((int32_t)(v->ring_fetch - (v->ring_kr + used)) < 0)
		v->ring_fetch = v->ring_kr + used;
	__atomic_fetch_add(&v->vm->dring_resyncs, 1, __ATOMIC_RELAXED);
	tracking_lost(v->vm, DRING_LOSS_OVERFLOW, true);
}

/* Failed resets in a row after which a vCPU on a full ring gives up. */
#define DRING_RESET_FAIL_MAX 1000u

int dring_full(struct vcpu *v, char *err, size_t errlen)
{
	uint32_t soft, since, fails;

	__atomic_fetch_add(&v->vm->dring_full_exits, 1, __ATOMIC_RELAXED);
	if (!v->ring) {
		KVM_ERR(err, errlen, "KVM_EXIT_DIRTY_RING_FULL on vcpu%d without a ring", v->id);
		return -EPROTO;
	}
	soft = v->vm->dring_entries - DRING_RSVD_MAX; /* entries >= DRING_MIN_ENTRIES */
	pthread_mutex_lock(&v->vm->dring_lock);
	if (harvest(v, 1)) {
		reset_and_publish(v->vm, err, errlen);
		goto out;
	}
	/* Entries a failed reset left: reset them. If KVM takes none of
	 * them, it is stuck on an entry it overwrote: resync as below. */
	if (v->ring_fetch != v->ring_kr) {
		uint32_t kr = v->ring_kr;

		if (!reset_and_publish(v->vm, err, errlen) || v->ring_kr != kr)
			goto out;
	}
	/* Nothing at our cursor. If another thread reset the ring since
	 * this KVM_RUN began, it may have taken what KVM stopped us for: run
	 * again. If not, KVM and we disagree. */
	since = v->ring_kr - v->ring_kr_run;
	if (since < soft) {
		resync(v, soft - since);
		reset_and_publish(v->vm, err, errlen);
	}
out:
	fails = v->vm->dring_reset_fail_run;
	pthread_mutex_unlock(&v->vm->dring_lock);
	/* A failed reset is in the stats and the loss; the vCPU runs on (and
	 * stops again if its ring is still full), but not for ever. */
	if (fails >= DRING_RESET_FAIL_MAX) {
		KVM_ERR(err, errlen, "KVM_RESET_DIRTY_RINGS failed %u times in a row; vcpu%d "
			"cannot run with a full dirty ring", fails, v->id);
		return -EIO;
	}
	return 0;
}
