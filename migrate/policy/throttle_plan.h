/* Throttling (on-nonconvergence throttle), the pure part: when to raise
 * the throttle and how a share of the time becomes run/hold slices. The
 * thread that applies it is migrate/throttle.c; the holds themselves are
 * taken by the vCPU threads (vmm/core/vcpu.c). docs/migration.md,
 * "Throttling". */
#ifndef MINIVMM_MIGRATE_POLICY_THROTTLE_PLAN_H
#define MINIVMM_MIGRATE_POLICY_THROTTLE_PLAN_H

#include <stdint.h>

/* A round "does not shrink" when it dirtied more than half of what the
 * previous round sent (QEMU's auto-converge threshold); two such rounds
 * (not necessarily in a row, as QEMU counts them) raise the throttle, one
 * round is enough when it dirtied THROTTLE_STALLED_PCT of what it sent
 * (it made next to no progress: the post-copy policy's rule too). Each raise is at least the share the measured ratio says the
 * next round needs to shrink to THROTTLE_DIRTY_PCT (half that after a
 * stalled round: one that re-dirtied nearly all it sent only bounds the
 * guest's rate from below, its working set having run out): QEMU's fixed
 * steps take many rounds to get there. */
#define THROTTLE_DIRTY_PCT 50
#define THROTTLE_STRIKES 2
#define THROTTLE_STALLED_PCT 90
/* A hold is at most this long (and at most the downtime limit): the
 * guest then sees many short stalls, never one long freeze. */
#define THROTTLE_HOLD_MAX_NS 20000000ULL
/* Run slices never shorter than this: below it the kicks themselves
 * (a signal and a KVM_RUN exit each) would be a noticeable cost. */
#define THROTTLE_RUN_MIN_NS 100000ULL
/* Round 0 of a guest with gigabytes takes seconds: its debt is looked
 * at this often, and only once this many pages went out since the last
 * look (a smaller sample says little). */
#define THROTTLE_PROBE_MS 100
#define THROTTLE_PROBE_MIN_PAGES 512

struct throttle_plan {
	uint32_t initial, increment, max; /* percent */
	uint32_t pct;                     /* now: 0 = off */
	uint32_t strikes;
};

void throttle_plan_init(struct throttle_plan *p, uint32_t initial, uint32_t increment,
			uint32_t max);
/* After a round's dirty sync: dirty_bytes found, sent_bytes of the round
 * before (the same window, under the share in force). Returns the throttle
 * percent to apply from now on. */
uint32_t throttle_plan_step(struct throttle_plan *p, uint64_t dirty_bytes,
			    uint64_t sent_bytes);
/* The same when the share changed during the window (round 0's looks):
 * under is the share in force on average over it, at most the share now. */
uint32_t throttle_plan_step_under(struct throttle_plan *p, uint64_t dirty_bytes,
				  uint64_t sent_bytes, uint32_t under);

/* Inside a long pass (round 0), every THROTTLE_PROBE_MS: of sent_bytes
 * sent since the last probe, the guest wrote redirtied_bytes again (the
 * next round's debt grew by that much). A pass whose debt grows by more
 * than THROTTLE_DIRTY_PCT of what it sends is a round that will not
 * shrink, known before it ends: the throttle is raised at once, by the
 * same rule as a stalled or second bad round. Returns the percent. */
uint32_t throttle_plan_probe(struct throttle_plan *p, uint64_t redirtied_bytes,
			     uint64_t sent_bytes);

/* The slices for pct (1..99) with no hold above limit_ms: hold H =
 * min(limit, THROTTLE_HOLD_MAX_NS), run R = H x (100 - pct) / pct, so
 * H / (R + H) = pct / 100. The hold limit wins over the share: when R
 * would be under THROTTLE_RUN_MIN_NS (a limit of a few ms at 99 %), R is
 * that minimum and the share comes out a little lower. pct 0: no hold. */
/* The share (0..100) under which a guest that dirtied dirty_bytes while
 * sent_bytes went out at share pct would dirty target_pct % of what is
 * sent: it ran (100 - pct) % of that time. */
uint32_t throttle_needed_pct(uint32_t pct, uint64_t dirty_bytes, uint64_t sent_bytes,
			     uint32_t target_pct);

void throttle_schedule(uint32_t pct, uint32_t limit_ms, uint64_t *run_ns,
		       uint64_t *hold_ns);

#endif
