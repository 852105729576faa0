/* Bandwidth estimator, stop rule, backstops and rate limiter on synthetic
 * traces. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "migrate/policy/estimator.h"

#define MS 1000000ULL

static struct est make(uint32_t downtime, uint64_t cap)
{
	struct est e;
	struct est_config c = { .downtime_ms = downtime, .max_bandwidth = cap,
				.max_rounds = 30, .max_bytes = 3ULL << 30,
				.max_time_ms = 60000 };

	est_init(&e, &c);
	return e;
}

static void test_first_sample_sets_estimate(void **state)
{
	struct est e = make(30, 0);

	(void)state;
	assert_true(est_bandwidth(&e) == 0);
	/* no estimate yet: any dirty byte means "unknown, keep going" */
	assert_int_equal(est_decide(&e, 1, 4096, 0, 0, 0), EST_CONTINUE);
	est_sample(&e, 1000000000ULL, 250 * MS); /* 4 GB/s */
	assert_true(fabs(est_bandwidth(&e) - 4e9) < 1e3);
}

static void test_short_samples_barely_move(void **state)
{
	struct est e = make(30, 0);

	(void)state;
	est_sample(&e, 1000000000ULL, 250 * MS); /* 4 GB/s over 250 ms */
	est_sample(&e, 1000, 1 * MS);            /* 1 MB/s over 1 ms: noise */
	assert_true(est_bandwidth(&e) > 3.8e9);
	est_sample(&e, 100000000ULL, 100 * MS);  /* 1 GB/s, full weight */
	assert_true(fabs(est_bandwidth(&e) - (0.5 * 3.9e9 + 0.5 * 1e9)) < 0.1e9);
	est_sample(&e, 0, 10 * MS);              /* ignored */
	est_sample(&e, 10, 0);
	assert_true(est_bandwidth(&e) > 2e9);
}

static void test_stop_rule(void **state)
{
	struct est e = make(30, 0);

	(void)state;
	est_sample(&e, 1000000000ULL, 1000 * MS); /* 1 GB/s = 1 MB/ms */
	est_set_fixed_ms(&e, 5);
	/* 20 MB -> 20 ms + 5 ms fixed = 25 ms: stop */
	assert_true(fabs(est_expected_downtime_ms(&e, 20000000) - 25) < 0.01);
	assert_int_equal(est_decide(&e, 1, 20000000, 0, 0, 0), EST_CONVERGED);
	/* 26 MB -> 31 ms: another round */
	assert_int_equal(est_decide(&e, 1, 26000000, 0, 0, 0), EST_CONTINUE);
	/* the fixed cost alone can exceed the limit: rounds cannot help once
	 * the dirty pages take less than EST_FLOOR_MS */
	est_set_fixed_ms(&e, 31);
	assert_int_equal(est_decide(&e, 1, 0, 0, 0, 0), EST_STOP_FLOOR);
	assert_int_equal(est_decide(&e, 1, 900000, 0, 0, 0), EST_STOP_FLOOR);
	assert_int_equal(est_decide(&e, 1, 5000000, 0, 0, 0), EST_CONTINUE);
	est_set_fixed_ms(&e, -3);
	assert_true(est_expected_downtime_ms(&e, 0) == 0);
}

static void test_bandwidth_cap(void **state)
{
	struct est e = make(30, 1000000); /* 1 MB/s cap */

	(void)state;
	assert_true(est_bandwidth(&e) == 1e6); /* the cap before any sample */
	est_sample(&e, 4000000000ULL, 1000 * MS);
	assert_true(est_bandwidth(&e) == 1e6);
	assert_int_equal(est_decide(&e, 1, 29000, 0, 0, 0), EST_CONVERGED);
	assert_int_equal(est_decide(&e, 1, 31000, 0, 0, 0), EST_CONTINUE);
}

static void test_backstops(void **state)
{
	struct est e = make(30, 0);

	(void)state;
	est_sample(&e, 100000000ULL, 1000 * MS); /* 100 MB/s: 3 MB in 30 ms */
	assert_int_equal(est_decide(&e, 30, 50000000, 0, 0, 0), EST_CONTINUE);
	assert_int_equal(est_decide(&e, 31, 50000000, 0, 0, 0), EST_STOP_ROUNDS);
	assert_int_equal(est_decide(&e, 5, 50000000, 3ULL << 30, 0, 0), EST_STOP_BYTES);
	assert_int_equal(est_decide(&e, 5, 50000000, 0, 60000, 0), EST_STOP_TIME);
	/* convergence wins over a backstop reached at the same time */
	assert_int_equal(est_decide(&e, 31, 1000, 3ULL << 30, 60000, 0), EST_CONVERGED);
	assert_string_equal(est_decision_text(EST_STOP_BYTES), "byte cap reached");
}

