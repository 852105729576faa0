/* Post-copy frames shared by both sides (docs/migration-stream.md,
 * "Post-copy"): the MISSING bitmap in slices, page batches of at most
 * PC_BATCH_PAGES read from or into a bounce buffer, PAGE_REQ. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_WIRE_H
#define MINIVMM_MIGRATE_POSTCOPY_WIRE_H

#include <stdatomic.h>
#include <stdint.h>

#include "migrate/proto/stream.h"

/* Pages per PAGES frame in post-copy: small, so that a requested page on
 * the return path is never far behind anything on its own socket. */
#define PC_BATCH_PAGES 64u

/* Sends the set bits of bm[0, npages) as MISSING frames (empty slices
 * are skipped; at least one frame goes, so the receiver sees the end by
 * a count). Returns the number of frames sent, or -errno. */
int pc_missing_send(struct stream *s, const uint64_t *bm, uint64_t npages, char *err,
		    size_t errlen);
/* Reads one MISSING payload of len bytes and ORs it into bm, checking
 * the slice against npages. Adds the pages it set to *count. */
int pc_missing_recv(struct stream *s, uint32_t len, uint64_t *bm, uint64_t npages,
		    uint64_t *count, char *err, size_t errlen);

/* Sends pages [first, first + n) of ram (n <= PC_BATCH_PAGES) as one
 * PAGES frame: runs of zero and normal pages. */
int pc_pages_send(struct stream *s, const uint8_t *ram, uint64_t first, uint32_t n,
		  char *err, size_t errlen);
/* Reads one PAGES payload (no delta runs, at most PC_BATCH_PAGES pages of
 * contents) into buf (PC_BATCH_PAGES pages); runs[] gets its runs, each
 * normal run's contents at buf + its offset (in run order). */
int pc_pages_recv(struct stream *s, uint32_t len, uint64_t npages, struct page_run *runs,
		  int maxruns, uint8_t *buf, char *err, size_t errlen);

/* Atomically takes the set bits of one bitmap word (returns them). */
static inline uint64_t pc_bm_take_word(_Atomic uint64_t *bm, uint64_t w)
{
	return atomic_exchange(&bm[w], 0);
}

/* Atomically takes the bits of word w that mask selects: those that were set. */
static inline uint64_t pc_bm_take_bits(_Atomic uint64_t *bm, uint64_t w, uint64_t mask)
{
	return atomic_fetch_and(&bm[w], ~mask) & mask;
}

/* Atomically takes one bit: whether it was set. */
static inline int pc_bm_take(_Atomic uint64_t *bm, uint64_t i)
{
	uint64_t bit = 1ULL << (i % 64);

	return (atomic_fetch_and(&bm[i / 64], ~bit) & bit) != 0;
}

#endif
