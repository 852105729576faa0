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

/* What ramdrop_free unmaps at a time, and the pause after each piece:
 * unmapping 64 MiB at once held up the target's page faults for up to
 * 14 ms (docs/benchmarks.md, "Stale copies moved aside"); 2 MiB is ~0.2
 * ms of it. */
#define RAMDROP_FREE_PIECE (2ull << 20)
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

/* Frees a piece of the grave and keeps its addresses reserved: a hole
 * would let another mapping land there, which the reservation's final
 * munmap would then take away. */
static void release(struct ramdrop *d, uint64_t off, uint64_t len)
{
	void *r = mmap(d->grave + off, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);

	if (r == MAP_FAILED) /* no new mapping (vm.max_map_count): free in place */
		(void)madvise(d->grave + off, len, MADV_DONTNEED);
}

void ramdrop_free_range(struct ramdrop *d, uint64_t off, uint64_t len)
{
	if (d->grave && off <= d->size && len <= d->size - off && len && !((off | len) % 4096))
		release(d, off, len);
}

void ramdrop_free(struct ramdrop *d)
{
	if (!d->grave)
		return;
	for (uint64_t off = d->moved_lo; off < d->moved_hi; off += RAMDROP_FREE_PIECE) {
		uint64_t n = d->moved_hi - off < RAMDROP_FREE_PIECE ? d->moved_hi - off
								     : RAMDROP_FREE_PIECE;

		release(d, off, n);
		usleep(RAMDROP_FREE_PAUSE_US);
	}
	munmap(d->grave, d->size); /* the reservation left, no pages */
	d->grave = NULL;
}
