#include "migrate/policy/throttle_plan.h"

#include <stdbool.h>

void throttle_plan_init(struct throttle_plan *p, uint32_t initial, uint32_t increment,
			uint32_t max)
{
	*p = (struct throttle_plan){ .initial = initial, .increment = increment, .max = max };
	if (p->max > 99)
		p->max = 99;
	if (p->initial > p->max)
		p->initial = p->max;
}

uint32_t throttle_needed_pct(uint32_t pct, uint64_t dirty_bytes, uint64_t sent_bytes,
			     uint32_t target_pct)
{
	double ratio, need;

	if (pct >= 100)
		return 100;
	if (!dirty_bytes)
		return 0;
	if (!sent_bytes)
		return 100;
	/* What the guest would dirty per byte sent at full speed. */
	ratio = (double)dirty_bytes / (double)sent_bytes * 100.0 / (double)(100 - pct);
	need = 100.0 * (1.0 - (double)target_pct / 100.0 / ratio);
	if (need <= 0)
		return 0;
	return need >= 100 ? 100 : (uint32_t)need + (need > (uint32_t)need);
}

/* A raise: at least the next step, at least what the ratio (measured
 * while the guest was held `under` percent of the time) needs. */
static uint32_t plan_raise(struct throttle_plan *p, uint64_t dirty_bytes, uint64_t sent_bytes,
			   bool stalled, uint32_t under)
{
	uint64_t next = p->pct ? (uint64_t)p->pct + p->increment : p->initial;
	uint64_t need = throttle_needed_pct(under, dirty_bytes, sent_bytes,
					    stalled ? THROTTLE_DIRTY_PCT / 2 : THROTTLE_DIRTY_PCT);

	if (need > next)
		next = need;
	p->pct = next > p->max ? p->max : (uint32_t)next;
	return p->pct;
}

uint32_t throttle_plan_step(struct throttle_plan *p, uint64_t dirty_bytes,
			    uint64_t sent_bytes)
{
	return throttle_plan_step_under(p, dirty_bytes, sent_bytes, p->pct);
}

uint32_t throttle_plan_step_under(struct throttle_plan *p, uint64_t dirty_bytes,
				  uint64_t sent_bytes, uint32_t under)
{
	bool stalled = dirty_bytes * 100 >= sent_bytes * THROTTLE_STALLED_PCT;

	if (dirty_bytes * 100 <= sent_bytes * THROTTLE_DIRTY_PCT)
		return p->pct;
	if (++p->strikes < THROTTLE_STRIKES && !stalled)
		return p->pct;
	p->strikes = 0;
	return plan_raise(p, dirty_bytes, sent_bytes, stalled, under > p->pct ? p->pct : under);
}

uint32_t throttle_plan_probe(struct throttle_plan *p, uint64_t redirtied_bytes,
			     uint64_t sent_bytes)
{
	if (redirtied_bytes * 100 <= sent_bytes * THROTTLE_DIRTY_PCT)
		return p->pct;
	return plan_raise(p, redirtied_bytes, sent_bytes,
			  redirtied_bytes * 100 >= sent_bytes * THROTTLE_STALLED_PCT, p->pct);
}

void throttle_schedule(uint32_t pct, uint32_t limit_ms, uint64_t *run_ns,
		       uint64_t *hold_ns)
{
	uint64_t h = (uint64_t)limit_ms * 1000000ULL, r;

	if (pct > 99)
		pct = 99;
	if (pct == 0 || limit_ms == 0) {
		*run_ns = *hold_ns = 0;
		return;
	}
	if (h > THROTTLE_HOLD_MAX_NS)
		h = THROTTLE_HOLD_MAX_NS;
	r = h * (100 - pct) / pct;
	*run_ns = r < THROTTLE_RUN_MIN_NS ? THROTTLE_RUN_MIN_NS : r;
	*hold_ns = h;
}
