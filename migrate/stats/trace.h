/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page trace writer and reader (format: docs/dirty-trace.md).
 *
 * The migration engine calls trace_round() once per pre-copy round with the
 * dirty bitmap that round sends (round 0: the pages of the first full pass).
 * Every function returns 0 (or a documented positive value) on success and
 * -errno on failure; nothing here exits, aborts or keeps global state.
 */
#ifndef MINIVMM_MIGRATE_TRACE_H
#define MINIVMM_MIGRATE_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_MAGIC "MVDTRACE"          /* 8 bytes, file header */
#define TRACE_VERSION 1u
#define TRACE_HEADER_SIZE 40u
#define TRACE_REC_ROUND 0x31444e52u     /* "RND1" little-endian */
#define TRACE_REC_END 0x31444e45u       /* "END1" little-endian */
#define TRACE_REC_HEADER_SIZE 32u
#define TRACE_MAX_NPAGES (1ull << 40)   /* 4 PiB of 4 KiB pages: sanity cap */

struct trace {
	int fd;                 /* -1 when closed */
	uint64_t npages;
	uint32_t page_size;
	uint32_t nrounds;       /* rounds written so far */
	uint8_t *buf;           /* per-round encode buffer */
	size_t buf_cap;
	uint32_t crc_table[256];
};

/* Create/truncate PATH and write the header. page_size must be a power of two
 * >= 512, 0 < npages <= TRACE_MAX_NPAGES. */
int trace_open(struct trace *t, const char *path, uint64_t npages, uint32_t page_size);

/* Append one round. t_ns: nanoseconds since the migration started (any
 * monotonic origin, non-decreasing across rounds). bitmap: npages bits,
 * LSB-first inside each 64-bit word; bits beyond npages are ignored. */
int trace_round(struct trace *t, uint32_t round, uint64_t t_ns, const uint64_t *bitmap);

/* Write the END record, flush and close. Safe to call on a failed/closed trace. */
int trace_close(struct trace *t);

/* ---- reader ------------------------------------------------------------ */

struct trace_reader {
	int fd;
	uint64_t npages;
	uint32_t page_size;
	uint32_t version;
	uint64_t start_unix_ns;
	uint32_t rounds_read;
	int ended;              /* END record seen */
	uint8_t *buf;
	size_t buf_cap;
	uint32_t crc_table[256];
};

struct trace_round_info {
	uint32_t round;
	uint64_t t_ns;
	uint64_t ndirty;        /* number of set bits */
	uint32_t nruns;
};

/* Open and validate the header. -EBADMSG on a bad/unsupported header. */
int trace_reader_open(struct trace_reader *r, const char *path);

/* Read the next round into BITMAP (caller provides (npages+63)/64 words,
 * fully overwritten). Returns 1 when a round was read, 0 at a clean END,
 * -EBADMSG for corrupt data, -ENODATA for a file truncated before END
 * (rounds read so far stay valid). */
int trace_read_round(struct trace_reader *r, struct trace_round_info *info, uint64_t *bitmap);

int trace_reader_close(struct trace_reader *r);

/* Helpers exposed for tests. */
size_t trace_bitmap_words(uint64_t npages);

#endif
