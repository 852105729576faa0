/* Bulk drop of guest RAM pages (ramdrop.h). */
#include "vmm/core/ramdrop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7 */
#endif

/* The pause after each piece ramdrop_free frees (RAMDROP_FREE_PIECE),
 * so that the target's page faults hardly notice it. */
#define RAMDROP_FREE_PAUSE_US 200

void ramdrop_init(struct ramdrop *d, uint8_t *ram, uint64_t size)
{
	void *g = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	memset(d, 0, sizeof(*d));
	d->ram = ram;
	d->size = size;
	d->grave = g == MAP_FAILED ? NULL : g;
}

static int drop_in_place(struct ramdrop *d, uint64_t off, uint64_t len, char *err, size_t errlen)
{
	if (madvise(d->ram + off, len, MADV_DONTNEED) < 0) {
		int e = errno;

		snprintf(err, errlen, "madvise(DONTNEED, %llu bytes of RAM): %s",
			 (unsigned long long)len, strerror(e));
		return -e;
	}
	d->dropped_bytes += len;
	return 0;
}

int ramdrop_range(struct ramdrop *d, uint64_t off, uint64_t len, bool *moved, char *err,
		  size_t errlen)
{
	if (moved)
		*moved = false;
	if (off > d->size || len > d->size - off || (off | len) % 4096) {
		snprintf(err, errlen, "ramdrop: bad range %llu+%llu", (unsigned long long)off,
			 (unsigned long long)len);
		return -EINVAL;
	}
	if (d->grave && len >= RAMDROP_MOVE_MIN && d->moves < RAMDROP_MOVES_MAX) {
		/* Same offset in the grave: runs never overlap there either. */
		void *r = mremap(d->ram + off, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
				 d->grave + off);

		if (r != MAP_FAILED) {
			if (!d->moved_bytes || off < d->moved_lo)
				d->moved_lo = off;
			if (off + len > d->moved_hi)
				d->moved_hi = off + len;
			d->moves++;
			d->moved_bytes += len;
			if (moved)
				*moved = true;
			return 0;
		}
		/* An older kernel (EINVAL) or too many mappings (ENOMEM): in
		 * place from now on. The range is untouched after a failure. */
		d->moves = RAMDROP_MOVES_MAX;
	}
	return drop_in_place(d, off, len, err, errlen);
}

/* Frees a piece of the grave's pages and leaves its mapping as it is:
 * unmapping pieces would leave holes another mapping could land in (and
 * the final munmap take away), and mapping over them would split the
 * moved mappings towards vm.max_map_count. */
int ramdrop_free_range(struct ramdrop *d, uint64_t off, uint64_t len, char *err, size_t errlen)
{
	if (!d->grave || off > d->size || len > d->size - off || (off | len) % 4096) {
		snprintf(err, errlen, "ramdrop: bad grave range %llu+%llu", (unsigned long long)off,
			 (unsigned long long)len);
		return -EINVAL;
	}
	if (len && madvise(d->grave + off, len, MADV_DONTNEED) < 0) {
		int e = errno;

		snprintf(err, errlen, "madvise(DONTNEED, %llu bytes of the grave): %s",
			 (unsigned long long)len, strerror(e));
		return -e;
	}
	return 0;
}

void ramdrop_free(struct ramdrop *d)
{
	if (!d->grave)
		return;
	for (uint64_t off = d->moved_lo; off < d->moved_hi; off += RAMDROP_FREE_PIECE) {
		uint64_t n = d->moved_hi - off < RAMDROP_FREE_PIECE ? d->moved_hi - off
								     : RAMDROP_FREE_PIECE;

		/* A piece of the reservation (never moved to) fails with
		 * ENOMEM or changes nothing: either way nothing to free. */
		(void)madvise(d->grave + off, n, MADV_DONTNEED);
		usleep(RAMDROP_FREE_PAUSE_US);
	}
	munmap(d->grave, d->size); /* the reservation left, no pages */
	d->grave = NULL;
}
