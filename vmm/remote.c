/* `minivmm --migrate URI` without --kernel: drives the VM running on this
 * host through its monitor socket (docs/monitor.md), shows progress while
 * it runs, and prints the summary. The source VMM writes a stats file
 * before it exits, so the outcome is known even when the monitor goes
 * away with the process the moment the migration completes. */
#include "vmm/remote.h"

#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/stats/stats.h"
#include "vmm/core/status.h"
#include "migrate/transport/transport.h"
#include "vmm/monitor.h"

/* The only live VM in the socket directory, or an error listing them. */
static int find_only_vm(char *out, size_t cap, char *err, size_t errlen)
{
	char probe[PATH_MAX], dir[PATH_MAX], names[512] = "";
	struct dirent *e;
	DIR *d;
	int n = 0;

	if (monitor_default_path("x", probe, sizeof(probe)) < 0) {
		snprintf(err, errlen, "no monitor socket directory");
		return -ENOENT;
	}
	snprintf(dir, sizeof(dir), "%s", dirname(probe));
	d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "%.300s: %s", dir, strerror(errno));
		return -ENOENT;
	}
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char path[PATH_MAX];

		if (l < 6 || strcmp(e->d_name + l - 5, ".sock"))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
		    monitor_probe(path, NULL) != -EADDRINUSE)
			continue;
		if (n++ == 0)
			snprintf(out, cap, "%s", path);
		if (strlen(names) + l + 3 < sizeof(names)) {
			if (names[0])
				strcat(names, ", ");
			strncat(names, e->d_name, l - 5);
		}
	}
	closedir(d);
	if (n == 1)
		return 0;
	if (n == 0)
		snprintf(err, errlen, "no running VM found (monitor sockets in %.300s)", dir);
	else
		snprintf(err, errlen, "%d VMs run on this host (%.400s): pick one with --name", n,
			 names);
	return n == 0 ? -ENOENT : -EEXIST;
}

/* The VMM's working directory is not ours: give it absolute paths. */
static int absolute(const char *path, char *out, size_t cap)
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return snprintf(out, cap, "%s", path) < (int)cap ? 0 : -ENAMETOOLONG;
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return snprintf(out, cap, "%s/%s", cwd, path) < (int)cap ? 0 : -ENAMETOOLONG;
}

/* unix:PATH and file:PATH, made absolute for the same reason. */
static int absolute_uri(const char *uri, char *out, size_t cap)
{
	struct transport_addr a;
	char err[256], path[PATH_MAX];
	int ret;

	if (transport_parse(uri, false, &a, err, sizeof(err)) < 0 ||
	    a.kind == TRANSPORT_TCP || a.path[0] == '/')
		return snprintf(out, cap, "%s", uri) < (int)cap ? 0 : -ENAMETOOLONG;
	ret = absolute(a.path, path, sizeof(path));
	if (ret)
		return ret;
	return snprintf(out, cap, "%s:%s", a.kind == TRANSPORT_UNIX ? "unix" : "file", path) <
	       (int)cap ? 0 : -ENAMETOOLONG;
}

static int set_param(int fd, const char *name, const char *value, char *reply, size_t cap)
{
	char cmd[MIG_PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "migrate_set_parameter %s %s", name, value);
	return monitor_request(fd, cmd, reply, cap);
}

/* The parameters the command line gave, and the stats file this client
 * reads the outcome from; paths made absolute for the VMM. */
static int send_params(int fd, const struct mig_params *p, const char *stats, char *reply,
		       size_t cap)
{
	char v[MIG_PATH_MAX], abs[MIG_PATH_MAX];
	int ret = 0;

	for (size_t i = 0; i < mig_param_count && !ret; i++) {
		const struct mig_param *q = &mig_param_table[i];

		if (!(p->set & (1u << i)) || !strcmp(q->name, "stats-json"))
			continue;
		mig_param_format(&p->t, q, v, sizeof(v));
		if (q->kind == MIG_PARAM_PATH && strcmp(v, "none")) {
			ret = absolute(v, abs, sizeof(abs));
			snprintf(v, sizeof(v), "%s", abs);
		}
		if (!ret)
			ret = set_param(fd, q->name, v, reply, cap);
	}
	return ret ? ret : set_param(fd, "stats-json", stats, reply, cap);
}

