/* Size and option parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/params.h"
#include "vmm/cli.h"
#include "vmm/core/parse.h"

static void test_sizes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(parse_size("256M", &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(parse_size("2G", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(parse_size("64k", &v), 0);
	assert_int_equal(v, 64ull << 10);
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1T", &v), 0);
	assert_int_equal(v, 1ull << 40);
	assert_int_not_equal(parse_size("", &v), 0);
	assert_int_not_equal(parse_size("M", &v), 0);
	assert_int_not_equal(parse_size("12Q", &v), 0);
	assert_int_not_equal(parse_size("-5M", &v), 0);
	assert_int_not_equal(parse_size("5MM", &v), 0);
	assert_int_not_equal(parse_size("99999999999999999999", &v), 0);
	assert_int_not_equal(parse_size("17179869184T", &v), 0); /* overflow */
}

static int parse(struct cli_opts *o, char *err, const char **args)
{
	int argc = 0;

	while (args[argc])
		argc++;
	return cli_parse(argc, (char **)args, o, err, 256);
}

static void test_defaults(void **state)
{
	struct cli_opts o;
	char err[256];
	const char *a[] = { "minivmm", "--kernel", "g.elf", NULL };

	(void)state;
	assert_int_equal(parse(&o, err, a), 0);
	assert_string_equal(o.kernel, "g.elf");
	assert_int_equal(o.mem, 256ull << 20);
	assert_int_equal(o.cpus, 1);
	assert_int_equal(o.mig.downtime_ms, 30);
	assert_int_equal(o.mig.max_bandwidth, 0);
	assert_int_equal(o.mig.channels, 2);
	assert_int_equal(o.mig_set, 0);
	assert_null(o.name);
	assert_int_equal(o.action, CLI_RUN);
	assert_false(o.mem_given);
	assert_false(o.cpus_given);
	assert_false(o.prealloc);
}

static void test_all_options(void **state)
{
	struct cli_opts o;
	char err[256];
	const char *a[] = { "minivmm", "-k", "g.elf", "--append", "wss=16 rate=max",
			    "--mem", "2G", "--cpus", "2", "--name", "vm-1.a_b",
			    "--monitor", "/tmp/m.sock", "--migrate", "127.0.0.1:4444",
			    "--migrate-after", "1.5", "--downtime-ms", "50",
			    "--max-bandwidth", "100M", "--stats-json", "s.json",
			    "--dirty-trace", "t.bin", "--verify-ram", NULL };

	(void)state;
	assert_int_equal(parse(&o, err, a), 0);
	assert_string_equal(o.append, "wss=16 rate=max");
	assert_int_equal(o.mem, 2ull << 30);
	assert_int_equal(o.cpus, 2);
	assert_string_equal(o.name, "vm-1.a_b");
	assert_string_equal(o.monitor, "/tmp/m.sock");
	assert_string_equal(o.migrate, "127.0.0.1:4444");
	assert_true(o.migrate_after > 1.49 && o.migrate_after < 1.51);
	assert_int_equal(o.mig.downtime_ms, 50);
	assert_int_equal(o.mig.max_bandwidth, 100ull << 20);
	assert_string_equal(o.mig.stats_json, "s.json");
	assert_string_equal(o.mig.dirty_trace, "t.bin");
	assert_true(o.mig.verify_ram);
	assert_true(o.mem_given);
	assert_true(o.cpus_given);
	/* not given: the default, and not marked as set */
	assert_int_equal(o.mig.channels, 2);
	assert_false(o.mig_set & (1u << mig_param_index(mig_param_by_name("channels"))));
	assert_true(o.mig_set & (1u << mig_param_index(mig_param_by_name("downtime-ms"))));
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "-k", "g",
			 "--migrate-channels", "0", NULL }), 0);
	assert_int_equal(o.mig.channels, 0);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":1",
			 "--migrate-nice", "10", NULL }), 0);
	assert_int_equal(o.mig.nice, 10);
	/* every parameter has its flag, made from the one table */
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "-k", "g",
			 "--max-rounds", "7", "--on-nonconvergence", "cancel",
			 "--max-time-s", "9", "--max-bytes-factor", "4", NULL }), 0);
	assert_int_equal(o.mig.max_rounds, 7);
	assert_int_equal(o.mig.nonconvergence, MIG_NONCONV_CANCEL);
	assert_int_equal(o.mig.max_time_s, 9);
	assert_int_equal(o.mig.max_bytes_factor, 4);
}

