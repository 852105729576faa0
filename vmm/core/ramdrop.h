/* Dropping many guest RAM pages at once, fast. MADV_DONTNEED frees each
 * page as it goes (~0.3 us a page here: 20 ms for 256 MiB, inside a
 * post-copy switch's downtime). Instead a large run's pages are moved to
 * a "grave" mapping by one mremap(MREMAP_DONTUNMAP), which moves page
 * tables and frees nothing: the range stays mapped, empty, as after
 * MADV_DONTNEED. The grave is freed later, off the critical path. */
#ifndef MINIVMM_RAMDROP_H
#define MINIVMM_RAMDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs shorter than this are dropped in place (a move costs a syscall and
 * may split a mapping); at most RAMDROP_MOVES_MAX moves per grave, the
 * rest in place too, so the mappings stay far below vm.max_map_count. */
#define RAMDROP_MOVE_MIN (64u * 4096u)
#define RAMDROP_MOVES_MAX 4096u
/* What ramdrop_free frees at a time: unmapping 64 MiB at once held up the
 * target's page faults for up to 14 ms (docs/benchmarks.md, "Stale
 * copies moved aside"); 2 MiB is ~0.2 ms of it. */
#define RAMDROP_FREE_PIECE (2ull << 20)

struct ramdrop {
	uint8_t *ram;     /* the RAM mapping the pages come from */
	uint8_t *grave;   /* a reservation as large, NULL: drop in place */
	uint64_t size;
	unsigned moves;
	uint64_t moved_lo, moved_hi; /* the grave's offsets that hold pages */
	uint64_t moved_bytes, dropped_bytes;
};

/* Reserves the grave (address space only). Never fails: without a grave
 * every run is dropped in place. */
void ramdrop_init(struct ramdrop *d, uint8_t *ram, uint64_t size);
/* Drops [off, off+len) of RAM (page-aligned): its contents are gone,
 * the next access finds a fresh page (or a userfaultfd fault). 0 or
 * -errno. *moved (may be NULL) says whether the old contents went to the
 * grave, where they stay readable at grave + off until freed. */
int ramdrop_range(struct ramdrop *d, uint64_t off, uint64_t len, bool *moved, char *err,
		  size_t errlen);
/* Frees the pages of the grave's [off, off+len) (page-aligned, inside
 * it) now, its mapping left as it is: a caller that still reads stale
 * copies frees them piece by piece. 0 or -errno. */
int ramdrop_free_range(struct ramdrop *d, uint64_t off, uint64_t len, char *err, size_t errlen);
/* Frees what was moved, a piece at a time with pauses, and the
 * reservation: slow on purpose (call it where time does not count), so
 * that the threads it shares the CPU and the mm with hardly notice. */
void ramdrop_free(struct ramdrop *d);

#endif
