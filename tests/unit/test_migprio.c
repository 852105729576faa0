/* mig_thread_nice: the migration's threads step back for the vCPUs, and
 * only the thread that asks does. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/mig.h"

static void *lowered(void *arg)
{
	int *out = arg;

	mig_thread_nice(7);
	out[0] = getpriority(PRIO_PROCESS, (id_t)gettid());
	mig_thread_nice(0); /* 0 leaves it as it is */
	out[1] = getpriority(PRIO_PROCESS, (id_t)gettid());
	return NULL;
}

static void test_only_the_caller(void **state)
{
	int got[2] = { -100, -100 };
	int before = getpriority(PRIO_PROCESS, (id_t)gettid());
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, lowered, got), 0);
	pthread_join(t, NULL);
	assert_int_equal(got[0], 7);
	assert_int_equal(got[1], 7);
	assert_int_equal(getpriority(PRIO_PROCESS, (id_t)gettid()), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_the_caller),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