static void expect_error(const char **a, const char *needle)
{
	struct cli_opts o;
	char err[256] = "";

	assert_int_equal(parse(&o, err, a), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
	assert_null(strchr(err, '\n')); /* one line */
}

static void test_bad_options(void **state)
{
	(void)state;
	expect_error((const char *[]){ "minivmm", NULL }, "no --kernel");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--mem", "1M", NULL }, "too small");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--mem", "2T", NULL }, "too large");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--mem", "lots", NULL }, "not a size");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--mem", "5000001", NULL }, "multiple of 4K");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--cpus", "0", NULL }, "--cpus");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--cpus", "1000", NULL }, "--cpus");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--cpus", "two", NULL }, "--cpus");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--name", "a/b", NULL }, "--name");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--name", "", NULL }, "--name");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--bogus", NULL }, "unknown option");
	expect_error((const char *[]){ "minivmm", "-k", NULL }, "needs a value");
	expect_error((const char *[]){ "minivmm", "-k", "g", "extra", NULL }, "unexpected argument");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--downtime-ms", "0", NULL }, "--downtime-ms");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--max-bandwidth", "fast", NULL }, "--max-bandwidth");
	expect_error((const char *[]){ "minivmm", "--incoming", ":4444", "-k", "g", NULL }, "--incoming");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate-after", "3", NULL }, "--migrate-after");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate", "h:1", "--migrate-after", "-1", NULL }, "--migrate-after");
	expect_error((const char *[]){ "minivmm", "--incoming", ":1", "--prealloc", NULL }, "needs --mem");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate-channels", "9", NULL }, "--migrate-channels");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate-channels", "x", NULL }, "--migrate-channels");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate-nice", "20", NULL }, "--migrate-nice");
	expect_error((const char *[]){ "minivmm", "--migrate", "h:1", "--prealloc", NULL }, "--prealloc");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--on-nonconvergence", "maybe", NULL },
		     "force|cancel");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--max-rounds", "-1", NULL }, "--max-rounds");
	/* addresses: the transport parser's verdict, at parse time */
	expect_error((const char *[]){ "minivmm", "--incoming", "127.0.0.1:99999", NULL },
		     "--incoming: bad address '127.0.0.1:99999': port 99999 is out of range");
	expect_error((const char *[]){ "minivmm", "--incoming", "unix:", NULL }, "no path");
	expect_error((const char *[]){ "minivmm", "--migrate", "nonsense", NULL },
		     "--migrate: bad address 'nonsense'");
	expect_error((const char *[]){ "minivmm", "-k", "g", "--migrate", ":1", NULL }, "no host");
}

static void test_addresses(void **state)
{
	struct cli_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming",
			 "unix:/run/m.sock", NULL }), 0);
	assert_string_equal(o.incoming, "unix:/run/m.sock");
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--migrate",
			 "unix:m.sock", NULL }), 0);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--migrate",
			 "[::1]:4444", NULL }), 0);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming",
			 "file:/tmp/snap", NULL }), 0);
}

static void test_help_version(void **state)
{
	struct cli_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--help", NULL }), 0);
	assert_int_equal(o.action, CLI_HELP);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "-V", NULL }), 0);
	assert_int_equal(o.action, CLI_VERSION);
}

/* Keys: --gen-key stands alone; --migrate-key and --migrate-integrity are
 * parameters from the table (integrity takes on|off, default on). */
static void test_keys(void **state)
{
	struct cli_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--gen-key", "/x/k", NULL }), 0);
	assert_int_equal(o.action, CLI_GEN_KEY);
	assert_string_equal(o.gen_key, "/x/k");
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--gen-key", "/x/k",
						   "--incoming", ":1", NULL }), -EINVAL);
	assert_non_null(strstr(err, "--gen-key"));
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":1", NULL }), 0);
	assert_true(o.mig.integrity);
	assert_string_equal(o.mig.key, "");
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":1",
						   "--migrate-key", "/k", "--migrate-integrity",
						   "off", NULL }), 0);
	assert_string_equal(o.mig.key, "/k");
	assert_false(o.mig.integrity);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":1",
						   "--migrate-integrity", "maybe", NULL }), -EINVAL);
	assert_non_null(strstr(err, "on|off"));
}

static void test_modes(void **state)
{
	struct cli_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":4444", NULL }), 0);
	assert_string_equal(o.incoming, ":4444");
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--migrate", "h:1", "--name", "x", NULL }), 0);
	assert_null(o.kernel);
	assert_string_equal(o.migrate, "h:1");
	/* A target may say what it expects, and populate that RAM ahead. */
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "--incoming", ":4444",
			 "--mem", "1G", "--cpus", "2", "--prealloc", NULL }), 0);
	assert_true(o.mem_given && o.cpus_given && o.prealloc);
	assert_int_equal(o.mem, 1ull << 30);
	assert_int_equal(parse(&o, err, (const char *[]){ "minivmm", "-k", "g", "--prealloc", NULL }), 0);
	assert_true(o.prealloc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_modes),
	};
	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
