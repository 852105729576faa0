#include "vmm/run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "migrate/transport/transport.h"
#include "vmm/console.h"
#include "vmm/evloop.h"
#include "vmm/monitor.h"
#include "vmm/remote.h"
#include "vmm/core/dirty_ring.h"
#include "vmm/core/vm.h"

struct runner {
	struct vm *vm;
	const struct cli_opts *o;
	struct mig_params mig;
	struct evloop loop;
	struct console console;
	struct monitor mon;
	struct ev_handler sig, notify, timer;
};

static void on_signal(struct ev_handler *h, uint32_t events)
{
	struct runner *r = h->opaque;
	struct signalfd_siginfo si;
	char msg[64];

	(void)events;
	if (read(h->fd, &si, sizeof(si)) != sizeof(si))
		return;
	snprintf(msg, sizeof(msg), "terminating on signal %u", si.ssi_signo);
	vm_request_stop(r->vm, VM_EXIT_SIGNAL, VMM_STATUS_OK, msg);
}

static void on_notify(struct ev_handler *h, uint32_t events)
{
	uint64_t v;

	(void)events;
	if (read(h->fd, &v, sizeof(v)) < 0) {
		/* nothing pending */
	}
}

static void on_timer(struct ev_handler *h, uint32_t events)
{
	struct runner *r = h->opaque;
	char err[256];
	uint64_t v;

	(void)events;
	if (read(h->fd, &v, sizeof(v)) < 0)
		return;
	evloop_del(&r->loop, h);
	if (mig_start(r->vm, r->o->migrate, &r->mig, err, sizeof(err)) < 0)
		fprintf(stderr, "minivmm: migrate %s: %s\n", r->o->migrate, err);
}

static bool stopping(struct vm *vm)
{
	bool s;

	pthread_mutex_lock(&vm->lock);
	s = vm->stopping;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

static int add_handler(struct runner *r, struct ev_handler *h, int fd,
		       void (*fn)(struct ev_handler *, uint32_t))
{
	*h = (struct ev_handler){ .fd = fd, .fn = fn, .opaque = r };
	return evloop_add(&r->loop, h, EPOLLIN);
}

static int arm_migrate_timer(struct runner *r)
{
	double s = r->o->migrate_after;
	struct itimerspec its = { 0 };
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	its.it_value.tv_sec = (time_t)s;
	its.it_value.tv_nsec = (long)((s - (double)(time_t)s) * 1e9);
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(fd, 0, &its, NULL) < 0 || add_handler(r, &r->timer, fd, on_timer)) {
		close(fd);
		return -errno;
	}
	return 0;
}

