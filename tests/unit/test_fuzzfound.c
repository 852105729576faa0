/* Regression tests for what the fuzz targets found (docs/fuzzing.md,
 * "Found and fixed"): each case is the smallest input that showed it,
 * run through the code that misbehaved. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/params.h"

/* fuzz_monitor: `migrate_set_parameter verify-ram on23` read an unset
 * bool (UBSan: "load of value N, which is not a valid value for type
 * 'bool'"); a refused value must leave the parameter as it was. */
static void test_param_bool_refused(void **state)
{
	const struct mig_param *p = mig_param_by_name("verify-ram");
	struct mig_tunables t;
	char err[256], v[64];

	(void)state;
	assert_non_null(p);
	for (int i = 0; i < 2; i++) {
		mig_tunables_default(&t);
		assert_int_equal(mig_param_set(&t, p, i ? "on" : "off", err, sizeof(err)), 0);
		assert_int_equal(mig_param_set(&t, p, "on23", err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "verify-ram 'on23'"));
		mig_param_format(&t, p, v, sizeof(v));
		assert_string_equal(v, i ? "on" : "off");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_param_bool_refused),
	};
	return cmocka_run_group_tests_name("fuzzfound", tests, NULL, NULL);
}
