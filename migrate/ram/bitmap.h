/* Page bitmaps: one bit per guest page, LSB-first in 64-bit words (the
 * layout KVM_GET_DIRTY_LOG and migrate/stats/trace.h use). */
#ifndef MINIVMM_MIGRATE_BITMAP_H
#define MINIVMM_MIGRATE_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline size_t bm_words(uint64_t nbits)
{
	return (size_t)((nbits + 63) / 64);
}

static inline void bm_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static inline void bm_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

static inline bool bm_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

/* Set bits in [0, nbits). */
uint64_t bm_count(const uint64_t *bm, uint64_t nbits);
/* First set (or clear) bit at or after from, or nbits when none. */
uint64_t bm_next_set(const uint64_t *bm, uint64_t nbits, uint64_t from);
uint64_t bm_next_clear(const uint64_t *bm, uint64_t nbits, uint64_t from);
/* Sets bits [first, first + n). */
void bm_set_range(uint64_t *bm, uint64_t first, uint64_t n);
/* The same with atomic ORs (release), for a bitmap read while it is
 * written (round 0's coverage, read by the throttle's looks). */
void bm_set_range_atomic(uint64_t *bm, uint64_t first, uint64_t n);
/* Clears bits [first, first + n). */
void bm_clear_range(uint64_t *bm, uint64_t first, uint64_t n);

#endif
