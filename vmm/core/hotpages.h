/* The pages a paused guest touches first when it runs again: those its
 * vCPUs' registers point at (the stack, the code, the data a loop walks).
 * A post-copy switch sends them with the state, so that the guest does not
 * begin on the target with a fault per page (docs/postcopy.md). */
#ifndef MINIVMM_HOTPAGES_H
#define MINIVMM_HOTPAGES_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* Up to max RAM page indices (RAM offset / page size), distinct, best
 * first: every vCPU's stack page, then its code page, the page below its
 * stack, the code's next page, then what its other general registers
 * point at. Returns the
 * count or -errno. The vCPUs must be paused. */
int hotpages_find(struct vm *vm, uint64_t *pages, int max, char *err, size_t errlen);

#endif
