/* Throttling: when the plan raises the throttle, and the run/hold slices
 * it becomes (no hold above the downtime limit, the share as asked). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "migrate/policy/throttle_plan.h"

static void test_plan_steps(void **state)
{
	struct throttle_plan p;

	(void)state;
	throttle_plan_init(&p, 20, 10, 99);
	/* Shrinking rounds (dirty <= 50 % of what was sent) never throttle. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(throttle_plan_step(&p, 50, 100), 0);
	/* Two rounds that do not shrink: the initial step, 20 %, which is
	 * more than the 52/100 ratio needs (4 %). */
	assert_int_equal(throttle_plan_step(&p, 52, 100), 0);
	assert_int_equal(throttle_plan_step(&p, 52, 100), 20);
	/* Then +increment every second bad round, a good one in between
	 * does not reset the count (QEMU's rule), while the ratio asks for
	 * less than that. */
	assert_int_equal(throttle_plan_step(&p, 55, 100), 20);
	assert_int_equal(throttle_plan_step(&p, 10, 100), 20);
	assert_int_equal(throttle_plan_step(&p, 55, 100), 30);
	/* A second strike asks for what the ratio needs when that is more
	 * than the increment: 85/100 at 30 % is 1.21 per byte at full speed,
	 * so 1 - 0.5 / 1.21 = 58.8 %, rounded up. */
	assert_int_equal(throttle_plan_step(&p, 55, 100), 30);
	assert_int_equal(throttle_plan_step(&p, 85, 100), 59);
	for (int i = 0; i < 40; i++)
		throttle_plan_step(&p, 200, 100);
	assert_int_equal(p.pct, 99);
	/* A round that dirtied 90 % of what it sent made next to no progress
	 * (stalled): at once (89 % waits for a second strike), aiming at a
	 * quarter, since the real rate is higher: 0.9 per byte: 72.2 %. */
	throttle_plan_init(&p, 20, 10, 99);
	assert_int_equal(throttle_plan_step(&p, 89, 100), 0);
	throttle_plan_init(&p, 20, 10, 99);
	assert_int_equal(throttle_plan_step(&p, 90, 100), 73);
	/* Measured under 73 %: 200/100 is 7.4 per byte at full speed: 97 %. */
	assert_int_equal(throttle_plan_step(&p, 200, 100), 97);
	for (int i = 0; i < 40; i++)
		throttle_plan_step(&p, 200, 100);
	assert_int_equal(p.pct, 99);
	/* The ceiling is the parameter's. */
	throttle_plan_init(&p, 40, 50, 70);
	assert_int_equal(throttle_plan_step(&p, 51, 100), 0);
	assert_int_equal(throttle_plan_step(&p, 51, 100), 40);
	throttle_plan_step(&p, 51, 100);
	assert_int_equal(throttle_plan_step(&p, 51, 100), 70);
	/* initial above max is clamped. */
	throttle_plan_init(&p, 90, 10, 50);
	assert_int_equal(throttle_plan_step(&p, 1, 0), 50);
}

/* Inside round 0: no strikes to wait for, one look that shows the debt
 * growing by more than half of what went out raises the throttle. */
static void test_probe_raises_at_once(void **state)
{
	struct throttle_plan p;

	(void)state;
	throttle_plan_init(&p, 20, 10, 99);
	/* Half or less: nothing, however often. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(throttle_plan_probe(&p, 50, 100), 0);
	assert_int_equal(p.pct, 0);
	/* 60/100: the initial step (the ratio asks for 17 %). */
	assert_int_equal(throttle_plan_probe(&p, 60, 100), 20);
	/* Measured under 20 %: 95/100 is 1.19 per byte at full speed, and
	 * stalled (>= 90 %): aim at a quarter: 1 - 0.25 / 1.19 = 79 %. */
	assert_int_equal(throttle_plan_probe(&p, 95, 100), 79);
	/* A look that shrinks keeps the share (the throttle is never lowered
	 * inside a migration). */
	assert_int_equal(throttle_plan_probe(&p, 10, 100), 79);
	/* Still stalled at 79 %: the ceiling. */
	assert_int_equal(throttle_plan_probe(&p, 100, 100), 95);
	assert_int_equal(throttle_plan_probe(&p, 100, 100), 99);
	/* The rounds' rule goes on from the share the looks reached. */
	assert_int_equal(throttle_plan_step(&p, 100, 100), 99);
	throttle_plan_init(&p, 20, 10, 60);
	assert_int_equal(throttle_plan_probe(&p, 100, 100), 60);
}

