/* Dirty tracking for pre-copy: KVM's per-slot dirty log (or, with
 * --dirty-tracking ring, what the vCPUs' rings hold) ORed with the
 * pages the VMM wrote itself (vm->vmm_dirty), into one bitmap indexed by
 * RAM page. With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_GET_DIRTY_LOG only
 * reads the log; each range is re-protected (KVM_CLEAR_DIRTY_LOG) right
 * before its pages are read, so a write after the clear is caught by the
 * next round, and pages dirtied between GET and send are not sent twice. */
#include "migrate/ram/ram.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/dirty_int.h"
#include "vmm/core/dirty_ring.h"
#include "vmm/core/kvm.h"

/* Test hook (docs/migration.md, "Test hooks"): MINIVMM_TEST_DRING_REAP_MS=N
 * makes the reaper harvest every N ms whatever the fill, N=0 never, so
 * rings fill between syncs and the vCPUs take KVM_EXIT_DIRTY_RING_FULL.
 * Unset or malformed: 0 (the normal reaper). */
static int test_reap_ms(void)
{
	const char *v = getenv("MINIVMM_TEST_DRING_REAP_MS");
	char *end;
	long ms;

	if (!v || !*v)
		return 0;
	ms = strtol(v, &end, 10);
	if (*end || ms < 0 || ms > 600000)
		return 0;
	return ms ? (int)ms : -1;
}

/* Between syncs a round can last seconds; KVM's exit on a full ring comes
 * late here (dirty_ring.c), so rings are emptied whenever a quarter full. */
