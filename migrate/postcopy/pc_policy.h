/* When the source switches to post-copy (docs/postcopy.md, "Switching"). */
#ifndef MINIVMM_MIGRATE_POSTCOPY_PC_POLICY_H
#define MINIVMM_MIGRATE_POSTCOPY_PC_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "migrate/params.h"
#include "migrate/policy/estimator.h"

/* After the sync of round r found `bytes` pending (`before`: what the
 * sync before it left, or for r = 1 what round 0 sent), pre-copy not
 * converged (why): whether to switch now.
 * asked: migrate_start_postcopy was given. Pure. */
bool pc_policy_due(const struct mig_tunables *t, bool asked, enum est_decision why, uint32_t r,
		   uint64_t bytes, uint64_t before);

/* At the switch, the pages the vCPUs' registers point at go with the
 * state (migrate/ram/section_save.c): at most this many, and no more than
 * this share of the downtime limit at the estimated bandwidth. Each saves
 * the guest a fault's round trip on the target for one page's transfer
 * in the pause. */
#define PC_HOT_MAX 64
#define PC_HOT_SHARE 0.1
/* After them, the pages the guest wrote in each of two windows of this
 * long just before the pause (migrate/ram/hotwin.h): each window holds a
 * tick of any timer at 200 Hz or more (Linux's HZ is 100 to 1000). */
#define PC_HOT_WINDOW_US 5000u

/* The push's send-queue bound during post-copy (bytes), for a link of
 * bw_Bps with base round trip min_rtt_us and segments of mss bytes: four
 * times the bandwidth-delay product plus PC_PUSH_QUEUE_MIN, at least four
 * segments, at most PC_PUSH_QUEUE_MAX. Pure. */
#define PC_PUSH_QUEUE_MIN (16u << 10)
#define PC_PUSH_QUEUE_MAX (4u << 20)
uint32_t pc_policy_push_queue(double bw_Bps, uint32_t min_rtt_us, uint32_t mss);

/* The push in pieces (pc_policy_push_piece), each written only while the
 * main connection holds less than the gate unsent or unacknowledged
 * (pc_pace.h): one bandwidth-delay product for a link of bw_Bps (0:
 * unknown) with base round trip min_rtt_us, plus PC_PUSH_GATE_SLACK for
 * the push's own wake-up; at least four segments of mss bytes, at most
 * PC_PUSH_QUEUE_MAX. Pure. */
#define PC_PUSH_GATE_SLACK (8u << 10)
uint32_t pc_policy_push_gate(double bw_Bps, uint32_t min_rtt_us, uint32_t mss);
#define PC_PUSH_PIECE_PAGES 2u
/* Pages per piece under a gate of `gate` bytes: a quarter of it (a reply
 * then waits behind at most about 1.25 gates), at least
 * PC_PUSH_PIECE_PAGES, at most a frame's PC_BATCH_PAGES. Pure. */
uint32_t pc_policy_push_piece(uint32_t gate);
/* An estimate below this is a few headers over a round trip (the switch
 * came before round 0 sent anything), not a link: unknown. */
#define PC_PUSH_BW_MIN 1e6
/* How long the push sleeps with `over` bytes above the gate, the queue
 * draining at drain_Bps (0: unknown, then as if PC_PUSH_DRAIN_GUESS):
 * until they have drained, within [PC_PUSH_SLEEP_MIN_NS,
 * PC_PUSH_SLEEP_MAX_NS]. Pure. */
#define PC_PUSH_SLEEP_MIN_NS 10000u
#define PC_PUSH_SLEEP_MAX_NS 2000000u
#define PC_PUSH_DRAIN_GUESS 1e8
uint64_t pc_policy_push_sleep_ns(uint32_t over, double drain_Bps);
/* The gate's drain samples span at least this; one wait at most that. */
#define PC_PUSH_DRAIN_SAMPLE_NS 50000u
#define PC_PUSH_WAIT_MAX_NS 20000000u

#endif
