#include "tests/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

const char *h_minivmm(void)
{
	const char *p = getenv("MINIVMM");

	return p && *p ? p : "build/minivmm-san";
}

double h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void h_require_kvm(void)
{
	struct stat st;

	if (stat("/dev/kvm", &st) != 0 || !S_ISCHR(st.st_mode))
		fail_msg("/dev/kvm is missing: KVM tests cannot run on this machine");
}

int proc_spawn(struct proc *p, const char **argv)
{
	int in[2], out[2], err[2];

	memset(p, 0, sizeof(*p));
	p->pid = -1;
	if (!argv[0])
		argv[0] = h_minivmm();
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -errno;
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid == 0) {
		/* A test that fails midway leaves its processes behind (cmocka
		 * jumps out of it); they must not outlive the test binary, where
		 * a guest dirtying memory would slow every later test and bench. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		/* Leaks make the sanitizer build exit 23: a test then fails. */
		setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0", 0);
		setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1", 0);
		/* No test depends on a key at the default path of this machine
		 * (/etc/minivmm/migrate.key for root): one that wants a default
		 * key sets its own directory. */
		setenv("MINIVMM_KEY_DIR", "/nonexistent/minivmm-test-keys", 0);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->in_fd = in[1];
	p->out_fd = out[0];
	p->err_fd = err[0];
	return 0;
}

static void add_line(struct proc *p, const char *s, size_t n)
{
	if (p->nlines == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 256;
		p->lines = realloc(p->lines, p->cap * sizeof(*p->lines));
		assert_non_null(p->lines);
	}
	p->lines[p->nlines].t_ms = h_now_ms();
	p->lines[p->nlines].text = strndup(s, n);
	p->nlines++;
}

static void take_stdout(struct proc *p, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || p->partial_len == sizeof(p->partial) - 1) {
			add_line(p, p->partial, p->partial_len);
			p->partial_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		if (buf[i] != '\r')
			p->partial[p->partial_len++] = buf[i];
	}
}