static const char *field(const char *reply, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p;
	size_t n;

	snprintf(pat, sizeof(pat), "%s: ", key);
	for (p = reply; (p = strstr(p, pat)) != NULL; p++)
		if (p == reply || p[-1] == '\n')
			break;
	if (!p) {
		out[0] = '\0';
		return out;
	}
	p += strlen(pat);
	n = strcspn(p, "\n");
	snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
	return out;
}

static void progress(const char *reply)
{
	char st[32], round[16], bytes[32], rem[32], exp[32];

	field(reply, "status", st, sizeof(st));
	field(reply, "round", round, sizeof(round));
	field(reply, "bytes_total", bytes, sizeof(bytes));
	field(reply, "remaining_pages", rem, sizeof(rem));
	field(reply, "expected_downtime_ms", exp, sizeof(exp));
	fprintf(stderr, "\r\033[K  %s: round %s, sent %.1f MB, %s pages dirty, expected downtime %s ms",
		st, round, strtod(bytes, NULL) / 1e6, rem[0] ? rem : "-", exp[0] ? exp : "-");
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int remote_migrate(const char *name, const char *monitor_path, const char *uri,
		   const struct mig_params *p)
{
	char path[PATH_MAX], err[512] = "", reply[4096], stats[PATH_MAX], status[32] = "";
	char tmpdir[] = "/tmp/minivmm-migrate-XXXXXX", cmd[PATH_MAX + 16];
	char abs_uri[PATH_MAX + 8] = "";
	bool tty = isatty(STDERR_FILENO), tmp_stats = false;
	struct stats st;
	int fd, ret, rc = VMM_STATUS_MIGRATION;

	/* The source's monitor goes away when it completes: a write to it
	 * must be an error, not a SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (monitor_path)
		ret = snprintf(path, sizeof(path), "%s", monitor_path) < (int)sizeof(path) ? 0 :
		      -ENAMETOOLONG;
	else if (name)
		ret = monitor_default_path(name, path, sizeof(path));
	else
		ret = find_only_vm(path, sizeof(path), err, sizeof(err));
	if (ret) {
		fprintf(stderr, "minivmm: %s\n", err[0] ? err : strerror(-ret));
		return VMM_STATUS_USAGE;
	}
	fd = monitor_connect(path, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "minivmm: no VM answers on %s: %s\n", path, err);
		return VMM_STATUS_USAGE;
	}
	if (p->t.stats_json[0]) {
		ret = absolute(p->t.stats_json, stats, sizeof(stats));
	} else if (mkdtemp(tmpdir)) {
		/* A directory only we can enter: no one can plant the file. */
		snprintf(stats, sizeof(stats), "%s/stats.json", tmpdir);
		tmp_stats = true;
		ret = 0;
	} else {
		ret = -errno;
	}
	if (!ret)
		ret = send_params(fd, p, stats, reply, sizeof(reply));
	if (!ret)
		ret = absolute_uri(uri, abs_uri, sizeof(abs_uri));
	snprintf(cmd, sizeof(cmd), "migrate %s", abs_uri);
	if (!ret)
		ret = monitor_request(fd, cmd, reply, sizeof(reply));
	if (ret) {
		fprintf(stderr, "minivmm: migrate %s: %s\n", uri, ret == -EIO ? reply : strerror(-ret));
		goto out;
	}
	unlink(stats); /* a stale file must not be taken for this run's outcome */
	for (;;) {
		sleep_ms(100);
		ret = monitor_request(fd, "info migrate", reply, sizeof(reply));
		if (ret)
			break; /* the source exited: its stats file says how it ended */
		field(reply, "status", status, sizeof(status));
		if (tty)
			progress(reply);
		if (!mig_status_in_progress(status))
			break;
	}
	close(fd);
	fd = -1;
	if (tty)
		fprintf(stderr, "\r\033[K");
	/* The source writes the file before it reports the end. */
	for (int i = 0; i < 50 && stats_read_json(stats, &st, err, sizeof(err)) < 0; i++)
		sleep_ms(100);
	if (stats_read_json(stats, &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "minivmm: migration to %s: outcome unknown (the source VMM "
			"left no stats: %s)\n", uri, err);
	} else if (st.result == STATS_COMPLETED) {
		printf("migration to %s completed: the guest runs on the target\n", uri);
		stats_print_summary(stdout, &st);
		rc = VMM_STATUS_OK;
	} else {
		fprintf(stderr, "minivmm: migration to %s %s: %s\n", uri,
			stats_result_name(st.result), st.error);
	}
out:
	if (fd >= 0)
		close(fd);
	if (tmp_stats) {
		unlink(stats);
		rmdir(tmpdir);
	}
	return rc;
}
