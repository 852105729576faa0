/* Bandwidth estimate, stop rule, backstops and the rate limiter: pure
 * arithmetic on measured figures (unit-tested on synthetic traces). */
#ifndef MINIVMM_MIGRATE_ESTIMATOR_H
#define MINIVMM_MIGRATE_ESTIMATOR_H

#include <stdbool.h>
#include <stdint.h>

/* A transfer shorter than this only nudges the estimate (see est_sample). */
#define EST_FULL_WEIGHT_NS 20000000ULL /* 20 ms */
#define EST_ALPHA 0.5                  /* weight of a full-length sample */

#define EST_DEFAULT_MAX_ROUNDS 30
#define EST_DEFAULT_MAX_BYTES_FACTOR 3 /* x RAM size */
#define EST_DEFAULT_MAX_TIME_MS 300000 /* 5 minutes */

struct est_config {
	uint32_t downtime_ms;
	uint64_t max_bandwidth;   /* bytes/s, 0 = unlimited */
	uint32_t max_rounds;      /* pre-copy rounds after round 0 */
	uint64_t max_bytes;       /* bytes sent before the switchover is forced */
	uint64_t max_time_ms;     /* since the migrate command */
};

struct est {
	struct est_config cfg;
	double bw_Bps;            /* smoothed, 0 until the first sample */
	double fixed_ms;          /* switchover cost besides the dirty pages */
};

enum est_decision {
	EST_CONTINUE,         /* send another round */
	EST_CONVERGED,        /* expected downtime within the limit */
	EST_STOP_ROUNDS,      /* backstops: the guest outruns the link */
	EST_STOP_BYTES,
	EST_STOP_TIME,
	EST_STOP_FLOOR,       /* nothing left that another round could shrink:
			       * the fixed cost alone is over the limit */
};
/* Below this transfer time another round cannot lower the downtime. */
#define EST_FLOOR_MS 1.0

void est_init(struct est *e, const struct est_config *cfg);
/* One measurement: bytes moved in ns of sending (one round, or part). */
void est_sample(struct est *e, uint64_t bytes, uint64_t ns);
void est_set_fixed_ms(struct est *e, double ms);
/* Bandwidth the switchover will see: the estimate, capped by the limit. */
double est_bandwidth(const struct est *e);
double est_expected_downtime_ms(const struct est *e, uint64_t dirty_bytes);
/* A converged migration still takes another round when that round is
 * expected to at least halve the bytes the pause must send. */
#define EST_REFINE_FACTOR 0.5

/* After a dirty sync: round = number of the round about to be sent;
 * dirty_rate_Bps = how fast the guest dirtied new pages since the last
 * sync (0 when unknown: then the plain stop rule applies). */
enum est_decision est_decide(const struct est *e, uint32_t round,
			     uint64_t dirty_bytes, uint64_t bytes_total,
			     uint64_t elapsed_ms, double dirty_rate_Bps);
const char *est_decision_text(enum est_decision d);

/* Rate limiter: a budget per 100 ms slice (QEMU's BUFFER_DELAY), so a
 * burst never runs ahead of the cap by more than one slice. */
#define EST_RATE_SLICE_NS 100000000ULL
struct est_rate {
	uint64_t rate;        /* bytes/s, 0 = unlimited */
	uint64_t slice_start; /* ns */
	uint64_t slice_bytes;
};
void est_rate_init(struct est_rate *r, uint64_t rate, uint64_t now_ns);
/* Accounts bytes sent at now_ns; returns how long to sleep (ns). */
uint64_t est_rate_account(struct est_rate *r, uint64_t bytes, uint64_t now_ns);

#endif
