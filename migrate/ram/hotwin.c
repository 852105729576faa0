/* Two windows, not one: a guest that walks its memory writes a page once
 * per lap, so it shows in one window only; a page written in both is
 * written all the time, and the guest will write it again as soon as it
 * runs on the target. */
#include "migrate/ram/hotwin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/ram/bitmap.h"
#include "vmm/core/vm.h"

static void sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int ram_hotwin_take(struct ram_hotwin *h, struct vm *vm, struct ram_dirty *d,
		    unsigned window_us, char *err, size_t errlen)
{
	size_t nw = bm_words(d->npages);
	uint64_t *first;
	int ret;

	h->armed = false;
	if (d->ring || !d->bm || !vm->mig_log)
		return 0;
	first = malloc(nw * sizeof(*first));
	if (!first) {
		snprintf(err, errlen, "hot-page windows: %zu KiB: out of memory", nw * 8 / 1024);
		return -ENOMEM;
	}
	/* With manual protect a page's bit stays set from its last write
	 * until we clear it: clearing the pages still to send starts the
	 * window for them (they stay in d->bm, so nothing is lost). Without
	 * it the sync that found them reset KVM's log already. */
	memcpy(first, d->bm, nw * sizeof(*first));
	ret = ram_dirty_clear_bits(vm, d, 0, d->npages, first, err, errlen);
	if (ret)
		goto fail;
	sleep_us(window_us);
	/* A slot whose log a sync does not fetch (initially-set, nothing
	 * trusted in it) must read as unwritten, not as the last fetch. */
	memset(vm->mig_log, 0, nw * sizeof(*first));
	ret = ram_dirty_sync(vm, d, err, errlen);
	if (ret)
		goto fail;
	for (size_t w = 0; w < nw; w++)
		first[w] &= vm->mig_log[w];
	ret = ram_dirty_clear_bits(vm, d, 0, d->npages, first, err, errlen);
	if (ret)
		goto fail;
	memset(vm->mig_log, 0, nw * sizeof(*first));
	free(h->first);
	h->first = first;
	h->npages = d->npages;
	h->armed = true;
	sleep_us(window_us);
	return 0;
fail:
	free(first);
	return ret;
}

int ram_hotwin_pages(const struct ram_hotwin *h, const struct vm *vm, const uint64_t *bm,
		     uint64_t *pages, int max)
{
	int n = 0;

	if (!h->armed)
		return 0;
	for (size_t w = 0; w < bm_words(h->npages) && n < max; w++) {
		uint64_t v = h->first[w] & vm->mig_log[w] & bm[w];

		while (v && n < max) {
			pages[n++] = w * 64 + (uint64_t)__builtin_ctzll(v);
			v &= v - 1;
		}
	}
	return n;
}

void ram_hotwin_free(struct ram_hotwin *h)
{
	free(h->first);
	h->first = NULL;
	h->armed = false;
}