static void *reaper(void *arg)
{
	struct ram_dirty *d = arg;
	struct timespec ts = { 0, 1000000 };
	uint32_t min = d->reaper_vm->dring_entries / 4;
	int waited = 0;
	char err[128];

	if (d->reap_ms)
		min = 1;
	while (!__atomic_load_n(&d->reaper_stop, __ATOMIC_ACQUIRE)) {
		if (!d->reap_ms || (d->reap_ms > 0 && ++waited >= d->reap_ms)) {
			dring_collect(d->reaper_vm, min, err, sizeof(err));
			waited = 0;
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void take_words(struct vm *vm, uint64_t *bm, size_t from, size_t to)
{
	for (size_t w = from; w < to; w++)
		if (__atomic_load_n(&vm->vmm_dirty[w], __ATOMIC_RELAXED)) {
			uint64_t v = __atomic_exchange_n(&vm->vmm_dirty[w], 0, __ATOMIC_ACQ_REL);

			if (bm)
				bm[w] |= v;
		}
}

/* vmm_dirty into bm (NULL: dropped), visiting only the groups its
 * summary marks: the whole bitmap is 2 MiB per 64 GiB of guest. */
static void take_vmm_dirty(struct vm *vm, uint64_t *bm, size_t nwords)
{
	size_t wpg = VM_DIRTY_GROUP_PAGES / 64, ngroups = (nwords + wpg - 1) / wpg;

	if (!vm->vmm_dirty_sum) {
		take_words(vm, bm, 0, nwords);
		return;
	}
	for (size_t sw = 0; sw < (ngroups + 63) / 64; sw++) {
		uint64_t s = __atomic_load_n(&vm->vmm_dirty_sum[sw], __ATOMIC_RELAXED);

		if (s)
			s = __atomic_exchange_n(&vm->vmm_dirty_sum[sw], 0, __ATOMIC_ACQ_REL);
		while (s) {
			size_t g = sw * 64 + (size_t)__builtin_ctzll(s);

			s &= s - 1;
			take_words(vm, bm, g * wpg, (g + 1) * wpg < nwords ? (g + 1) * wpg : nwords);
		}
	}
}

void ram_dirty_init(struct ram_dirty *d, uint64_t npages)
{
	memset(d, 0, sizeof(*d));
	d->npages = npages;
	resident_init(&d->res, RESIDENT_AUTO);
	resident_init(&d->scratch, RESIDENT_AUTO);
	d->res_on = true;
}

int ram_dirty_scan(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	d->res.n = 0;
	return resident_scan(&d->res, vm->ram, 0, d->npages, err, errlen);
}

/* Initially-set needs the per-sync look for pages populated since
 * (dirty_trust.c) to be cheap: PAGEMAP_SCAN, not a byte per page. */
static bool want_init_set(struct vm *vm, struct ram_dirty *d, int caps)
{
	return (caps & KVM_DIRTY_LOG_INITIALLY_SET) && resident_probe(&d->res, vm->ram);
}

int ram_dirty_start(struct vm *vm, struct ram_dirty *d, bool try_manual,
		    char *err, size_t errlen)
{
	int ret, caps;

	ram_dirty_init(d, vm->ram_size / VM_PAGE_SIZE);
	/* The VM's own, populated when it was made (vm.h): zeroing 2 MiB
	 * per 64 GiB costs less than faulting it in. Slots start on a
	 * 64-page boundary (vm_layout_slots): their logs line up with it. */
	if (!vm->mig_bm || !vm->mig_log || vm->bm_bytes < (bm_words(d->npages) + 1) * 8) {
		snprintf(err, errlen, "dirty bitmap: the VM has none");
		ret = -EINVAL;
		goto fail;
	}
	d->bm = vm->mig_bm;
	memset(d->bm, 0, vm->bm_bytes);
	for (int i = 0; i < vm->nslots; i++)
		d->slot_log[i] = vm->mig_log + vm->slots[i].ram_offset / VM_PAGE_SIZE / 64;
	caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	d->ring = vm->dring_entries != 0;
	/* A ring VM has no per-slot log to protect by hand. */
	if (!d->ring && try_manual && caps > 0 && (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
		bool init_set = want_init_set(vm, d, caps);
		struct kvm_enable_cap c = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
				  (init_set ? KVM_DIRTY_LOG_INITIALLY_SET : 0) },
		};

		/* Without initially-set, turning logging on write-protects
		 * every page of every slot: a walk over the whole slot however
		 * little is populated (docs/migration.md, "Cost independent
		 * of size"). */
		d->manual = ioctl(vm->vm_fd, KVM_ENABLE_CAP, &c) == 0;
		d->init_set = d->manual && init_set;
	}
	/* Drop what the VMM wrote (and a ring held) before: round 0 sends
	 * every page. */
	if (d->ring)
		dring_collect(vm, 1, err, errlen); /* a failed reset only loses trust */
	take_vmm_dirty(vm, NULL, bm_words(d->npages));
	/* Counted per migration: the rings fill only while logging is on.
	 * A VM whose ring once overflowed is never trusted again. */
	{
		bool suspect = __atomic_load_n(&vm->dring_suspect, __ATOMIC_ACQUIRE);

		__atomic_store_n(&vm->dring_loss, suspect ? DRING_LOSS_EARLIER : DRING_LOSS_NONE,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&vm->dring_lost, suspect, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&vm->dring_full_exits, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->dring_resyncs, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->dring_reset_errors, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->dring_reset_errno, 0, __ATOMIC_RELAXED);
	ret = vm_set_dirty_logging(vm, true, err, errlen);
	if (ret)
		goto fail;
	d->logging = true;
	ret = ram_dirty_scan(vm, d, err, errlen);
	if (ret)
		goto fail;
	if (d->ring) {
		d->reaper_vm = vm;
		d->reap_ms = test_reap_ms();
		ret = pthread_create(&d->reaper, NULL, reaper, d);
		if (ret) {
			snprintf(err, errlen, "dirty ring reaper thread: %s", strerror(ret));
			ret = -ret;
			goto fail;
		}
		d->reaping = true;
	}
	return 0;
fail:
	ram_dirty_stop(vm, d);
	return ret;
}

/* Every page populated now: the only ones anybody can have written. */
static int mark_populated(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	int ret;

	d->scratch.n = 0;
	ret = resident_scan(&d->scratch, vm->ram, 0, d->npages, err, errlen);
	if (ret)
		return ret;
	for (size_t i = 0; i < d->scratch.n; i++)
		bm_set_range(d->bm, d->scratch.r[i].first, d->scratch.r[i].count);
	d->ring_resends++;
	return 0;
}

/* The rings hold what the vCPUs dirtied since the last harvest; pages
 * the reaper took meanwhile are in vmm_dirty already. Once a ring has
 * overflowed, the pages of the entries KVM overwrote are unknown, and so
 * is what KVM's view of the ring hides afterwards: every sync of the
 * migration, the final one in the pause included, then sends every
 * populated page again. Slow, but the guest moves whole. */
static int sync_rings(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	dring_collect(vm, 1, err, errlen);
	if (__atomic_load_n(&vm->dring_lost, __ATOMIC_ACQUIRE))
		return mark_populated(vm, d, err, errlen);
	return 0;
}

int ram_dirty_get_log(struct vm *vm, struct ram_dirty *d, int i, char *err, size_t errlen)
{
	struct kvm_dirty_log log = { .slot = vm->slots[i].id, .dirty_bitmap = d->slot_log[i] };
	char what[48];
	int ret;

	snprintf(what, sizeof(what), "KVM_GET_DIRTY_LOG slot %u", vm->slots[i].id);
	ret = kvm_ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log, what, -1, err, errlen);
	return ret < 0 ? ret : 0;
}

static int get_logs(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	for (int i = 0; i < vm->nslots; i++) {
		int ret = ram_dirty_get_log(vm, d, i, err, errlen);

		if (ret)
			return ret;
	}
	return 0;
}

static int sync_slots(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	int ret = get_logs(vm, d, err, errlen);

	if (ret)
		return ret;
	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_slot *s = &vm->slots[i];
		uint64_t first = s->ram_offset / VM_PAGE_SIZE, n = s->size / VM_PAGE_SIZE;
		const uint64_t *log = d->slot_log[i];

		/* Slots start on a 64-page boundary (vm_layout_slots), so the
		 * slot's words line up with the RAM bitmap's. */
		for (size_t w = 0; w < bm_words(n); w++)
			if (log[w])
				d->bm[first / 64 + w] |= log[w];
		if (d->written)
			memcpy(d->written + first / 64, log, bm_words(n) * sizeof(*log));
	}
	return 0;
}

int ram_dirty_sync(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	int ret;

	if (d->written)
		memset(d->written, 0, bm_words(d->npages) * sizeof(*d->written));
	ret = d->ring ? sync_rings(vm, d, err, errlen) :
		  d->init_set ? ram_dirty_sync_trusted(vm, d, err, errlen) :
		  sync_slots(vm, d, err, errlen);

	if (ret)
		return ret;
	take_vmm_dirty(vm, d->bm, bm_words(d->npages));
	return 0;
}

int ram_dirty_clear_bits(struct vm *vm, struct ram_dirty *d, uint64_t first, uint64_t n,
			 const uint64_t *bits, char *err, size_t errlen)
{
	if (!d->manual)
		return 0;
	for (int i = 0; i < vm->nslots; i++) {
		const struct vm_slot *s = &vm->slots[i];
		uint64_t sfirst = s->ram_offset / VM_PAGE_SIZE, sn = s->size / VM_PAGE_SIZE;
		uint64_t lo = first > sfirst ? first : sfirst;
		uint64_t hi = first + n < sfirst + sn ? first + n : sfirst + sn;
		struct kvm_clear_dirty_log c;
		char what[80];
		int ret;

		if (lo >= hi)
			continue;
		c = (struct kvm_clear_dirty_log){
			.slot = s->id,
			.first_page = lo - sfirst,
			.num_pages = (uint32_t)(hi - lo),
			.dirty_bitmap = (void *)&bits[(lo - first) / 64],
		};
		snprintf(what, sizeof(what), "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%u", s->id,
			 (unsigned long long)c.first_page, c.num_pages);
		ret = kvm_ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c, what, -1, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int ram_dirty_clear(struct vm *vm, struct ram_dirty *d, uint64_t first,
		    uint64_t n, char *err, size_t errlen)
{
	return ram_dirty_clear_bits(vm, d, first, n, &d->bm[first / 64], err, errlen);
}

void ram_dirty_stop(struct vm *vm, struct ram_dirty *d)
{
	char err[128];

	if (d->reaping) {
		__atomic_store_n(&d->reaper_stop, true, __ATOMIC_RELEASE);
		pthread_join(d->reaper, NULL);
		d->reaping = false;
	}
	if (d->logging)
		vm_set_dirty_logging(vm, false, err, sizeof(err));
	d->logging = false;
	d->bm = NULL; /* the VM's (vm.h) */
	for (int i = 0; i < VM_MAX_SLOTS; i++)
		d->slot_log[i] = NULL;
	if (d->res_on) {
		resident_free(&d->res);
		resident_free(&d->scratch);
	}
	d->res_on = false;
}