/* Everything before the loop that can fail with a message. */
static int setup(struct runner *r, int sigfd, char *err, size_t errlen)
{
	const struct cli_opts *o = r->o;
	struct vm *vm = r->vm;
	char path[PATH_MAX];
	int ret;

	if (o->monitor)
		snprintf(path, sizeof(path), "%s", o->monitor);
	else if ((ret = monitor_default_path(vm->cfg.name, path, sizeof(path))) < 0) {
		snprintf(err, errlen, "monitor socket directory: %s", strerror(-ret));
		return ret;
	}
	/* A migration target takes over its source's name on this host. */
	ret = monitor_open(&r->mon, vm, &r->loop, path, o->incoming != NULL, err, errlen);
	if (ret)
		return ret;
	r->mon.mig_defaults = &r->mig;
	if ((ret = add_handler(r, &r->sig, sigfd, on_signal)) ||
	    (ret = add_handler(r, &r->notify, vm->notify_fd, on_notify))) {
		snprintf(err, errlen, "epoll: %s", strerror(-ret));
		return ret;
	}
	ret = console_open(&r->console, vm, &r->loop);
	if (ret) {
		snprintf(err, errlen, "console: %s", strerror(-ret));
		return ret;
	}
	if (o->kernel && o->migrate && (ret = arm_migrate_timer(r)) < 0) {
		snprintf(err, errlen, "timerfd: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static int exit_status(struct vm *vm)
{
	switch (vm->stop_reason) {
	case VM_EXIT_ERROR:
		if (!vm->error_reported)
			fprintf(stderr, "minivmm: %s\n", vm->stop_msg);
		return vm->exit_status ? vm->exit_status : VMM_STATUS_CRASH;
	case VM_EXIT_SIGNAL:
	case VM_EXIT_QUIT:
		fprintf(stderr, "minivmm: %s\n", vm->stop_msg);
		return 0;
	default:
		return vm->exit_status;
	}
}

static int run_vm(struct runner *r, int sigfd)
{
	struct vm *vm = r->vm;
	char err[512];
	int ret, status;

	if (evloop_init(&r->loop) < 0) {
		fprintf(stderr, "minivmm: epoll: %s\n", strerror(errno));
		return VMM_STATUS_USAGE;
	}
	r->mon.listen.fd = -1;
	ret = setup(r, sigfd, err, sizeof(err));
	if (!ret && r->o->incoming)
		ret = mig_incoming_commit(vm, err, sizeof(err));
	else if (!ret)
		ret = vm_start(vm, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "minivmm: %s\n", err);
		status = r->o->incoming ? VMM_STATUS_MIGRATION : VMM_STATUS_USAGE;
		goto out;
	}
	while (!stopping(vm)) {
		ret = evloop_run_once(&r->loop, 50);
		if (ret < 0) {
			vm_request_stop(vm, VM_EXIT_ERROR, VMM_STATUS_CRASH, "event loop failed");
			break;
		}
		console_poll(&r->console);
		vm_console_flush(vm, false);
	}
	status = exit_status(vm);
out:
	console_close(&r->console);
	mig_release_faults(vm);
	vm_stop_vcpus(vm);
	/* A migrated guest's partial line went to the target with its state. */
	if (vm->stop_reason != VM_EXIT_MIGRATED)
		vm_console_flush(vm, true);
	mig_destroy(vm);
	monitor_close(&r->mon);
	if (r->timer.fd > 0)
		close(r->timer.fd);
	evloop_fini(&r->loop);
	return status;
}

/* Whether `info migrate` says a migration to listen_uri is under way. */
static bool migrating_to(const char *reply, const char *listen_uri)
{
	char status[64] = "", uri[TRANSPORT_PATH_MAX + 8] = "";

	for (const char *l = reply; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) : strlen(l);

		if (!strncmp(l, "status: ", 8) && n - 8 < sizeof(status) && !status[0])
			snprintf(status, sizeof(status), "%.*s", (int)(n - 8), l + 8);
		else if (!strncmp(l, "uri: ", 5) && n - 5 < sizeof(uri) && !uri[0])
			snprintf(uri, sizeof(uri), "%.*s", (int)(n - 5), l + 5);
	}
	return mig_status_in_progress(status) && transport_same_endpoint(uri, listen_uri);
}

/* A live VM of that name here is a clash, unless it is itself migrating
 * to this target from this host (asked over its monitor, never taken from
 * the peer). The refusal names no pid. */
static int name_in_use(const char *name, const char *listen_uri, bool peer_local,
		       char *why, size_t whylen)
{
	char path[PATH_MAX], reply[4096];

	if (monitor_default_path(name, path, sizeof(path)) < 0 ||
	    monitor_probe(path, NULL) != -EADDRINUSE)
		return 0;
	if (listen_uri && peer_local &&
	    monitor_query(path, "info migrate", reply, sizeof(reply)) == 0 &&
	    migrating_to(reply, listen_uri))
		return 0;
	snprintf(why, whylen, "VM name '%s' is already running on this host", name);
	return -EADDRINUSE;
}

int vmm_main(const struct cli_opts *o)
{
	struct runner r;
	struct vm vm;
	struct vm_config cfg = { .mem_size = o->mem, .ncpus = o->cpus, .prealloc = o->prealloc,
				 .net = o->net, .disk = o->disk,
				 .dirty_ring = !o->dirty_ring ? 0 :
					 o->dirty_ring_size ? o->dirty_ring_size : DRING_DEFAULT_ENTRIES };
	char err[512], path[PATH_MAX];
	sigset_t set;
	int sigfd, ret, status;

	memset(&r, 0, sizeof(r));
	r.vm = &vm;
	r.o = o;
	r.mig = (struct mig_params){
		.t = o->mig, .set = o->mig_set,
		.expect_mem = o->incoming && o->mem_given ? o->mem : 0,
		.expect_cpus = o->incoming && o->cpus_given ? o->cpus : 0,
		.prealloc = o->prealloc,
		.net = o->net,
		.dirty_ring = cfg.dirty_ring,
		.disk = o->disk,
		.name_check = name_in_use,
	};
	if (o->migrate && !o->kernel)
		return remote_migrate(o->name, o->monitor, o->migrate, &r.mig);

	/* Signals are read from a signalfd; the kick signal only ever
	 * interrupts KVM_RUN. Every thread inherits this mask. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGUSR1);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) {
		fprintf(stderr, "minivmm: signalfd: %s\n", strerror(errno));
		return VMM_STATUS_USAGE;
	}

	if (o->incoming) {
		ret = mig_incoming(o->incoming, &r.mig, &vm, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "minivmm: incoming migration failed: %s\n", err);
			close(sigfd);
			return VMM_STATUS_MIGRATION;
		}
	} else {
		if (o->name)
			snprintf(cfg.name, sizeof(cfg.name), "%s", o->name);
		else
			snprintf(cfg.name, sizeof(cfg.name), "vm-%d", (int)getpid());
		/* Refuse a name clash before building anything. */
		if (!o->monitor && monitor_default_path(cfg.name, path, sizeof(path)) == 0 &&
		    monitor_probe(path, NULL) == -EADDRINUSE) {
			fprintf(stderr, "minivmm: VM name '%s' is already in use on this host (%s)\n",
				cfg.name, path);
			close(sigfd);
			return VMM_STATUS_USAGE;
		}
		ret = vm_create(&vm, &cfg, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "minivmm: %s\n", err);
			close(sigfd);
			return VMM_STATUS_USAGE;
		}
		ret = vm_load_kernel(&vm, o->kernel, o->append, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "minivmm: %s\n", err);
			vm_destroy(&vm);
			close(sigfd);
			return VMM_STATUS_USAGE;
		}
	}
	status = run_vm(&r, sigfd);
	vm_destroy_detached(&vm);
	close(sigfd);
	return status;
}
