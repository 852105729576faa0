/* Dirty tracking with KVM_DIRTY_LOG_INITIALLY_SET. Turning logging on
 * then write-protects nothing (without it KVM walks every page of every
 * slot: the setup cost that grew with RAM); every bit of KVM's log starts
 * set and a page is write-protected only when its bit is cleared
 * (KVM_CLEAR_DIRTY_LOG, always right before the page is read). So a bit
 * means "written" only for a page cleared before; for every other page it
 * is still the initial 1 and says nothing.
 *
 * d->res holds the trusted pages: the ones round 0 found populated (it
 * clears them before reading them), and every page a later sync found
 * populated outside them. A page outside d->res was never read by us, so
 * it needs sending only if it holds anything, i.e. only if the host
 * populated it since: each sync asks the kernel which pages of the gaps
 * between trusted ranges are populated now (resident.c; PAGEMAP_SCAN skips
 * the empty page tables of an idle guest whole), sends those and trusts
 * them from then on. Adding a page to d->res is always safe: its KVM bit
 * is still 1 until we clear it, which we do only while it is in d->bm,
 * i.e. before reading it. */
#include "migrate/ram/dirty_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "migrate/ram/bitmap.h"

/* Trusted ranges shorter than this are scanned over with the gaps around
 * them, not gap by gap: scanning a short populated range costs less than
 * one more call. */
#define MERGE_PAGES 128u

/* dst |= src (src's word 0 is dst's word src_word0; NULL: all ones) for
 * the pages [a, b). */
static void or_pages(uint64_t *dst, const uint64_t *src, uint64_t src_word0, uint64_t a,
		     uint64_t b)
{
	while (a < b) {
		uint64_t w = a / 64, lo = a % 64, hi = b - w * 64 >= 64 ? 64 : b - w * 64;
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) & (~0ULL << lo);
		uint64_t v = src ? src[w - src_word0] & mask : mask;

		if (v)
			dst[w] |= v;
		a = (w + 1) * 64;
	}
}

/* KVM's word for every trusted page of slot s (none: its log is all
 * initial ones, not even fetched). */
static int or_trusted(struct vm *vm, struct ram_dirty *d, int slot, char *err, size_t errlen)
{
	const struct vm_slot *s = &vm->slots[slot];
	uint64_t sfirst = s->ram_offset / VM_PAGE_SIZE, send = sfirst + s->size / VM_PAGE_SIZE;
	const uint64_t *log = d->slot_log[slot];
	size_t i = resident_find(&d->res, sfirst);
	int ret;

	if (i >= d->res.n || d->res.r[i].first >= send)
		return 0;
	ret = ram_dirty_get_log(vm, d, slot, err, errlen);
	if (ret)
		return ret;
	for (; i < d->res.n && d->res.r[i].first < send; i++) {
		uint64_t a = d->res.r[i].first, b = a + d->res.r[i].count;

		or_pages(d->bm, log, sfirst / 64, a < sfirst ? sfirst : a, b > send ? send : b);
		if (d->written)
			or_pages(d->written, log, sfirst / 64, a < sfirst ? sfirst : a,
				 b > send ? send : b);
	}
	return 0;
}

/* The pages of found that are not trusted go into d->bm; returns how many. */
static uint64_t or_untrusted(struct ram_dirty *d, const struct resident *found)
{
	const struct resident *t = &d->res;
	uint64_t added = 0;

	for (size_t i = 0; i < found->n; i++) {
		uint64_t a = found->r[i].first, end = a + found->r[i].count;
		size_t k = resident_find(t, a);

		while (a < end) {
			uint64_t b;

			if (k < t->n && t->r[k].first <= a) {
				a = t->r[k].first + t->r[k].count;
				k++;
				continue;
			}
			b = k < t->n && t->r[k].first < end ? t->r[k].first : end;
			or_pages(d->bm, NULL, 0, a, b);
			added += b - a;
			a = b;
		}
	}
	return added;
}

/* found = the populated pages of the gaps between trusted ranges (and of
 * short trusted ranges between gaps). */
static int scan_gaps(struct vm *vm, struct ram_dirty *d, struct resident *found, char *err,
		     size_t errlen)
{
	const struct resident *t = &d->res;
	uint64_t gap = 0; /* start of the span being built */
	size_t i = 0;

	found->n = 0;
	while (gap < d->npages) {
		uint64_t end;
		int ret;

		/* Extend over short trusted ranges to the next long one. */
		while (i < t->n && t->r[i].count < MERGE_PAGES)
			i++;
		end = i < t->n ? t->r[i].first : d->npages;
		if (end > gap) {
			ret = resident_scan(found, vm->ram, gap, end - gap, err, errlen);
			if (ret)
				return ret;
		}
		if (i >= t->n)
			break;
		gap = t->r[i].first + t->r[i].count;
		i++;
	}
	return 0;
}

int ram_dirty_sync_trusted(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen)
{
	struct resident *found = &d->scratch;
	uint64_t added;
	int ret = 0;

	for (int i = 0; i < vm->nslots && !ret; i++)
		ret = or_trusted(vm, d, i, err, errlen);
	if (!ret)
		ret = scan_gaps(vm, d, found, err, errlen);
	if (ret)
		return ret;
	added = or_untrusted(d, found);
	d->found_late += added;
	if (added == 0)
		return 0;
	/* Trusted from now on; the union goes into a third list, then
	 * becomes d->res (scratch is free again at the next sync). */
	{
		struct resident u;

		resident_init(&u, RESIDENT_AUTO);
		ret = resident_union(&u, &d->res, found);
		if (ret) {
			free(u.r);
			snprintf(err, errlen, "trusted pages: out of memory");
			return ret;
		}
		free(d->res.r);
		d->res.r = u.r;
		d->res.n = u.n;
		d->res.cap = u.cap;
	}
	return 0;
}