/* A synthetic pre-copy on a 2 GB/s link, starting from 512 MB: each round
 * sends the pending set while the guest dirties rate x its duration (at
 * most 2 GB). told_rate is what the engine tells est_decide (0: unknown).
 * Returns the round at which the rule stopped; *left = the final set. */
static uint32_t run_trace(struct est *e, double rate, double told_rate, double *left)
{
	double bw = 2e9, dirty = 512e6;
	uint32_t r;

	for (r = 1; r < 100; r++) {
		double secs = dirty / bw;

		est_sample(e, (uint64_t)dirty, (uint64_t)(secs * 1e9));
		dirty = rate * secs > 2e9 ? 2e9 : rate * secs;
		if (est_decide(e, r, (uint64_t)dirty, 0, 0, told_rate) != EST_CONTINUE)
			break;
	}
	*left = dirty;
	return r;
}

/* The rule must stop exactly when remaining/B + fixed <= limit. */
static void test_synthetic_trace(void **state)
{
	struct est e = make(30, 0);
	double left;

	(void)state;
	est_set_fixed_ms(&e, 2);
	/* round 1 sends 512 MB in 256 ms, leaving 128 MB (64 + 2 ms: go on);
	 * round 2 sends them in 64 ms, leaving 32 MB (16 + 2 ms <= 30: stop) */
	assert_int_equal(run_trace(&e, 5e8, 0, &left), 2);
	assert_true(est_expected_downtime_ms(&e, (uint64_t)left) <= 30);
	/* a guest faster than the link never converges: the round cap ends it */
	e = make(30, 0);
	assert_int_equal(run_trace(&e, 3e9, 0, &left), 31);
}

/* Within the limit, rounds that halve the pause are still taken; rounds
 * that would not are not. */
static void test_refine_while_it_halves(void **state)
{
	struct est e = make(30, 0);
	double left;

	(void)state;
	est_set_fixed_ms(&e, 2);
	/* 512 -> 128 -> 32 (within the limit, but the guest dirties only 8
	 * while it is sent) -> 8 -> 2 -> 0.5 MB: below the 1 ms floor. */
	assert_int_equal(run_trace(&e, 5e8, 5e8, &left), 5);
	assert_true(est_expected_downtime_ms(&e, (uint64_t)left) < 3);
	/* A guest dirtying at 3/4 of the link: another round would not halve
	 * the set, so the plain rule decides. */
	e = make(30, 0);
	est_set_fixed_ms(&e, 2);
	est_sample(&e, 100000000, 50000000);
	assert_int_equal(est_decide(&e, 2, 20000000, 0, 0, 1.5e9), EST_CONVERGED);
	assert_int_equal(est_decide(&e, 2, 20000000, 0, 0, 0.9e9), EST_CONTINUE);
	/* No refinement past a backstop. */
	assert_int_equal(est_decide(&e, 31, 20000000, 0, 0, 0.9e9), EST_CONVERGED);
}

static void test_rate_limiter(void **state)
{
	struct est_rate r;
	uint64_t t = 1000 * MS, slept = 0;

	(void)state;
	est_rate_init(&r, 0, t);
	assert_int_equal(est_rate_account(&r, 1ULL << 30, t), 0);
	est_rate_init(&r, 10000000, t); /* 10 MB/s: 1 MB per 100 ms slice */
	assert_int_equal(est_rate_account(&r, 500000, t), 0);
	/* 2 MB in the first slice: wait until 200 ms */
	slept = est_rate_account(&r, 1500000, t);
	assert_int_equal(slept, 200 * MS);
	/* after sleeping, the next slice has its budget back minus the debt */
	t += slept;
	assert_int_equal(est_rate_account(&r, 0, t), 0);
	/* sending 10 MB in 1 s worth of batches averages out at 10 MB/s */
	est_rate_init(&r, 10000000, 0);
	t = 0;
	for (int i = 0; i < 10; i++)
		t += est_rate_account(&r, 1000000, t) + 1;
	assert_true(t >= 800 * MS && t <= 1000 * MS + 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_sample_sets_estimate),
		cmocka_unit_test(test_short_samples_barely_move),
		cmocka_unit_test(test_stop_rule),
		cmocka_unit_test(test_bandwidth_cap),
		cmocka_unit_test(test_backstops),
		cmocka_unit_test(test_synthetic_trace),
		cmocka_unit_test(test_refine_while_it_halves),
		cmocka_unit_test(test_rate_limiter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
