/* The source's throttle control for on-nonconvergence throttle: when to
 * raise the share (the plan, migrate/policy/throttle_plan.h), round 0's
 * looks at its own debt (mig_pass.progress), applying it (the throttle
 * thread, migrate/throttle.h) and publishing it (round records, `info
 * migrate`). Owned by the source thread. docs/migration.md, "Throttling". */
#ifndef MINIVMM_MIGRATE_THROTTLE_CTL_H
#define MINIVMM_MIGRATE_THROTTLE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/policy/throttle_plan.h"
#include "migrate/throttle.h"

struct mig;
struct mig_pass;
struct mig_tunables;
struct stats_round;
struct vm;

struct throttle_ctl {
	struct mig *m;
	bool on;                  /* on-nonconvergence throttle */
	bool looks;               /* round 0 looks at its debt (not with delta encoding) */
	struct throttle_plan plan;
	struct mig_throttle thr;
	/* Round 0's looks: the figures at the last one (bytes out, pages
	 * written again), the round's record, and a throttle that failed to
	 * start (with its message). */
	uint64_t look_bytes, look_debt;
	struct stats_round *look_rec;
	int look_ret;
	/* The share in force since the last sync, time-weighted: the looks
	 * change it inside a window the next sync measures as a whole. */
	uint64_t win_start, set_at, acc; /* ns, ns, percent x ns */
	char err[256];
};

void throttle_ctl_init(struct throttle_ctl *tc, struct vm *vm, struct mig *m,
		       const struct mig_tunables *t);
/* Before round 0's pass: gives p its progress callback when looks are on
 * (rec: round 0's record). */
void throttle_ctl_arm(struct throttle_ctl *tc, struct mig_pass *p, struct stats_round *rec);
/* After that pass: -errno if the throttle could not start during it
 * (the message in tc->err), else 0. */
int throttle_ctl_disarm(struct throttle_ctl *tc);
/* After a round's sync: rec's dirty pages against last_sent bytes; sets
 * rec->throttle_pct for the pass that follows. */
int throttle_ctl_round(struct throttle_ctl *tc, struct stats_round *rec, uint64_t last_sent,
		       char *err, size_t errlen);
/* Before the pause and on every way out: the guest runs at full speed. */
void throttle_ctl_end(struct throttle_ctl *tc);
void throttle_ctl_fini(struct throttle_ctl *tc);

#endif
