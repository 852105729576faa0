/* Populating guest RAM ahead of need (--prealloc): a first write to a
 * never-touched page costs the kernel's zeroing and, on a VM whose host
 * takes freed memory back, the host's own fault. Doing that while a
 * migration target waits for its source takes it off the migration's
 * critical path (docs/migration.md, "Throughput"). */
#ifndef MINIVMM_PREALLOC_H
#define MINIVMM_PREALLOC_H

#include <stddef.h>
#include <stdint.h>

struct prealloc;

/* Starts nthreads (>= 1) threads populating [base, base + size) in 2 MiB
 * slices, front to back. */
int prealloc_start(struct prealloc **out, uint8_t *base, uint64_t size,
		   int nthreads, char *err, size_t errlen);
/* Waits until every slice is populated (or failed); returns 0 or the
 * first -errno a populate call gave. */
int prealloc_wait(struct prealloc *pa);
/* Stops the threads after their current slice and frees pa. Returns the
 * bytes populated so far; *ms (when not NULL) gets the time spent. */
uint64_t prealloc_stop(struct prealloc *pa, double *ms);

/* Whole-range populate on the calling thread plus helpers (boot path). */
int prealloc_all(uint8_t *base, uint64_t size, char *err, size_t errlen);

#endif