/* The first sync after round 0 measures a window most of which ran below
 * the share the looks reached: the ratio is read under the window's
 * average share, not today's (which would overshoot). */
static void test_step_under_window_share(void **state)
{
	struct throttle_plan p, q;

	(void)state;
	throttle_plan_init(&p, 20, 10, 99);
	throttle_plan_probe(&p, 60, 100);
	assert_int_equal(throttle_plan_probe(&p, 95, 100), 79);
	q = p;
	/* 90/100 read as measured under 79 %: 4.3 per byte, 95 %. */
	assert_int_equal(throttle_plan_step(&q, 90, 100), 95);
	/* Under 20 % on average: 1.125 per byte needs 78 %, so the step
	 * (79 + 10) decides. */
	assert_int_equal(throttle_plan_step_under(&p, 90, 100, 20), 89);
	/* An average above today's share is clamped to it: read under 50 %,
	 * 1.8 per byte, 87 %. */
	q.pct = 50;
	q.strikes = 0;
	assert_int_equal(throttle_plan_step_under(&q, 90, 100, 80), 87);
}

/* The share the measured ratio needs: the next round dirties half of
 * what is sent. */
static void test_needed_pct(void **state)
{
	(void)state;
	assert_int_equal(throttle_needed_pct(0, 50, 100, 50), 0);
	assert_int_equal(throttle_needed_pct(0, 100, 100, 50), 50);
	assert_int_equal(throttle_needed_pct(0, 100, 100, 25), 75);
	assert_int_equal(throttle_needed_pct(0, 400, 100, 50), 88); /* 87.5, up */
	/* Measured under 50 %: at full speed it dirtied twice that. */
	assert_int_equal(throttle_needed_pct(50, 100, 100, 50), 75);
	assert_int_equal(throttle_needed_pct(0, 0, 100, 50), 0);
	assert_int_equal(throttle_needed_pct(0, 1, 0, 50), 100);
	assert_int_equal(throttle_needed_pct(99, 100, 100, 50), 100);
}

static void test_schedule_holds_within_limit(void **state)
{
	(void)state;
	for (uint32_t limit = 1; limit <= 1000; limit += limit < 40 ? 1 : 97)
		for (uint32_t pct = 1; pct <= 99; pct++) {
			uint64_t r, h;
			double share;

			throttle_schedule(pct, limit, &r, &h);
			/* No single hold above the downtime limit, nor the cap. */
			assert_true(h <= (uint64_t)limit * 1000000ULL);
			assert_true(h <= THROTTLE_HOLD_MAX_NS);
			assert_true(h > 0);
			assert_true(r >= THROTTLE_RUN_MIN_NS);
			share = (double)h / (double)(r + h);
			/* The share as asked, unless the minimum run slice had
			 * to win (then a little lower, never higher). */
			assert_true(share <= pct / 100.0 + 1e-6);
			if (r > THROTTLE_RUN_MIN_NS)
				assert_true(share >= pct / 100.0 - 1e-6);
		}
}

static void test_schedule_examples(void **state)
{
	uint64_t r, h;

	(void)state;
	/* QEMU at 99 %: 990 ms holds. Ours at the default 30 ms limit: 20 ms
	 * holds, ~0.2 ms runs. */
	throttle_schedule(99, 30, &r, &h);
	assert_int_equal(h, 20000000ULL);
	assert_int_equal(r, 202020ULL);
	throttle_schedule(20, 30, &r, &h);
	assert_int_equal(h, 20000000ULL);
	assert_int_equal(r, 80000000ULL);
	/* A 5 ms limit: 5 ms holds. */
	throttle_schedule(50, 5, &r, &h);
	assert_int_equal(h, 5000000ULL);
	assert_int_equal(r, 5000000ULL);
	/* 0: off. */
	throttle_schedule(0, 30, &r, &h);
	assert_int_equal(h, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_steps),
		cmocka_unit_test(test_probe_raises_at_once),
		cmocka_unit_test(test_step_under_window_share),
		cmocka_unit_test(test_needed_pct),
		cmocka_unit_test(test_schedule_holds_within_limit),
		cmocka_unit_test(test_schedule_examples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
