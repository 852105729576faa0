/* The debt of a pass in progress: how many of the pages it already sent
 * the guest has written again, read without disturbing the tracking, so
 * the throttle can start inside round 0 instead of a round later
 * (migrate/policy/throttle_plan.h, throttle_plan_probe).
 *
 * Only with manual protect and initially-set: there round 0 clears each
 * page's bit (KVM_CLEAR_DIRTY_LOG) just before it reads the page, so a set
 * bit on a covered page is a write after it was sent, and
 * KVM_GET_DIRTY_LOG only copies the log out. Without initially-set (and
 * with the ring) round 0 clears nothing: a covered page's bit may be a
 * write from before it was sent, which is no debt; and without manual
 * protect a read would clear the log. There are no looks then. */
#include "migrate/ram/ram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "migrate/ram/dirty_int.h"

int ram_dirty_debt(struct vm *vm, struct ram_dirty *d, const uint64_t *covered,
		   uint64_t *debt_pages, char *err, size_t errlen)
{
	size_t words = (d->npages + 63) / 64;
	uint64_t debt = 0, *cov;
	int ret = 0;

	*debt_pages = 0;
	if (!d->logging || !covered || !d->manual || !d->init_set || d->ring) {
		snprintf(err, errlen, "dirty debt: readable only with manual protect and "
			 "initially-set");
		return -EOPNOTSUPP;
	}
	/* Coverage first: a page seen covered here had its bit cleared before
	 * the log is read below, so its initial bit cannot count as debt. */
	cov = malloc(words * 8);
	if (!cov) {
		snprintf(err, errlen, "dirty debt: out of memory");
		return -ENOMEM;
	}
	for (size_t w = 0; w < words; w++)
		cov[w] = __atomic_load_n(&covered[w], __ATOMIC_ACQUIRE);
	for (int i = 0; i < vm->nslots && !ret; i++) {
		const struct vm_slot *s = &vm->slots[i];
		size_t first = s->ram_offset / VM_PAGE_SIZE / 64;
		size_t n = (s->size / VM_PAGE_SIZE + 63) / 64;
		const uint64_t *log = d->slot_log[i];

		ret = ram_dirty_get_log(vm, d, i, err, errlen);
		for (size_t w = first; !ret && w < first + n && w < words; w++)
			if (cov[w]) /* the VMM's own writes since are debt too */
				debt += (uint64_t)__builtin_popcountll(
					cov[w] & (log[w - first] |
						  __atomic_load_n(&vm->vmm_dirty[w], __ATOMIC_RELAXED)));
	}
	free(cov);
	if (ret)
		return ret;
	*debt_pages = debt;
	return 0;
}
