#include "migrate/throttle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrate/policy/throttle_plan.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

void mig_throttle_init(struct mig_throttle *t, struct vm *vm, uint32_t limit_ms)
{
	pthread_condattr_t a;

	memset(t, 0, sizeof(*t));
	t->vm = vm;
	t->limit_ms = limit_ms;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &a);
	pthread_condattr_destroy(&a);
}

static struct timespec ts_at(uint64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ULL),
				  .tv_nsec = (long)(ns % 1000000000ULL) };
}

/* Waits until the monotonic time `until` or a change (quit, pct):
 * true when woken by a change. Called with mu held. */
static bool wait_until(struct mig_throttle *t, uint64_t until, uint32_t pct)
{
	struct timespec ts = ts_at(until);

	while (!t->quit && t->pct == pct && clock_now_ns() < until)
		if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) == ETIMEDOUT)
			break;
	return t->quit || t->pct != pct;
}

/* Run R, hold H, again. The hold deadline is absolute: a vCPU that sees
 * the kick late (inside a long emulated instruction) holds only what is
 * left of H, so no hold is ever longer than H. */
static void *throttle_main(void *arg)
{
	struct mig_throttle *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->quit) {
		uint32_t pct = t->pct;
		uint64_t run, hold, now;

		if (!pct) {
			pthread_cond_wait(&t->cv, &t->mu);
			continue;
		}
		throttle_schedule(pct, t->limit_ms, &run, &hold);
		if (wait_until(t, clock_now_ns() + run, pct))
			continue;
		now = clock_now_ns();
		t->holds++;
		pthread_mutex_unlock(&t->mu);
		vm_hold_until(t->vm, now + hold);
		pthread_mutex_lock(&t->mu);
		if (wait_until(t, now + hold, pct))
			vm_hold_until(t->vm, 0);
	}
	pthread_mutex_unlock(&t->mu);
	vm_hold_until(t->vm, 0);
	return NULL;
}

int mig_throttle_set(struct mig_throttle *t, uint32_t pct, char *err, size_t errlen)
{
	int ret = 0;

	pthread_mutex_lock(&t->mu);
	t->pct = pct > 99 ? 99 : pct;
	pthread_cond_broadcast(&t->cv);
	if (!t->started && pct) {
		ret = -pthread_create(&t->thread, NULL, throttle_main, t);
		if (ret)
			snprintf(err, errlen, "throttle thread: %s", strerror(-ret));
		else
			t->started = true;
		if (!ret)
			pthread_setname_np(t->thread, "mig-throttle");
	}
	pthread_mutex_unlock(&t->mu);
	if (!pct)
		vm_hold_until(t->vm, 0);
	return ret;
}

uint32_t mig_throttle_pct(struct mig_throttle *t)
{
	uint32_t p;

	pthread_mutex_lock(&t->mu);
	p = t->pct;
	pthread_mutex_unlock(&t->mu);
	return p;
}

void mig_throttle_stop(struct mig_throttle *t)
{
	bool join;

	pthread_mutex_lock(&t->mu);
	t->quit = true;
	t->pct = 0;
	join = t->started;
	t->started = false;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (join)
		pthread_join(t->thread, NULL);
	vm_hold_until(t->vm, 0);
}

void mig_throttle_fini(struct mig_throttle *t)
{
	mig_throttle_stop(t);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}
