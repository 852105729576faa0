#include "migrate/throttle_ctl.h"

#include <stdio.h>
#include <string.h>

#include "migrate/mig.h"
#include "migrate/params.h"
#include "migrate/section.h"
#include "migrate/stats/stats.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

void throttle_ctl_init(struct throttle_ctl *tc, struct vm *vm, struct mig *m,
		       const struct mig_tunables *t)
{
	memset(tc, 0, sizeof(*tc));
	tc->m = m;
	tc->on = t->nonconvergence == MIG_NONCONV_THROTTLE;
	/* With delta encoding a re-sent page may cost a few bytes: a debt in
	 * pages says nothing then, and the rounds decide on bytes. */
	tc->looks = tc->on && !t->xbzrle_cache;
	tc->win_start = tc->set_at = clock_now_ns();
	throttle_plan_init(&tc->plan, t->throttle_initial, t->throttle_increment, t->throttle_max);
	mig_throttle_init(&tc->thr, vm, t->downtime_ms);
}

/* Every change of the share goes through here: the window's average. */
static int set_share(struct throttle_ctl *tc, uint32_t pct, char *err, size_t errlen)
{
	uint64_t now = clock_now_ns();

	tc->acc += (uint64_t)mig_throttle_pct(&tc->thr) * (now - tc->set_at);
	tc->set_at = now;
	return mig_throttle_set(&tc->thr, pct, err, errlen);
}

/* The share the window since the last sync ran under, on average; a new
 * window starts. */
static uint32_t window_share(struct throttle_ctl *tc)
{
	uint64_t now = clock_now_ns(), span = now - tc->win_start;
	uint64_t acc = tc->acc + (uint64_t)mig_throttle_pct(&tc->thr) * (now - tc->set_at);

	tc->win_start = tc->set_at = now;
	tc->acc = 0;
	return span ? (uint32_t)(acc / span) : mig_throttle_pct(&tc->thr);
}

static void publish(struct throttle_ctl *tc, uint32_t pct)
{
	pthread_mutex_lock(&tc->m->lock);
	tc->m->throttle_pct = pct;
	if (pct > tc->m->st.throttle_max_pct)
		tc->m->st.throttle_max_pct = pct;
	pthread_mutex_unlock(&tc->m->lock);
}

/* Inside round 0: a guest that re-dirties at least half of what goes out
 * makes a round 1 as long as round 0; waiting for the rounds to show it
 * costs that round. */
static void look(void *arg, uint64_t redirtied_pages)
{
	struct throttle_ctl *tc = arg;
	/* Bytes, as the rounds' rule counts: a zero page costs a marker. */
	uint64_t out = atomic_load(&tc->m->live_bytes), ds = out - tc->look_bytes, dd;
	uint32_t pct, was = mig_throttle_pct(&tc->thr);

	if (tc->look_ret || out < tc->look_bytes || ds < THROTTLE_PROBE_MIN_PAGES * VM_PAGE_SIZE)
		return;
	dd = redirtied_pages > tc->look_debt ? redirtied_pages - tc->look_debt : 0;
	tc->look_bytes = out;
	tc->look_debt = redirtied_pages;
	pct = throttle_plan_probe(&tc->plan, dd * VM_PAGE_SIZE, ds);
	if (pct == was)
		return;
	tc->look_ret = set_share(tc, pct, tc->err, sizeof(tc->err));
	if (tc->look_rec)
		tc->look_rec->throttle_pct = pct;
	publish(tc, pct);
}

void throttle_ctl_arm(struct throttle_ctl *tc, struct mig_pass *p, struct stats_round *rec)
{
	if (!tc->looks)
		return;
	p->progress = look;
	p->progress_arg = tc;
	p->progress_ms = THROTTLE_PROBE_MS;
	tc->look_rec = rec;
	tc->look_bytes = atomic_load(&tc->m->live_bytes);
	tc->look_debt = 0;
	tc->win_start = tc->set_at = clock_now_ns();
	tc->acc = 0;
}

int throttle_ctl_disarm(struct throttle_ctl *tc)
{
	tc->look_rec = NULL;
	return tc->look_ret;
}

int throttle_ctl_round(struct throttle_ctl *tc, struct stats_round *rec, uint64_t last_sent,
		       char *err, size_t errlen)
{
	uint32_t pct, was = mig_throttle_pct(&tc->thr);
	int ret = 0;

	if (!tc->on)
		return 0;
	pct = throttle_plan_step_under(&tc->plan, rec->dirty_pages * VM_PAGE_SIZE, last_sent,
				       window_share(tc));
	if (pct != was)
		ret = set_share(tc, pct, err, errlen);
	rec->throttle_pct = pct;
	publish(tc, pct);
	return ret;
}

void throttle_ctl_end(struct throttle_ctl *tc)
{
	mig_throttle_stop(&tc->thr);
	pthread_mutex_lock(&tc->m->lock);
	tc->m->throttle_pct = 0;
	pthread_mutex_unlock(&tc->m->lock);
}

void throttle_ctl_fini(struct throttle_ctl *tc)
{
	mig_throttle_fini(&tc->thr);
}
