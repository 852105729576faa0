/* Bandwidth estimator and stop rule (docs/migration.md explains the
 * choices).
 *
 * Estimate: each round's send phase is one sample (bytes / wall time of
 * the writes, dirty-log sync excluded since it does not scale with bytes).
 * Samples are smoothed with an EWMA whose weight shrinks for short
 * transfers: a 1 ms round on an idle guest is mostly syscall and wake-up
 * noise and must not swing the estimate that a 200 ms round 0 set. */
#include "migrate/policy/estimator.h"

#include <stddef.h>

void est_init(struct est *e, const struct est_config *cfg)
{
	e->cfg = *cfg;
	e->bw_Bps = 0;
	e->fixed_ms = 0;
}

void est_sample(struct est *e, uint64_t bytes, uint64_t ns)
{
	double bw, w;

	if (ns == 0 || bytes == 0)
		return;
	bw = (double)bytes * 1e9 / (double)ns;
	if (e->bw_Bps <= 0) {
		e->bw_Bps = bw;
		return;
	}
	w = EST_ALPHA * (ns >= EST_FULL_WEIGHT_NS ? 1.0 :
			 (double)ns / (double)EST_FULL_WEIGHT_NS);
	e->bw_Bps = (1 - w) * e->bw_Bps + w * bw;
}

void est_set_fixed_ms(struct est *e, double ms)
{
	e->fixed_ms = ms > 0 ? ms : 0;
}

double est_bandwidth(const struct est *e)
{
	double bw = e->bw_Bps;

	/* The final pass is sent at the same cap as the rounds. */
	if (e->cfg.max_bandwidth && (bw <= 0 || bw > (double)e->cfg.max_bandwidth))
		bw = (double)e->cfg.max_bandwidth;
	return bw;
}

double est_expected_downtime_ms(const struct est *e, uint64_t dirty_bytes)
{
	double bw = est_bandwidth(e);

	if (bw <= 0)
		return dirty_bytes ? 1e12 : e->fixed_ms;
	return (double)dirty_bytes * 1000.0 / bw + e->fixed_ms;
}

static enum est_decision backstop(const struct est *e, uint32_t round,
				   uint64_t bytes_total, uint64_t elapsed_ms)
{
	if (e->cfg.max_rounds && round > e->cfg.max_rounds)
		return EST_STOP_ROUNDS;
	if (e->cfg.max_bytes && bytes_total >= e->cfg.max_bytes)
		return EST_STOP_BYTES;
	if (e->cfg.max_time_ms && elapsed_ms >= e->cfg.max_time_ms)
		return EST_STOP_TIME;
	return EST_CONTINUE;
}

enum est_decision est_decide(const struct est *e, uint32_t round,
			     uint64_t dirty_bytes, uint64_t bytes_total,
			     uint64_t elapsed_ms, double dirty_rate_Bps)
{
	double expected = est_expected_downtime_ms(e, dirty_bytes);
	double pages_ms = expected - e->fixed_ms;
	enum est_decision cap = backstop(e, round, bytes_total, elapsed_ms);

	if (expected <= (double)e->cfg.downtime_ms) {
		/* Within the limit; but when the link outruns the guest, one
		 * more round costs about the pause it saves, once, and the
		 * guest sees a shorter pause. While sending this set the
		 * guest dirties about rate x time; go on if that is at most
		 * half the set. Each such round halves the pause, so this
		 * ends within a few rounds (or at the floor or a cap). */
		if (cap == EST_CONTINUE && pages_ms >= EST_FLOOR_MS && dirty_rate_Bps > 0 &&
		    dirty_rate_Bps * pages_ms / 1000.0 <= EST_REFINE_FACTOR * (double)dirty_bytes)
			return EST_CONTINUE;
		return EST_CONVERGED;
	}
	if (pages_ms < EST_FLOOR_MS)
		return EST_STOP_FLOOR;
	return cap;
}

const char *est_decision_text(enum est_decision d)
{
	switch (d) {
	case EST_CONTINUE: return "continue";
	case EST_CONVERGED: return "converged";
	case EST_STOP_ROUNDS: return "round cap reached";
	case EST_STOP_BYTES: return "byte cap reached";
	case EST_STOP_TIME: return "time cap reached";
	case EST_STOP_FLOOR: return "fixed switchover cost over the limit";
	}
	return "?";
}

void est_rate_init(struct est_rate *r, uint64_t rate, uint64_t now_ns)
{
	r->rate = rate;
	r->slice_start = now_ns;
	r->slice_bytes = 0;
}

uint64_t est_rate_account(struct est_rate *r, uint64_t bytes, uint64_t now_ns)
{
	uint64_t budget, end;

	if (!r->rate)
		return 0;
	if (now_ns - r->slice_start >= EST_RATE_SLICE_NS) {
		/* Carry over the excess so big batches average out. */
		uint64_t slices = (now_ns - r->slice_start) / EST_RATE_SLICE_NS;
		uint64_t credit = r->rate / 10 * slices;

		r->slice_bytes = r->slice_bytes > credit ? r->slice_bytes - credit : 0;
		r->slice_start += slices * EST_RATE_SLICE_NS;
	}
	r->slice_bytes += bytes;
	budget = r->rate / 10;
	if (r->slice_bytes <= budget)
		return 0;
	/* Sleep until the excess fits in the following slices. */
	end = r->slice_start + (uint64_t)((double)r->slice_bytes * 1e9 / (double)r->rate);
	return end > now_ns ? end - now_ns : 0;
}
