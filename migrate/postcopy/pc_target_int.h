/* The target's post-copy state, shared by pc_target.c (lifecycle,
 * placement, the push receiver, recovery) and pc_fault.c (the fault
 * thread). Nothing outside migrate/postcopy/ uses it. */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_TARGET_INT_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_TARGET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/postcopy/pc_target.h"
#include "migrate/proto/stream.h"
#include "vmm/core/pool.h"
#include "vmm/core/ramdrop.h"

/* With deltas, what of the grave the receiver frees at once. */
#define PC_GRAVE_PIECE_PAGES (RAMDROP_FREE_PIECE / 4096u)
/* How often a page alone is placed again when the kernel says "again". */
#define PC_FILL_TRIES 100
/* Threads that can wait on a fault at once: vCPUs plus the VMM's own. */
#define PC_MAX_WAITERS 256
/* Fault latencies kept for the percentiles; past this, max and sum only. */
#define PC_MAX_LATENCIES (1u << 20)

struct pc_waiter {
	uint64_t page;
	uint32_t tid;
	uint64_t t_ns;
};

struct pc_tgt {
	struct vm *vm;
	struct mig *m;
	uint64_t npages, token;
	uint64_t *missing;            /* lacked at the switch; fixed once armed */
	uint64_t *placed;             /* under mu */
	uint64_t *requested;          /* fault thread: asked on the current return path */
	uint64_t nmissing, nplaced;   /* under mu */
	int uffd;
	int wake_efd;                 /* wakes the fault thread: new return path, quit */
	struct stream rp;             /* fault thread's, while rp_ok */
	struct stream rp_new;         /* a recovered return path, handed over under mu */
	struct stream main;           /* the push receiver's, after COMMIT */
	struct pool fault_thr, recv_thr;
	/* The stale copies dropped at the switch, freed by grave_thr once the
	 * guest runs (or by destroy, if it never did). With deltas they are
	 * the bases: kept says which pages' copies the grave holds (fixed once
	 * armed), and the push receiver frees each piece of the grave once
	 * every kept page in it is placed (grave_gone, its own). */
	struct ramdrop drop;
	struct pool grave_thr;
	bool delta;
	uint64_t *kept, nkept;
	uint64_t *grave_gone;         /* per PC_GRAVE_PIECE_PAGES */
	pthread_mutex_t mu;
	bool quit, rp_ok, done, digest;
	uint64_t digest_want, digest_sum;
	struct pc_waiter w[PC_MAX_WAITERS];
	int nw;
	double *lat;                  /* ms, PC_MAX_LATENCIES */
	size_t nlat;
	double lat_max, block_ms;
	uint64_t faults, refaults, zero_faults, req_pages, got_rp, got_push, got_delta, dups;
	uint64_t t_switch, t_commit;
	atomic_uint_fast64_t bytes_closed; /* read on connections since replaced */
};

/* A connection on lst whose first frame (type want) presents token. */
int pc_accept_token(struct transport_listener *lst, int wait_ms, uint32_t want, uint64_t token,
		 struct stream *s, char *err, size_t errlen);

/* pc_fault.c */
void *pc_fault_main(void *arg);
/* pc_target.c: places a run (data NULL: zero pages) and resolves the
 * faults waiting on it; 0 or -errno. */
int pc_place(struct pc_tgt *pc, uint64_t first, uint64_t count, const uint8_t *data,
	     bool requested, char *err, size_t errlen);
/* Every page is here: tells the source (once, from whichever thread
 * placed the last one). */
void pc_maybe_done(struct pc_tgt *pc);
/* The return path failed (fault thread): the receiver is told by a
 * shut-down main connection and pauses the guest. */
void pc_rp_lost(struct pc_tgt *pc, const char *why);

#endif
