/* The debt of a pass in progress: how many of the pages it already sent
 * the guest has written again, read without disturbing the tracking, so
 * the throttle can start inside round 0 instead of a round later
 * (migrate/policy/throttle_plan.h, throttle_plan_probe). With manual
 * protect KVM_GET_DIRTY_LOG only copies the log out (clearing is
 * KVM_CLEAR_DIRTY_LOG's, which the senders do before reading a page); with
 * the ring, what the reaper harvested is in vmm_dirty. Without manual
 * protect a read would clear the log: there is no look then. */
#include "migrate/ram/ram.h"

#include <errno.h>
#include <stdio.h>

#include "migrate/ram/dirty_int.h"

static uint64_t count_and(const uint64_t *a, const uint64_t *covered, size_t from, size_t to,
			  uint64_t *ncov)
{
	uint64_t n = 0;

	for (size_t w = from; w < to; w++) {
		uint64_t c = __atomic_load_n(&covered[w], __ATOMIC_RELAXED);

		*ncov += (uint64_t)__builtin_popcountll(c);
		if (c && a)
			n += (uint64_t)__builtin_popcountll(c & __atomic_load_n(&a[w - from],
									      __ATOMIC_RELAXED));
	}
	return n;
}

int ram_dirty_debt(struct vm *vm, struct ram_dirty *d, const uint64_t *covered,
		   uint64_t *covered_pages, uint64_t *debt_pages, char *err, size_t errlen)
{
	uint64_t ncov = 0, debt = 0;
	size_t words = (d->npages + 63) / 64;

	*covered_pages = *debt_pages = 0;
	if (!d->logging || !covered || (!d->manual && !d->ring)) {
		snprintf(err, errlen, "dirty debt: not readable with this tracker");
		return -EOPNOTSUPP;
	}
	if (d->ring) {
		/* vmm_dirty is indexed like the RAM bitmap. */
		debt = count_and(vm->vmm_dirty, covered, 0, words, &ncov);
	} else {
		for (int i = 0; i < vm->nslots; i++) {
			const struct vm_slot *s = &vm->slots[i];
			size_t first = s->ram_offset / VM_PAGE_SIZE / 64;
			size_t n = (s->size / VM_PAGE_SIZE + 63) / 64;
			int ret = ram_dirty_get_log(vm, d, i, err, errlen);

			if (ret)
				return ret;
			debt += count_and(d->slot_log[i], covered, first, first + n, &ncov);
		}
		/* The VMM's own writes since are debt too. */
		debt += count_and(vm->vmm_dirty, covered, 0, words, &(uint64_t){ 0 });
	}
	*covered_pages = ncov;
	*debt_pages = debt;
	return 0;
}
