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

#endif
