/* Files minivmm creates (design notes 12): new ones 0600, never through a
 * symlink, an existing one not overwritten; the stats file's temporary
 * name is not predictable; the monitor's runtime directory must be the
 * user's own and not writable by others. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/stats/stats.h"
#include "migrate/stats/trace.h"
#include "migrate/transport/transport.h"
#include "vmm/monitor.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_files_XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static mode_t mode_of(const char *p)
{
	struct stat st;

	assert_int_equal(lstat(p, &st), 0);
	return st.st_mode & 07777;
}

/* A victim file and a symlink to it at link. */
static void victim(char *v, char *link, size_t n, const char *tag)
{
	char name[64];
	FILE *f;

	snprintf(name, sizeof(name), "victim-%s", tag);
	path_in(v, n, name);
	snprintf(name, sizeof(name), "link-%s", tag);
	path_in(link, n, name);
	f = fopen(v, "w");
	assert_non_null(f);
	fputs("precious\n", f);
	fclose(f);
	assert_int_equal(symlink(v, link), 0);
}

static void assert_untouched(const char *v)
{
	char buf[32] = "";
	FILE *f = fopen(v, "r");

	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "precious\n");
}

static void test_snapshot_file(void **state)
{
	struct transport_addr a = { .kind = TRANSPORT_FILE };
	struct transport_conn c;
	char v[128], link[128], err[256];

	(void)state;
	umask(022);
	path_in(a.path, sizeof(a.path), "snap.bin");
	assert_int_equal(transport_open_file(&a, true, &c, err, sizeof(err)), 0);
	transport_close(&c);
	assert_int_equal(mode_of(a.path), 0600);
	/* It exists now: not overwritten. */
	assert_int_not_equal(transport_open_file(&a, true, &c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "exists"));
	victim(v, link, sizeof(v), "snap");
	snprintf(a.path, sizeof(a.path), "%s", link);
	assert_int_not_equal(transport_open_file(&a, true, &c, err, sizeof(err)), 0);
	assert_untouched(v);
}

static void test_dirty_trace_file(void **state)
{
	struct trace t;
	char p[128], v[128], link[128];

	(void)state;
	umask(022);
	path_in(p, sizeof(p), "trace.bin");
	assert_int_equal(trace_open(&t, p, 64, 4096), 0);
	trace_close(&t);
	assert_int_equal(mode_of(p), 0600);
	victim(v, link, sizeof(v), "trace");
	assert_int_not_equal(trace_open(&t, link, 64, 4096), 0);
	assert_untouched(v);
}

/* The old temporary name was PATH.PID.tmp: a symlink planted there sent
 * the stats into the victim. */
static void test_stats_temp_file(void **state)
{
	struct stats st;
	char p[128], v[128], link[128], tmp[160], err[256];

	(void)state;
	umask(022);
	memset(&st, 0, sizeof(st));
	path_in(p, sizeof(p), "stats.json");
	victim(v, link, sizeof(v), "stats");
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", p, (int)getpid());
	assert_int_equal(symlink(v, tmp), 0);
	assert_int_equal(stats_write_json(&st, p, err, sizeof(err)), 0);
	assert_untouched(v);
	assert_int_equal(mode_of(p), 0600);
}

static void test_runtime_dir(void **state)
{
	char d[128];

	(void)state;
	path_in(d, sizeof(d), "rt");
	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(monitor_check_dir(d), 0);
	assert_int_equal(chmod(d, 0777), 0);
	assert_int_equal(monitor_check_dir(d), -EPERM);
	assert_int_equal(chmod(d, 0720), 0);
	assert_int_equal(monitor_check_dir(d), -EPERM);
	assert_int_equal(chmod(d, 0700), 0);
	if (geteuid() == 0) { /* owned by another user */
		assert_int_equal(chown(d, 12345, 12345), 0);
		assert_int_equal(monitor_check_dir(d), -EPERM);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_file),
		cmocka_unit_test(test_dirty_trace_file),
		cmocka_unit_test(test_stats_temp_file),
		cmocka_unit_test(test_runtime_dir),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
