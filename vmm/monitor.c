#include "vmm/monitor.h"
#include "vmm/monline.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "vmm/core/status.h"
#include "vmm/core/vm.h"

_Static_assert(MONITOR_LINE_MAX == MONLINE_MAX, "a client buffer holds one line");

int monitor_check_dir(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
		return -EPERM;
	return 0;
}

int monitor_default_path(const char *name, char *out, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[PATH_MAX];
	int n;

	if (geteuid() == 0 || !xdg || !*xdg)
		n = snprintf(dir, sizeof(dir), geteuid() == 0 ? "/run/minivmm" :
			     "/tmp/minivmm-%u", (unsigned)geteuid());
	else
		n = snprintf(dir, sizeof(dir), "%s/minivmm", xdg);
	if (n < 0 || (size_t)n >= sizeof(dir))
		return -ENAMETOOLONG;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	/* /tmp/minivmm-UID may have been made by someone else first. */
	if ((n = monitor_check_dir(dir)) < 0)
		return n;
	n = snprintf(out, len, "%s/%s.sock", dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int fill_addr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		return -ENAMETOOLONG;
	strcpy(a->sun_path, path);
	return 0;
}

int monitor_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a;
	int fd, ret = fill_addr(&a, path);

	if (ret) {
		snprintf(err, errlen, "monitor path too long: %s", path);
		return ret;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "connect %s: %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

int monitor_request(int fd, const char *cmd, char *reply, size_t cap)
{
	size_t len = 0, cmdlen = strlen(cmd);
	char *line;

	if (cap == 0)
		return -EINVAL;
	if (write(fd, cmd, cmdlen) != (ssize_t)cmdlen || write(fd, "\n", 1) != 1)
		return -EIO;
	reply[0] = '\0';
	for (;;) {
		char *nl;
		ssize_t n;

		/* The reply ends with a line that is `ok` or `error: ...`. */
		line = reply;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			if (strcmp(line, "ok") == 0) {
				*line = '\0';
				return 0;
			}
			if (strncmp(line, "error: ", 7) == 0) {
				memmove(reply, line + 7, strlen(line + 7) + 1);
				return -EIO;
			}
			*nl = '\n';
			line = nl + 1;
		}
		if (len + 1 >= cap)
			return -E2BIG;
		n = read(fd, reply + len, cap - 1 - len);
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		len += (size_t)n;
		reply[len] = '\0';
	}
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int monitor_probe(const char *path, pid_t *pid)
{
	char err[64], reply[512];
	int fd = monitor_connect(path, err, sizeof(err));

	if (fd < 0)
		return fd == -ECONNREFUSED || fd == -ENOENT ? 0 : fd;
	if (pid) {
		char *s;

		*pid = 0;
		/* Best effort, bounded: a hung VM still counts as alive. */
		set_timeouts(fd, MONITOR_PROBE_TIMEOUT_MS);
		if (monitor_request(fd, "info status", reply, sizeof(reply)) == 0 &&
		    (s = strstr(reply, "pid: ")) != NULL)
			*pid = (pid_t)atoi(s + 5);
	}
	close(fd);
	return -EADDRINUSE;
}

int monitor_query(const char *path, const char *cmd, char *reply, size_t cap)
{
	char err[64];
	int fd = monitor_connect(path, err, sizeof(err)), ret;

	if (fd < 0)
		return fd;
	set_timeouts(fd, MONITOR_PROBE_TIMEOUT_MS);
	ret = monitor_request(fd, cmd, reply, cap);
	close(fd);
	return ret;
}

static void client_close(struct monitor_client *c)
{
	struct monitor *m = c->mon;

	for (int i = 0; i < MONITOR_MAX_CLIENTS; i++)
		if (m->clients[i] == c)
			m->clients[i] = NULL;
	evloop_del(m->loop, &c->h);
	close(c->h.fd);
	free(c->out);
	free(c);
}

/* Sends what the socket takes now; EPOLLOUT for the rest. -1: the
 * client is gone or broken (the caller closes it). */
static int client_flush(struct monitor_client *c)
{
	while (c->out_len) {
		ssize_t n = send(c->h.fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return -1;
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	if ((c->out_len != 0) != c->want_out) {
		c->want_out = c->out_len != 0;
		if (evloop_mod(c->mon->loop, &c->h, EPOLLIN | (c->want_out ? EPOLLOUT : 0)) < 0)
			return -1;
	}
	return 0;
}

static const char *state_name(struct vm *vm)
{
	if (vm->stopping)
		return "shutting-down";
	if (vm->user_paused)
		return "paused";
	return vm->pause_count > 0 ? "paused (migration)" : "running";
}

static const char help_text[] =
	"help                          this list\n"
	"info status                   run state, name, pid, vCPUs, memory\n"
	"info migrate                  migration status and figures\n"
	"stop                          pause the guest\n"
	"cont                          resume the guest\n"
	"quit                          stop the VM and exit\n"
	"migrate URI                   live-migrate to HOST:PORT or unix:PATH (or file:PATH)\n"
	"migrate_cancel                cancel the migration; the guest keeps running here\n"
	"migrate_start_postcopy        switch the running migration to post-copy now\n"
	"migrate_recover URI           target: resume a post-copy whose link was lost, on URI\n"
	"migrate_set_parameter N V     set parameter N for the next migration:\n";

int monitor_exec(struct monitor *m, const char *line, FILE *out, char *msg,
		 size_t msglen)
{
	struct vm *vm = m->vm;
	struct monline l;
	int ret = 0;

	monline_parse(line, &l);
	switch (l.cmd) {
	case MONLINE_EMPTY:
		break;
	case MONLINE_HELP:
		fputs(help_text, out);
		mig_param_monitor_help(out);
		break;
	case MONLINE_INFO_STATUS:
		pthread_mutex_lock(&vm->lock);
		fprintf(out, "status: %s\nname: %s\npid: %d\ncpus: %d\nmem: %llu\n",
			state_name(vm), vm->cfg.name, (int)getpid(), vm->ncpus,
			(unsigned long long)vm->ram_size);
		pthread_mutex_unlock(&vm->lock);
		break;
	case MONLINE_INFO_MIGRATE:
		mig_info(vm, m->mig_defaults, out);
		break;
	case MONLINE_STOP:
		if (!vm->user_paused) {
			ret = vm_pause(vm);
			if (ret == 0)
				vm->user_paused = true;
			else
				vm_resume(vm); /* the pause counts even when it failed */
			if (ret)
				snprintf(msg, msglen, "cannot pause: %s", strerror(-ret));
		}
		break;
	case MONLINE_CONT:
		if (vm->user_paused) {
			vm->user_paused = false;
			vm_resume(vm);
		}
		break;
	case MONLINE_QUIT:
		vm_request_stop(vm, VM_EXIT_QUIT, VMM_STATUS_OK, "quit from the monitor");
		break;
	case MONLINE_MIGRATE:
		ret = mig_start(vm, l.arg[0], m->mig_defaults, msg, msglen);
		break;
	case MONLINE_MIGRATE_CANCEL:
		ret = mig_cancel(vm);
		if (ret)
			snprintf(msg, msglen, "no migration in progress");
		break;
	case MONLINE_START_POSTCOPY:
		ret = mig_start_postcopy(vm, msg, msglen);
		break;
	case MONLINE_RECOVER:
		ret = mig_recover(vm, l.arg[0], msg, msglen);
		break;
	case MONLINE_SET_PARAMETER:
		ret = mig_set_parameter(vm, l.arg[0], l.arg[1], msg, msglen);
		break;
	case MONLINE_UNKNOWN:
		snprintf(msg, msglen, "unknown command or wrong arguments: '%s' (try help)",
			 line);
		ret = -EINVAL;
		break;
	}
	return ret;
}

/* -1: the client must go (its unread replies passed MONITOR_OUT_MAX). */
static int client_line(struct monitor_client *c, const char *line)
{
	char msg[256] = "", *body = NULL;
	size_t blen = 0;
	FILE *out = open_memstream(&body, &blen);
	int ret;

	if (!out)
		return 0;
	ret = monitor_exec(c->mon, line, out, msg, sizeof(msg));
	if (ret)
		fprintf(out, "error: %s\n", msg[0] ? msg : strerror(-ret));
	else
		fputs("ok\n", out);
	fclose(out);
	/* Queued, never a blocking send: a client that does not read its
	 * replies only fills its own buffer, and is dropped when that is
	 * full. */
	if (!body || c->out_len + blen > MONITOR_OUT_MAX) {
		free(body);
		return -1;
	}
	if (!c->out) {
		c->out = body;
		c->out_len = blen;
	} else {
		char *n = realloc(c->out, c->out_len + blen);

		if (!n) {
			free(body);
			return -1;
		}
		memcpy(n + c->out_len, body, blen);
		c->out = n;
		c->out_len += blen;
		free(body);
	}
	return client_flush(c);
}

static int client_line_cb(void *c, const char *line)
{
	return client_line(c, line);
}

static void client_event(struct ev_handler *h, uint32_t events)
{
	struct monitor_client *c = h->opaque;
	ssize_t n;

	if ((events & EPOLLOUT) && client_flush(c) < 0) {
		client_close(c);
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	n = read(h->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	/* A line too long to be a command ends the client too. */
	if (monline_split(c->buf, &c->len, sizeof(c->buf), client_line_cb, c) < 0)
		client_close(c);
}

static void listen_event(struct ev_handler *h, uint32_t events)
{
	struct monitor *m = h->opaque;
	struct monitor_client *c;
	int fd, slot = -1;

	(void)events;
	fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (int i = 0; i < MONITOR_MAX_CLIENTS; i++)
		if (!m->clients[i]) {
			slot = i;
			break;
		}
	c = slot < 0 ? NULL : calloc(1, sizeof(*c));
	if (!c) {
		static const char busy[] = "error: too many monitor clients\n";

		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0) {
			/* closing anyway */
		}
		close(fd);
		return;
	}
	c->mon = m;
	c->h = (struct ev_handler){ .fd = fd, .fn = client_event, .opaque = c };
	if (evloop_add(m->loop, &c->h, EPOLLIN) < 0) {
		close(fd);
		free(c);
		return;
	}
	m->clients[slot] = c;
}

int monitor_open(struct monitor *m, struct vm *vm, struct evloop *loop,
		 const char *path, bool takeover, char *err, size_t errlen)
{
	struct sockaddr_un a;
	char tmp[PATH_MAX];
	struct stat st;
	pid_t pid = 0;
	int fd, ret;

	memset(m, 0, sizeof(*m));
	m->vm = vm;
	m->loop = loop;
	m->listen.fd = -1;
	snprintf(m->path, sizeof(m->path), "%s", path);
	if (!takeover && monitor_probe(path, &pid) == -EADDRINUSE) {
		snprintf(err, errlen,
			 "VM name '%s' is already in use on this host (pid %d, monitor %s)",
			 vm->cfg.name, (int)pid, path);
		return -EADDRINUSE;
	}
	/* Bind a private name, then rename over the public one: a stale
	 * socket is replaced and a reader never sees a missing path. */
	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp) ||
	    fill_addr(&a, tmp) < 0) {
		snprintf(err, errlen, "monitor path too long: %s", path);
		return -ENAMETOOLONG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "monitor socket: %s", strerror(errno));
		return ret;
	}
	unlink(tmp);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0 ||
	    stat(tmp, &st) < 0 || rename(tmp, path) < 0) {
		ret = -errno;
		snprintf(err, errlen, "monitor %s: %s", path, strerror(errno));
		unlink(tmp);
		close(fd);
		return ret;
	}
	m->ino = st.st_ino;
	m->listen = (struct ev_handler){ .fd = fd, .fn = listen_event, .opaque = m };
	ret = evloop_add(loop, &m->listen, EPOLLIN);
	if (ret) {
		snprintf(err, errlen, "monitor: epoll: %s", strerror(-ret));
		monitor_close(m);
		return ret;
	}
	vm->mon = m;
	return 0;
}

void monitor_close(struct monitor *m)
{
	struct stat st;

	for (int i = 0; i < MONITOR_MAX_CLIENTS; i++)
		if (m->clients[i])
			client_close(m->clients[i]);
	if (m->listen.fd >= 0) {
		evloop_del(m->loop, &m->listen);
		close(m->listen.fd);
		/* A same-host migration target may own the path by now. */
		if (stat(m->path, &st) == 0 && st.st_ino == m->ino)
			unlink(m->path);
	}
	m->listen.fd = -1;
	if (m->vm && m->vm->mon == m)
		m->vm->mon = NULL;
}
