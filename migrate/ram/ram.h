/* Guest RAM for migration: dirty tracking (KVM dirty log + the VMM's own
 * bitmap), the page sender (writev straight from guest RAM) and receiver
 * (readv straight into guest RAM), and the RAM digest of --verify-ram. */
#ifndef MINIVMM_MIGRATE_RAM_H
#define MINIVMM_MIGRATE_RAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "migrate/proto/stream.h"
#include "vmm/core/resident.h"
#include "vmm/core/vm.h"

struct est_rate;
struct xbz_cache;

/* ---- dirty tracking (dirty.c) ---------------------------------------- */
struct ram_dirty {
	uint64_t npages;
	uint64_t *bm;      /* pages still to send, by RAM page index */
	bool manual;       /* KVM_CLEAR_DIRTY_LOG: re-protect before reading */
	/* KVM_DIRTY_LOG_INITIALLY_SET: logging on protects nothing, KVM's
	 * bits start set; only the pages in res have bits that mean what
	 * they say (dirty_trust.c). */
	bool init_set;
	bool ring;         /* the vCPUs' dirty rings, harvested into vmm_dirty */
	bool reaping, reaper_stop;
	pthread_t reaper;  /* empties the rings between syncs */
	struct vm *reaper_vm;
	/* Test hook MINIVMM_TEST_DRING_REAP_MS (docs/migration.md): the
	 * reaper's period in ms, -1 never; 0 unset (every ms, quarter full). */
	int reap_ms;
	bool logging;
	bool res_on;       /* res and scratch initialised (ram_dirty_init) */
	/* The pages populated when round 0 began (resident.h): the only ones
	 * it reads. With init_set, grown by every sync: the trusted pages. */
	struct resident res, scratch;
	uint64_t *slot_log[VM_MAX_SLOTS]; /* KVM_GET_DIRTY_LOG buffers, kept */
	uint64_t found_late; /* init_set: pages a sync found populated outside res */
	uint32_t ring_resends; /* ring: syncs that marked every populated page (lost) */
	/* When set (hotwin.c): each slot-log sync also writes here the pages
	 * KVM says were written since the sync or clear before, where its bit
	 * means that (trusted pages with initially-set); every other page 0.
	 * RAM-indexed, bm_words(npages) words. Not for a ring. */
	uint64_t *written;
};

/* Zeroes d for npages of RAM; ram_dirty_stop undoes it. */
void ram_dirty_init(struct ram_dirty *d, uint64_t npages);
/* Turns dirty logging on for every slot (manual protect when offered and
 * allowed, initially-set when the resident scan is cheap), clears the
 * VMM's own bitmap and finds the populated pages (ram_dirty_scan). */
int ram_dirty_start(struct vm *vm, struct ram_dirty *d, bool try_manual,
		    char *err, size_t errlen);
/* d->res = the pages of RAM populated now (after logging is on: a page
 * populated later is written later, and so tracked). */
int ram_dirty_scan(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen);
/* Folds KVM's dirty log and vm->vmm_dirty into d->bm. */
int ram_dirty_sync(struct vm *vm, struct ram_dirty *d, char *err, size_t errlen);
/* Manual protect: re-arms tracking for the pages set in d->bm within
 * [first, first + n) (n and first multiples of 64, or reaching the end)
 * before they are read: only pages still to send (in d->bm) may be
 * cleared, so a write after the clear is always caught before the read.
 * A no-op without manual protect. */
int ram_dirty_clear(struct vm *vm, struct ram_dirty *d, uint64_t first,
		    uint64_t n, char *err, size_t errlen);
/* The same for the pages set in bits (bits[0] bit 0 is page first). */
int ram_dirty_clear_bits(struct vm *vm, struct ram_dirty *d, uint64_t first, uint64_t n,
			 const uint64_t *bits, char *err, size_t errlen);
void ram_dirty_stop(struct vm *vm, struct ram_dirty *d);
/* Of the pages set in covered (what round 0 has sent so far; its writers
 * set bits atomically), how many the guest wrote again since, read
 * without changing what the next sync finds (dirty_probe.c). May run
 * beside the pass's senders. -EOPNOTSUPP unless manual protect with
 * initially-set (the only tracker where a covered page's bit means that). */
int ram_dirty_debt(struct vm *vm, struct ram_dirty *d, const uint64_t *covered,
		   uint64_t *debt_pages, char *err, size_t errlen);