static void reap(struct proc *p, bool block)
{
	int st;

	if (p->exited || p->pid <= 0)
		return;
	if (waitpid(p->pid, &st, block ? 0 : WNOHANG) == p->pid) {
		p->exited = true;
		p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

bool proc_pump(struct proc *p, int timeout_ms)
{
	struct pollfd fds[2] = {
		{ .fd = p->out_fd, .events = POLLIN },
		{ .fd = p->err_fd, .events = POLLIN },
	};
	char buf[65536];

	if (p->out_fd < 0 && p->err_fd < 0) {
		reap(p, true);
		return false;
	}
	if (poll(fds, 2, timeout_ms) < 0)
		return true;
	for (int i = 0; i < 2; i++) {
		ssize_t n;

		if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(fds[i].fd, buf, sizeof(buf));
		if (n <= 0) {
			close(fds[i].fd);
			if (i == 0) {
				if (p->partial_len)
					add_line(p, p->partial, p->partial_len);
				p->partial_len = 0;
				p->out_fd = -1;
			} else {
				p->err_fd = -1;
			}
			continue;
		}
		if (i == 0) {
			take_stdout(p, buf, (size_t)n);
		} else {
			p->err = realloc(p->err, p->err_len + (size_t)n + 1);
			assert_non_null(p->err);
			memcpy(p->err + p->err_len, buf, (size_t)n);
			p->err_len += (size_t)n;
			p->err[p->err_len] = '\0';
		}
	}
	if (p->out_fd < 0 && p->err_fd < 0) {
		reap(p, true);
		return false;
	}
	return true;
}

long proc_wait_line(struct proc *p, size_t from, const char *needle, int timeout_ms)
{
	double end = h_now_ms() + timeout_ms;

	for (;;) {
		for (size_t i = from; i < p->nlines; i++)
			if (strstr(p->lines[i].text, needle))
				return (long)i;
		from = p->nlines;
		if (h_now_ms() >= end)
			return -1;
		if (!proc_pump(p, 20) && p->nlines == from)
			return -1;
	}
}

int proc_wait_exit(struct proc *p, int timeout_ms)
{
	double end = h_now_ms() + timeout_ms;

	while (proc_pump(p, 20))
		if (h_now_ms() >= end) {
			proc_kill(p, SIGKILL);
			while (proc_pump(p, 100))
				;
			return -1;
		}
	reap(p, true);
	return p->status;
}

int proc_send(struct proc *p, const char *s)
{
	size_t n = strlen(s);

	return write(p->in_fd, s, n) == (ssize_t)n ? 0 : -1;
}

void proc_kill(struct proc *p, int sig)
{
	if (p->pid > 0 && !p->exited)
		kill(p->pid, sig);
}

size_t proc_count_prefix(struct proc *p, size_t from, const char *prefix)
{
	size_t n = 0, plen = strlen(prefix);

	for (size_t i = from; i < p->nlines; i++)
		n += strncmp(p->lines[i].text, prefix, plen) == 0;
	return n;
}

bool proc_stderr_has(struct proc *p, const char *needle)
{
	return p->err && strstr(p->err, needle);
}

void proc_free(struct proc *p)
{
	if (p->pid > 0 && !p->exited) {
		proc_kill(p, SIGKILL);
		while (proc_pump(p, 100))
			;
		reap(p, true);
	}
	if (p->in_fd > 0)
		close(p->in_fd);
	if (p->out_fd > 0)
		close(p->out_fd);
	if (p->err_fd > 0)
		close(p->err_fd);
	for (size_t i = 0; i < p->nlines; i++)
		free(p->lines[i].text);
	free(p->lines);
	free(p->err);
	memset(p, 0, sizeof(*p));
}

int proc_run(struct proc *p, const char **argv, int timeout_ms)
{
	int ret = proc_spawn(p, argv);

	if (ret)
		return ret;
	close(p->in_fd);
	p->in_fd = -1;
	return proc_wait_exit(p, timeout_ms);
}

int h_monitor(const char *path, const char *cmd, char *buf, size_t cap)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = 0;
	int fd;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	{
		/* A wedged VM fails the test instead of hanging it. */
		struct timeval tv = { .tv_sec = 10 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (write(fd, cmd, strlen(cmd)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return -1;
	}
	buf[0] = '\0';
	for (;;) {
		char *last;
		ssize_t n = read(fd, buf + len, cap - 1 - len);

		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		/* The reply's last line is `ok` or `error: ...`. */
		if (len && buf[len - 1] == '\n') {
			buf[len - 1] = '\0';
			last = strrchr(buf, '\n');
			last = last ? last + 1 : buf;
			if (!strcmp(last, "ok") || !strncmp(last, "error: ", 7)) {
				int r = strcmp(last, "ok") ? 1 : 0;

				close(fd);
				return r;
			}
			buf[len - 1] = '\n';
		}
		if (len + 1 >= cap)
			break;
	}
	close(fd);
	return -1;
}

bool proc_wait_stderr(struct proc *p, const char *needle, int timeout_ms)
{
	double end = h_now_ms() + timeout_ms;

	while (!proc_stderr_has(p, needle)) {
		if (h_now_ms() > end || (!proc_pump(p, 50) && !proc_stderr_has(p, needle)))
			return proc_stderr_has(p, needle);
	}
	return true;
}

void h_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void h_put64(uint8_t *p, uint64_t v)
{
	h_put32(p, (uint32_t)v);
	h_put32(p + 4, (uint32_t)(v >> 32));
}

static int h_next_port;

void h_ports_init(int salt)
{
	h_next_port = 20000 + (int)(((long)getpid() * (salt | 1)) % 10000);
}

int h_port(void)
{
	return h_next_port++;
}

size_t h_hello(uint8_t *b, uint32_t version, uint64_t mem, uint32_t cpus, const char *name,
	       uint32_t pid)
{
	char vendor[13] = "GenuineIntel", line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	uint8_t *h = b + 24;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "vendor_id : %12s", vendor) == 1)
			break;
	if (f)
		fclose(f);
	memset(b, 0, 24 + 96 + 72);
	memcpy(b, "MVMMIGR\n", 8);
	h_put32(b + 8, version);
	h_put32(b + 16, 1);            /* HELLO */
	h_put32(b + 20, 96 + 72);
	h_put32(h, version);
	h_put64(h + 8, mem);
	h_put32(h + 16, cpus);
	h_put32(h + 20, pid);
	h_put32(h + 24, 4096);
	snprintf((char *)h + 28, 64, "%s", name);
	h_put32(h + 92, 72);
	h_put32(h + 96, 1);            /* cpucompat version */
	h_put32(h + 100, 72);
	memcpy(h + 104, vendor, 12);
	return 24 + 96 + 72;
}

void h_spawn_target(struct proc *t, const char *addr, const char **extra)
{
	const char *argv[16] = { NULL, "--incoming", addr };
	int n = 3;

	while (extra && *extra && n < 15)
		argv[n++] = *extra++;
	argv[n] = NULL;
	assert_int_equal(proc_spawn(t, argv), 0);
	if (!proc_wait_stderr(t, "waiting for a migration", T_BOOT))
		fail_msg("target did not listen: %s", t->err ? t->err : "");
}

double h_json_num(const char *path, const char *key)
{
	char buf[65536], pat[96], *p;
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		fail_msg("no stats file %s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(buf, pat);
	if (!p)
		fail_msg("%s: no %s", path, key);
	p += strlen(pat);
	if (!strncmp(p, "true", 4))
		return 1;
	if (!strncmp(p, "false", 5))
		return 0;
	if (*p == '"')
		return !strncmp(p, "\"completed\"", 11) ? 1 : 0;
	return strtod(p, NULL);
}
