/* Two windows, not one: a guest that walks its memory writes a page once
 * per lap, so it shows in one window only; a page written in both is
 * written all the time, and the guest will write it again as soon as it
 * runs on the target. */
#include "migrate/ram/hotwin.h"

#include <stdio.h>
#include <stdlib.h>

#include "migrate/ram/bitmap.h"
#include "vmm/core/clock.h"

int ram_hotwin_take(struct ram_hotwin *h, struct vm *vm, struct ram_dirty *d,
		    const uint64_t *sent, unsigned window_us, char *err, size_t errlen)
{
	size_t nw = bm_words(d->npages);
	int ret = 1;

	ram_hotwin_free(h);
	if (d->ring || !d->bm)
		return 0;
	h->first = malloc(nw * sizeof(uint64_t));
	h->seen = malloc(nw * sizeof(uint64_t));
	if (!h->first || !h->seen) {
		snprintf(err, errlen, "hot-page windows: %zu bytes: out of memory",
			 2 * nw * sizeof(uint64_t));
		goto fail;
	}
	/* With manual protect a page's bit stays set from its last write
	 * until we clear it: clearing the pages still to send starts the
	 * window for them (they stay in d->bm, so nothing is lost). Without
	 * it the sync that found them reset KVM's log already. Pages never
	 * sent are left alone: with initially-set their bits say nothing,
	 * and clearing them all would walk the RAM that mode spares. */
	for (size_t w = 0; w < nw; w++)
		h->first[w] = d->bm[w] & (sent ? sent[w] : ~0ULL);
	if (ram_dirty_clear_bits(vm, d, 0, d->npages, h->first, err, errlen))
		goto fail;
	clock_sleep_ns((uint64_t)window_us * 1000);
	d->written = h->seen;
	h->d = d;
	ret = ram_dirty_sync(vm, d, err, errlen);
	if (ret)
		goto fail;
	for (size_t w = 0; w < nw; w++)
		h->first[w] &= h->seen[w];
	if (ram_dirty_clear_bits(vm, d, 0, d->npages, h->first, err, errlen)) {
		ret = 1;
		goto fail;
	}
	clock_sleep_ns((uint64_t)window_us * 1000);
	return 0;
fail:
	ram_hotwin_free(h);
	return ret;
}

int ram_hotwin_pages(const struct ram_hotwin *h, const uint64_t *bm, uint64_t *pages, int max)
{
	size_t nw = h->d ? bm_words(h->d->npages) : 0;
	int n = 0;

	for (size_t w = 0; w < nw && n < max; w++) {
		uint64_t v = h->first[w] & h->seen[w] & bm[w];

		while (v && n < max) {
			pages[n++] = w * 64 + (uint64_t)__builtin_ctzll(v);
			v &= v - 1;
		}
	}
	for (size_t w = 0; w < nw && n < max; w++) {
		/* p-1 written in the first window, p since and not then: a
		 * walk that moved on during the windows (an array it fills a
		 * page at a time) is at p now. Bit 0's page below is bit 63
		 * of the word before. */
		uint64_t below = h->first[w] << 1 | (w ? h->first[w - 1] >> 63 : 0);
		uint64_t v = h->seen[w] & bm[w] & below & ~h->first[w];

		while (v && n < max) {
			pages[n++] = w * 64 + (uint64_t)__builtin_ctzll(v);
			v &= v - 1;
		}
	}
	return n;
}

void ram_hotwin_free(struct ram_hotwin *h)
{
	if (h->d)
		h->d->written = NULL;
	h->d = NULL;
	free(h->first);
	free(h->seen);
	h->first = h->seen = NULL;
}
