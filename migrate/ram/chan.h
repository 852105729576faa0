/* Data channels: extra connections (to the same address as the main
 * stream, over the same transport) that carry the pre-copy rounds'
 * pages in parallel with each other, one sender thread and one receiver
 * thread per channel. One stream is bound to one core on both ends (the
 * copy into and out of the socket), so one stream per core keeps every
 * core of both ends busy (docs/migration.md, "Data channels").
 *
 * Ordering: a page may be sent in round r on one channel and again in
 * round r+1 on another. Every channel ends every round with SYNC(r), and
 * no receiver applies a page of round r+1 before all channels have passed
 * SYNC(r), so an older copy can never land over a newer one. The main
 * stream keeps the control frames, the final (paused) round and the state. */
#ifndef MINIVMM_MIGRATE_CHAN_H
#define MINIVMM_MIGRATE_CHAN_H

#include <stdatomic.h>
#include <stdint.h>

#include "migrate/ram/ram.h"
#include "migrate/transport/transport.h"

#define CHAN_CHUNK_PAGES 2048u /* 8 MiB: the unit channels take turns on */

struct chan_totals {
	uint64_t bytes;   /* socket bytes, all channels */
	uint64_t normal, zero, skipped;
	uint64_t xbz_pages, xbz_saved, xbz_misses, xbz_ns; /* source: delta encoding */
};

/* ---- source ---------------------------------------------------------- */
struct chan_src;
struct chan_src_cfg {
	struct vm *vm;
	struct ram_dirty *d;        /* the round's pages (rounds >= 1) */
	const volatile int *cancel; /* migrate_cancel */
	int cancel_fd;              /* interrupts blocked socket I/O */
	struct est_rate *rate;      /* shared --max-bandwidth, or NULL */
	uint64_t *sent_bm;          /* round 0 coverage (trace, post-copy, throttle), or NULL */
	const volatile int *stop;   /* set: end the round early (ram_sender.stop), or NULL */
	int timeout_ms;
	int nice;                   /* the sender threads' nice value, 0: unchanged */
	atomic_uint_fast64_t *live_bytes; /* progress counter, or NULL */
	struct xbz_cache *xbz;      /* the shared delta cache, or NULL */
	const uint8_t *session;     /* keyed: the main stream's session secret, or NULL */
	bool integrity;
};

/* Connects n channels to a, each announced by CHANNEL(index, token),
 * and starts their threads. */
int chan_src_open(struct chan_src **out, const struct transport_addr *a, uint32_t n,
		  uint64_t token,
		  const struct chan_src_cfg *cfg, char *err, size_t errlen);
/* Sends round `round` (0: every page; else the pages set in d->bm) over
 * the channels and ends it with SYNC on each; returns when all are done,
 * or the first channel's error. Meanwhile tick (may be NULL; then
 * tick_ms > 0) is called every tick_ms on the caller's thread, without
 * the channels' lock. */
int chan_src_round(struct chan_src *cs, uint32_t round, void (*tick)(void *), void *arg,
		   uint32_t tick_ms, char *err, size_t errlen);
void chan_src_totals(struct chan_src *cs, struct chan_totals *t);
void chan_src_close(struct chan_src *cs);

/* ---- target ---------------------------------------------------------- */
struct chan_tgt;
struct chan_tgt_cfg {
	struct vm *vm;
	struct ram_prefault *pf;        /* prefault helpers, or NULL */
	uint64_t *have;                 /* the received-page bitmap (ram_recv_pages) */
	const uint8_t *session;         /* keyed: the main stream's session secret */
	bool integrity;
	int timeout_ms;                 /* a frame, once begun; the handshake */
	int idle_ms;                    /* between frames while nothing else moves */
	int nice;
	/* Every connection of the migration adds what it reads (the main
	 * stream too): one that is quiet while the others move waits on,
	 * as the source is alive. NULL: no such sharing. */
	atomic_uint_fast64_t *live_bytes;
};

/* Accepts n channels on l (each must present token and a distinct
 * index; keyed (cfg->session): with a valid frame MAC of its channel
 * key) and starts a receiver for each. */
int chan_tgt_accept(struct chan_tgt **out, struct transport_listener *l, uint32_t n,
		    uint64_t token, const struct chan_tgt_cfg *cfg, char *err, size_t errlen);
/* Returns once every channel has passed SYNC(round); an error if one
 * failed, closed early or nothing came within the timeout. */
int chan_tgt_wait(struct chan_tgt *ct, uint32_t round, char *err, size_t errlen);
void chan_tgt_totals(struct chan_tgt *ct, struct chan_totals *t);
void chan_tgt_close(struct chan_tgt *ct);

#endif
