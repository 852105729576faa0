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

/* The push's send-queue bound during post-copy (bytes), for a link of
 * bw_Bps with base round trip min_rtt_us and segments of mss bytes: four
 * times the bandwidth-delay product plus PC_PUSH_QUEUE_MIN, at least four
 * segments, at most PC_PUSH_QUEUE_MAX. Pure. */
#define PC_PUSH_QUEUE_MIN (16u << 10)
#define PC_PUSH_QUEUE_MAX (4u << 20)
uint32_t pc_policy_push_queue(double bw_Bps, uint32_t min_rtt_us, uint32_t mss);

#endif