/* ---- sender (ram_send.c) --------------------------------------------- */
struct ram_sender {
	struct vm *vm;
	struct stream *s;
	uint64_t npages;
	const volatile int *cancel; /* checked between batches */
	struct est_rate *rate;      /* may be NULL: unlimited */
	pthread_mutex_t *rate_lock; /* when rate is shared between channels */
	atomic_uint_fast64_t *live_bytes; /* progress for `info migrate`, or NULL */
	uint64_t *sent_bm;          /* when set, round 0 marks what it covered */
	/* When set (a post-copy switch is asked for), a pass ends early: what
	 * it did not send goes in the switch's MISSING set instead. */
	const volatile int *stop;
	/* When set, called between pieces of round 0 (a probe that times
	 * itself: ram_save_iterate's). */
	void (*tick)(void *arg);
	void *tick_arg;
	uint64_t pages_normal, pages_zero, pages_skipped;
	/* the batch being built */
	uint8_t tbl[STREAM_HDR_LEN + PAGES_HDR_LEN + PAGES_MAX_RUNS * PAGE_RUN_LEN];
	struct page_run runs[PAGES_MAX_RUNS];
	struct iovec iov[PAGES_MAX_RUNS + 2];
	uint32_t nruns, data_pages; /* data_pages: normal and delta */
	uint32_t batch_max;         /* pages per batch, set per range (batch_pages) */
	/* Delta encoding (xbzrle-cache): every normal page is first copied
	 * (snap) so that what is sent and what is cached are the same bytes;
	 * run_src says where a normal run's contents are (NULL: guest RAM). */
	struct xbz_cache *xbz;
	uint8_t *snap, *dbuf;
	uint32_t snap_pages, dlen;
	uint8_t *run_src[PAGES_MAX_RUNS];
	uint64_t xbz_pages, xbz_saved, xbz_misses, xbz_ns;
};

void ram_send_init(struct ram_sender *rs, struct vm *vm, struct stream *s,
		   const volatile int *cancel, struct est_rate *rate);
/* Sends normal pages through the delta cache c (shared between senders). */
int ram_send_set_xbz(struct ram_sender *rs, struct xbz_cache *c, char *err, size_t errlen);
/* Frees what ram_send_set_xbz allocated. */
void ram_send_fini(struct ram_sender *rs);
/* Round 0: every page; those not populated (d->res) skipped unread, zero
 * ones as markers. */
int ram_send_all(struct ram_sender *rs, struct ram_dirty *d, char *err,
		 size_t errlen);
/* Later rounds: the pages set in d->bm, which it clears. */
int ram_send_dirty(struct ram_sender *rs, struct ram_dirty *d, char *err,
		   size_t errlen);
/* The same for one range (data channels share a round between them):
 * queue the pages, sending full batches; ram_send_flush sends the rest.
 * Ranges of concurrent senders must not share a 64-page bitmap word, and
 * an all-pages range is at most RAM_SEND_RANGE_MAX pages. */
#define RAM_SEND_RANGE_MAX (1ULL << 15)
int ram_send_all_range(struct ram_sender *rs, struct ram_dirty *d, uint64_t first,
		       uint64_t n, char *err, size_t errlen);
int ram_send_dirty_range(struct ram_sender *rs, struct ram_dirty *d, uint64_t first,
			 uint64_t n, char *err, size_t errlen);
/* One page, queued like a range's, outside dirty tracking: for a paused
 * guest, the caller taking the page out of its own dirty set. */
int ram_send_page(struct ram_sender *rs, uint64_t page, char *err, size_t errlen);
int ram_send_flush(struct ram_sender *rs, char *err, size_t errlen);

/* ---- receiver (ram_recv.c) ------------------------------------------- */
/* Helper threads that populate the pages of the frame being received
 * (first touch of fresh RAM in parallel with the copy). nthreads 0 gives
 * *pf = NULL: no helpers. Stop them before the RAM goes away. */
#define RAM_PREFAULT_MAX_THREADS 4
struct ram_prefault;
int ram_prefault_start(struct ram_prefault **pf, struct vm *vm, int nthreads,
		       char *err, size_t errlen);
void ram_prefault_stop(struct ram_prefault *pf);
/* Reads the payload (len bytes) of one PAGES frame into guest RAM, after
 * checking every run against the RAM size. pf may be NULL. have: a bit
 * per RAM page, set for pages received with contents (the bases delta
 * runs need); NULL refuses delta runs. */
int ram_recv_pages(struct stream *s, struct vm *vm, struct ram_prefault *pf, uint64_t *have,
		   uint32_t len, uint64_t *normal, uint64_t *zero, char *err,
		   size_t errlen);

/* ---- digest (digest.c) ----------------------------------------------- */
bool ram_page_is_zero(const uint8_t *p);
/* A 64-bit digest of all RAM; untouched pages count as zero pages without
 * being read. */
uint64_t ram_digest(const uint8_t *ram, uint64_t npages);
/* Post-copy builds the same sum in parts: one page's term (page NULL:
 * a zero page), and every page's but those set in skip. */
uint64_t ram_digest_term(uint64_t index, const uint8_t *page);
uint64_t ram_digest_except(const uint8_t *ram, uint64_t npages, const uint64_t *skip);

#endif
