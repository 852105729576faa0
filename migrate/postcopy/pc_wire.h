/* Post-copy frames shared by both sides (docs/migration-stream.md,
 * "Post-copy"): the MISSING bitmap in slices, page batches of at most
 * PC_BATCH_PAGES read from or into a bounce buffer, PAGE_REQ. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_WIRE_H
#define MINIVMM_MIGRATE_POSTCOPY_WIRE_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "migrate/proto/stream.h"

/* Pages per PAGES frame in post-copy: small, so that a requested page on
 * the return path is never far behind anything on its own socket. */
#define PC_BATCH_PAGES 64u

/* Sends the set bits of bm[0, npages) as frames of type (MISSING or
 * PC_KEPT), each slice cut to its words from the first to the last
 * non-zero one (empty slices are skipped; at least one frame goes, so the
 * receiver sees the end by a count). Returns the number of frames sent,
 * or -errno. */
int pc_bitmap_send(struct stream *s, uint32_t type, const uint64_t *bm, uint64_t npages,
		   char *err, size_t errlen);
/* Reads one MISSING (or PC_KEPT) payload of len bytes and ORs it into bm,
 * checking the slice against npages. Adds the pages it set to *count. */
int pc_missing_recv(struct stream *s, uint32_t len, uint64_t *bm, uint64_t npages,
		    uint64_t *count, char *err, size_t errlen);

/* The longest delta entry the push sends: past half a page the bytes
 * saved do not pay for decoding on the target's receive path. */
#define PC_DELTA_CAP 2048u

/* The push's delta encoding (docs/postcopy.md, "Deltas"): encode says
 * whether a page goes as a delta (its length into out, at most cap) or
 * whole (-1); the entries gather in enc. */
struct pc_delta {
	int (*encode)(void *arg, uint64_t page, const uint8_t *cur, uint8_t *out, size_t cap);
	void *arg;
	uint8_t *enc;            /* PC_DELTA_AREA bytes */
	uint64_t pages, saved;   /* sent as deltas, and the bytes that saved */
};
#define PC_DELTA_AREA (PC_BATCH_PAGES * (PAGE_DELTA_HDR + PC_DELTA_CAP))

/* One PAGES frame of post-copy, built before it is written (so that the
 * push can pace it by its real size). */
struct pc_batch {
	uint8_t tbl[STREAM_HDR_LEN + PAGES_HDR_LEN + PC_BATCH_PAGES * PAGE_RUN_LEN];
	struct iovec iov[2 + PC_BATCH_PAGES];
	int niov;
	uint32_t bytes;          /* the whole frame */
};

/* Builds pages [first, first + n) of ram (1 <= n <= PC_BATCH_PAGES) as
 * one PAGES frame: runs of zero, normal and (dl not NULL) delta pages.
 * -EINVAL for a bad n. */
int pc_batch_build(struct pc_batch *b, const uint8_t *ram, uint64_t first, uint32_t n,
		   struct pc_delta *dl);
int pc_batch_write(struct stream *s, struct pc_batch *b, char *err, size_t errlen);
/* pc_batch_build without deltas, then pc_batch_write. */
int pc_pages_send(struct stream *s, const uint8_t *ram, uint64_t first, uint32_t n,
		  char *err, size_t errlen);
/* Reads one PAGES payload (at most PC_BATCH_PAGES pages of contents and
 * deltas) into buf (PC_BATCH_PAGES pages); runs[] gets its runs, each
 * normal run's contents at buf + its offset (in run order). With area
 * NULL delta runs are refused; else area (PC_BATCH_PAGES pages) gets the
 * delta entries as they came and *area_len their length, for the caller
 * to check entry by entry (xbzrle_entry_next). */
int pc_pages_recv(struct stream *s, uint32_t len, uint64_t npages, struct page_run *runs,
		  int maxruns, uint8_t *buf, uint8_t *area, uint32_t *area_len, char *err,
		  size_t errlen);

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
