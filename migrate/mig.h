/* Per-VM migration state (vm->mig), shared by the source thread, the
 * monitor (info/cancel/set_parameter) and the target. Internal to
 * migrate/. */
#ifndef MINIVMM_MIGRATE_MIG_H
#define MINIVMM_MIGRATE_MIG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/migrate.h"
#include "migrate/params.h"
#include "migrate/policy/estimator.h"
#include "migrate/proto/stream.h"
#include "migrate/stats/stats.h"
#include "vmm/core/clock.h"
#include "vmm/core/pool.h"

struct pc_tgt;

/* Bounds every blocking read/write on the socket: a hung peer turns into
 * an error (and a resumed guest) instead of a hang. */
#define MIG_IO_TIMEOUT_MS 10000
/* Target: the longest quiet between two frames on the main connection
 * once a migration has begun (the source's --max-time-s default). */
#define MIG_IDLE_TIMEOUT_MS 300000
/* Source: how long a live pass's end-of-pass PONG may take. The target
 * answers once the pass is applied, its disk's writes flushed (up to
 * 1 GiB: seconds on a slow disk); the guest runs here meanwhile, and
 * migrate_cancel still ends the wait at once. */
#define MIG_DRAIN_TIMEOUT_MS 120000
/* Target, at COMMIT: how long RUNNING waits for the new vCPU threads to
 * reach KVM_RUN (then it goes anyway: the guest runs here whatever). */
#define MIG_ENTER_WAIT_MS 1000

enum mig_state {
	MIG_NONE,
	MIG_SETUP,       /* connecting, handshake */
	MIG_ACTIVE,      /* pre-copy rounds */
	MIG_SWITCHOVER,  /* guest paused, final pass and state */
	MIG_COMMITTED,   /* COMMIT sent: the target owns the guest */
	MIG_POSTCOPY,    /* the target runs the guest; pages still go (docs/postcopy.md) */
	MIG_POSTCOPY_PAUSED, /* post-copy link lost: both keep their part, `migrate` resumes */
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLED,
};

struct mig {
	pthread_mutex_t lock;      /* everything below that the monitor reads */
	struct pool thread;        /* the source thread: one, or none */
	uint32_t set_mask;         /* t's fields set by migrate_set_parameter (bit: table index) */
	struct mig_tunables t;     /* the next migration's settings */
	struct mig_tunables run;   /* the running migration's copy */
	char uri[512];
	enum mig_state state;
	volatile int cancel;
	struct transport_conn *conn; /* shut down by mig_destroy to unblock I/O */
	int cancel_efd;            /* eventfd: mig_cancel interrupts the stream */
	struct stats st;
	/* live figures for `info migrate` */
	uint32_t round;
	uint64_t remaining_pages;
	double expected_downtime_ms;
	double bw_Bps;
	uint32_t throttle_pct;     /* the share the vCPUs are held now */
	uint64_t t0_ns;
	/* Page bytes written so far, by every sender as it goes: `info
	 * migrate` shows progress inside a long round, not only at its end. */
	atomic_uint_fast64_t live_bytes;
	/* target */
	struct stream in;
	bool in_file;
	uint64_t end_ns;           /* END received: restore_ms starts */
	uint64_t final_ns;         /* the final round began: the source paused */
	uint64_t chan_bytes_in;    /* read on the data channels */
	char in_stats[MIG_PATH_MAX];
	/* post-copy (migrate/postcopy/): migrate_start_postcopy asks the
	 * source to switch; a `migrate URI` (source) or `migrate_recover URI`
	 * (target) while the link is lost gives recover_uri and signals cond. */
	volatile int start_postcopy;
	bool pc_possible;          /* source: the target took post-copy (POSTCOPY) */
	pthread_cond_t cond;
	char recover_uri[512];
	bool recover_pending;
	struct pc_tgt *pc;         /* target: the post-copy phase, after COMMIT */
};

/* Lowers the calling thread's priority to nice n (0: leaves it). The
 * migration's threads call it so the guest's vCPUs win the CPU they share
 * (docs/migration.md, "Priority"). */
void mig_thread_nice(int n);
const char *mig_state_name(enum mig_state s);
/* Allocates vm->mig on first use. */
struct mig *mig_get(struct vm *vm);
void *mig_source_thread(void *vm);
/* Whether a migration in state s is under way (not ended, not idle). */
bool mig_state_busy(enum mig_state s);
/* The target's frame loop alone, from ROUND 0 to COMMIT (or END, in_file),
 * on a VM the caller made, m->in attached, no listener: what the receive
 * fuzz target (tests/fuzz/fuzz_receive.c) drives without KVM. */
int mig_incoming_frames(struct vm *vm, struct mig *m, char *err, size_t errlen);

#endif
