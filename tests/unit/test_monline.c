/* The monitor's line protocol without a VM: commands and their argument
 * counts, blanks, over-long lines, lines split across reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/monline.h"

static void test_parse(void **state)
{
	static const struct {
		const char *line;
		enum monline_cmd cmd;
		const char *a0, *a1;
	} cases[] = {
		{ "", MONLINE_EMPTY, NULL, NULL },
		{ " \t\r", MONLINE_EMPTY, NULL, NULL },
		{ "help", MONLINE_HELP, NULL, NULL },
		{ "help me please now", MONLINE_HELP, NULL, NULL },
		{ "?", MONLINE_HELP, NULL, NULL },
		{ "info status", MONLINE_INFO_STATUS, NULL, NULL },
		{ "info  migrate\r", MONLINE_INFO_MIGRATE, NULL, NULL },
		{ "info", MONLINE_UNKNOWN, NULL, NULL },
		{ "info status x", MONLINE_UNKNOWN, NULL, NULL },
		{ "stop", MONLINE_STOP, NULL, NULL },
		{ "stop now", MONLINE_UNKNOWN, NULL, NULL },
		{ "cont", MONLINE_CONT, NULL, NULL },
		{ "quit", MONLINE_QUIT, NULL, NULL },
		{ "migrate 10.0.0.2:4444", MONLINE_MIGRATE, "10.0.0.2:4444", NULL },
		{ "migrate", MONLINE_UNKNOWN, NULL, NULL },
		{ "migrate a b", MONLINE_UNKNOWN, NULL, NULL },
		{ "migrate_cancel", MONLINE_MIGRATE_CANCEL, NULL, NULL },
		{ "migrate_set_parameter downtime-ms 30", MONLINE_SET_PARAMETER, "downtime-ms", "30" },
		{ "migrate_set_parameter downtime-ms", MONLINE_UNKNOWN, NULL, NULL },
		{ "migrate_set_parameter a b c", MONLINE_UNKNOWN, NULL, NULL },
		{ "STOP", MONLINE_UNKNOWN, NULL, NULL },
	};
	struct monline l;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		monline_parse(cases[i].line, &l);
		assert_int_equal(l.cmd, cases[i].cmd);
		if (cases[i].a0)
			assert_string_equal(l.arg[0], cases[i].a0);
		else
			assert_null(l.arg[0]);
		if (cases[i].a1)
			assert_string_equal(l.arg[1], cases[i].a1);
		else
			assert_null(l.arg[1]);
	}
}

struct seen {
	char lines[4][64];
	int n, fail_at;
};

static int collect(void *opaque, const char *line)
{
	struct seen *s = opaque;

	if (s->n == s->fail_at)
		return -1;
	snprintf(s->lines[s->n++ % 4], 64, "%s", line);
	return 0;
}

static void test_split(void **state)
{
	struct seen s = { .fail_at = -1 };
	char buf[16];
	size_t len;

	(void)state;
	/* Two lines and a partial one: the partial one waits at the front. */
	strcpy(buf, "ab\ncd\nef");
	len = strlen(buf);
	assert_int_equal(monline_split(buf, &len, sizeof(buf), collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.lines[0], "ab");
	assert_string_equal(s.lines[1], "cd");
	assert_int_equal(len, 2);
	assert_string_equal(buf, "ef");
	/* The rest of it arrives. */
	strcpy(buf + len, "g\n");
	len += 2;
	assert_int_equal(monline_split(buf, &len, sizeof(buf), collect, &s), 0);
	assert_string_equal(s.lines[2], "efg");
	assert_int_equal(len, 0);
	/* A full buffer without a newline: too long to be a command. */
	memset(buf, 'x', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = 0;
	len = sizeof(buf) - 1;
	assert_int_equal(monline_split(buf, &len, sizeof(buf), collect, &s), -1);
	/* The callback refusing stops the split. */
	s = (struct seen){ .fail_at = 1 };
	strcpy(buf, "a\nb\nc\n");
	len = strlen(buf);
	assert_int_equal(monline_split(buf, &len, sizeof(buf), collect, &s), -1);
	assert_int_equal(s.n, 1);
}

/* A line longer than MONLINE_MAX is cut, not overrun. */
static void test_long_line(void **state)
{
	char line[3 * MONLINE_MAX];
	struct monline l;

	(void)state;
	memset(line, 'm', sizeof(line) - 1);
	line[sizeof(line) - 1] = 0;
	memcpy(line, "migrate ", 8);
	monline_parse(line, &l);
	assert_int_equal(l.cmd, MONLINE_MIGRATE);
	assert_int_equal(strlen(l.arg[0]), MONLINE_MAX - 1 - 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_long_line),
	};
	return cmocka_run_group_tests_name("monline", tests, NULL, NULL);
}
