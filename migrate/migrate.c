/* The entry points the rest of minivmm calls (migrate/migrate.h): start,
 * cancel, `info migrate`, parameters, teardown. The work is done in
 * source.c (thread), target.c and remote.c. */
#include "migrate/mig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "vmm/cli.h"
#include "vmm/core/vm.h"

/* Bits of mig->set_mask: parameters set by migrate_set_parameter, which
 * win over the command line's defaults. */
enum {
	P_DOWNTIME = 1 << 0, P_BANDWIDTH = 1 << 1, P_VERIFY = 1 << 2,
	P_ROUNDS = 1 << 3, P_BYTES = 1 << 4, P_TIME = 1 << 5, P_NONCONV = 1 << 6,
	P_MANUAL = 1 << 7, P_STATS = 1 << 8, P_TRACE = 1 << 9, P_CHANNELS = 1 << 10,
	P_NICE = 1 << 11,
};

void mig_thread_nice(int n)
{
	/* Best effort: a failure only means the guest competes as before. */
	if (n > 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), n);
}

const char *mig_state_name(enum mig_state s)
{
	static const char *const names[] = {
		[MIG_NONE] = "none", [MIG_SETUP] = "setup", [MIG_ACTIVE] = "active",
		[MIG_SWITCHOVER] = "switchover", [MIG_COMMITTED] = "committed",
		[MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
		[MIG_CANCELLED] = "cancelled",
	};

	return s <= MIG_CANCELLED ? names[s] : "?";
}

static void defaults(struct mig_tunables *t, const struct mig_params *p)
{
	memset(t, 0, sizeof(*t));
	t->downtime_ms = p ? p->downtime_ms : CLI_DEFAULT_DOWNTIME_MS;
	t->max_bandwidth = p ? p->max_bandwidth : 0;
	t->verify_ram = p ? p->verify_ram : false;
	t->max_rounds = EST_DEFAULT_MAX_ROUNDS;
	t->max_bytes_factor = EST_DEFAULT_MAX_BYTES_FACTOR;
	t->max_time_ms = EST_DEFAULT_MAX_TIME_MS;
	t->manual_protect = true;
	t->channels = p && p->channels >= 0 ? (uint32_t)p->channels : MIG_DEFAULT_CHANNELS;
	t->nice = p && p->nice >= 0 ? (uint32_t)p->nice : MIG_DEFAULT_NICE;
	if (p && p->stats_json)
		snprintf(t->stats_json, sizeof(t->stats_json), "%s", p->stats_json);
	if (p && p->dirty_trace)
		snprintf(t->dirty_trace, sizeof(t->dirty_trace), "%s", p->dirty_trace);
}

struct mig *mig_get(struct vm *vm)
{
	struct mig *m = vm->mig;

	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->conn = NULL;
	stream_reset(&m->in);
	m->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	defaults(&m->t, NULL);
	vm->mig = m;
	return m;
}

/* The settings of the next run: the command line's, then the monitor's. */
static void effective(struct mig *m, const struct mig_params *p, struct mig_tunables *out)
{
	const struct mig_tunables *t = &m->t;

	defaults(out, p);
	if (m->set_mask & P_DOWNTIME) out->downtime_ms = t->downtime_ms;
	if (m->set_mask & P_BANDWIDTH) out->max_bandwidth = t->max_bandwidth;
	if (m->set_mask & P_VERIFY) out->verify_ram = t->verify_ram;
	if (m->set_mask & P_ROUNDS) out->max_rounds = t->max_rounds;
	if (m->set_mask & P_BYTES) out->max_bytes_factor = t->max_bytes_factor;
	if (m->set_mask & P_TIME) out->max_time_ms = t->max_time_ms;
	if (m->set_mask & P_NONCONV) out->cancel_on_nonconvergence = t->cancel_on_nonconvergence;
	if (m->set_mask & P_MANUAL) out->manual_protect = t->manual_protect;
	if (m->set_mask & P_CHANNELS) out->channels = t->channels;
	if (m->set_mask & P_NICE) out->nice = t->nice;
	if (m->set_mask & P_STATS) memcpy(out->stats_json, t->stats_json, sizeof(t->stats_json));
	if (m->set_mask & P_TRACE) memcpy(out->dirty_trace, t->dirty_trace, sizeof(t->dirty_trace));
}

static bool busy(const struct mig *m)
{
	return m->state >= MIG_SETUP && m->state <= MIG_COMMITTED;
}

int mig_start(struct vm *vm, const char *uri, const struct mig_params *p,
	      char *err, size_t errlen)
{
	struct mig *m = mig_get(vm);
	struct transport_addr a;
	int ret;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!uri || !*uri || strlen(uri) >= sizeof(m->uri)) {
		snprintf(err, errlen, "bad migration address");
		return -EINVAL;
	}
	/* Refused here, the monitor's `migrate` answers at once. */
	ret = transport_parse(uri, false, &a, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	/* A VM that arrived here by migration may leave again. */
	if (busy(m) || (m->state == MIG_COMPLETED && m->st.role && !strcmp(m->st.role, "source"))) {
		snprintf(err, errlen, m->state == MIG_COMPLETED ? "the VM has migrated already" :
			 "a migration is already running (migrate_cancel stops it)");
		pthread_mutex_unlock(&m->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started) { /* the previous, finished attempt */
		pthread_join(m->thread, NULL);
		m->thread_started = false;
	}
	pthread_mutex_lock(&m->lock);
	effective(m, p, &m->run);
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->state = MIG_SETUP;
	m->cancel = 0;
	if (m->cancel_efd >= 0) {
		uint64_t v;

		if (read(m->cancel_efd, &v, sizeof(v)) < 0) {
			/* nothing was pending */
		}
	}
	m->round = 0;
	m->remaining_pages = 0;
	m->expected_downtime_ms = 0;
	m->bw_Bps = 0;
	atomic_store(&m->live_bytes, 0);
	stats_free(&m->st);
	memset(&m->st, 0, sizeof(m->st));
	m->st.role = "source";
	m->st.downtime_limit_ms = m->run.downtime_ms;
	m->st.max_bandwidth_Bps = m->run.max_bandwidth;
	m->st.ram_bytes = vm->ram_size;
	m->st.vcpus = (uint32_t)vm->ncpus;
	m->t0_ns = clock_now_ns();
	pthread_mutex_unlock(&m->lock);
	ret = pthread_create(&m->thread, NULL, mig_source_thread, vm);
	if (ret) {
		snprintf(err, errlen, "pthread_create: %s", strerror(ret));
		m->state = MIG_FAILED;
		return -ret;
	}
	m->thread_started = true;
	return 0;
}

int mig_cancel(struct vm *vm)
{
	struct mig *m = vm->mig;
	int ret = -ENOENT;

	if (!m)
		return -ENOENT;
	pthread_mutex_lock(&m->lock);
	if (busy(m) && m->state != MIG_COMMITTED) {
		uint64_t one = 1;

		m->cancel = 1;
		/* Interrupts a send or receive in progress (stream.c polls it). */
		if (m->cancel_efd < 0 || write(m->cancel_efd, &one, sizeof(one)) < 0) {
			if (m->conn)
				transport_shutdown(m->conn);
		}
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void mig_info(struct vm *vm, FILE *out)
{
	struct mig *m = vm->mig;
	const struct stats *st;

	if (!m) {
		fprintf(out, "status: none\n");
		return;
	}
	pthread_mutex_lock(&m->lock);
	st = &m->st;
	fprintf(out, "status: %s\n", mig_state_name(m->state));
	if (m->state != MIG_NONE) {
		bool live = busy(m);

		if (m->uri[0])
			fprintf(out, "uri: %s\n", m->uri);
		fprintf(out, "role: %s\n", st->role ? st->role : "source");
		fprintf(out, "round: %u\nrounds: %u\n", m->round, st->rounds);
		fprintf(out, "total_ms: %.1f\nsetup_ms: %.1f\n",
			live ? (double)(clock_now_ns() - m->t0_ns) / 1e6 : st->total_ms,
			st->setup_ms);
		uint64_t lb = atomic_load(&m->live_bytes);

		fprintf(out, "bytes_total: %llu\npages_normal: %llu\npages_zero: %llu\n"
			"pages_skipped: %llu\n",
			(unsigned long long)(live && lb > st->bytes_total ? lb : st->bytes_total),
			(unsigned long long)st->pages_normal, (unsigned long long)st->pages_zero,
			(unsigned long long)st->pages_skipped);
		if (live)
			fprintf(out, "remaining_pages: %llu\nbandwidth_Bps: %.0f\n"
				"expected_downtime_ms: %.1f\n",
				(unsigned long long)m->remaining_pages, m->bw_Bps,
				m->expected_downtime_ms);
		else
			fprintf(out, "downtime_ms: %.1f\nconverged: %s\nthroughput_Bps: %.0f\n",
				st->downtime_ms, st->converged ? "yes" : "no", st->throughput_Bps);
		if (st->error[0])
			fprintf(out, "error: %s\n", st->error);
	}
	fprintf(out, "downtime_limit_ms: %u\nmax_bandwidth_Bps: %llu\nverify_ram: %s\n"
		"on_nonconvergence: %s\nchannels: %u\nnice: %u\n",
		busy(m) ? m->run.downtime_ms : m->t.downtime_ms,
		(unsigned long long)(busy(m) ? m->run.max_bandwidth : m->t.max_bandwidth),
		m->t.verify_ram ? "on" : "off",
		m->t.cancel_on_nonconvergence ? "cancel" : "force",
		busy(m) ? m->run.channels : m->t.channels, busy(m) ? m->run.nice : m->t.nice);
	pthread_mutex_unlock(&m->lock);
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || x > max || v[0] == '-')
		return -EINVAL;
	*out = x;
	return 0;
}

int mig_set_parameter(struct vm *vm, const char *name, const char *value,
		      char *err, size_t errlen)
{
	struct mig *m = mig_get(vm);
	struct mig_tunables *t;
	uint64_t x = 0;
	int bit = 0, ret = 0;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&m->lock);
	t = &m->t;
	if (!strcmp(name, "downtime-ms")) {
		ret = parse_u64(value, 3600000, &x);
		if (!ret && x == 0)
			ret = -EINVAL;
		t->downtime_ms = (uint32_t)x;
		bit = P_DOWNTIME;
	} else if (!strcmp(name, "max-bandwidth")) {
		ret = !strcmp(value, "0") ? 0 : cli_parse_size(value, &x) ? -EINVAL : 0;
		t->max_bandwidth = x;
		bit = P_BANDWIDTH;
	} else if (!strcmp(name, "verify-ram")) {
		ret = parse_bool(value, &t->verify_ram);
		bit = P_VERIFY;
	} else if (!strcmp(name, "max-rounds")) {
		ret = parse_u64(value, 1000000, &x);
		t->max_rounds = (uint32_t)x;
		bit = P_ROUNDS;
	} else if (!strcmp(name, "max-bytes-factor")) {
		ret = parse_u64(value, 1000, &x);
		t->max_bytes_factor = (uint32_t)x;
		bit = P_BYTES;
	} else if (!strcmp(name, "max-time-s")) {
		ret = parse_u64(value, 86400 * 365, &x);
		t->max_time_ms = x * 1000;
		bit = P_TIME;
	} else if (!strcmp(name, "on-nonconvergence")) {
		if (!strcmp(value, "cancel") || !strcmp(value, "force"))
			t->cancel_on_nonconvergence = !strcmp(value, "cancel");
		else
			ret = -EINVAL;
		bit = P_NONCONV;
	} else if (!strcmp(name, "channels")) {
		ret = parse_u64(value, CHANNELS_MAX, &x);
		t->channels = (uint32_t)x;
		bit = P_CHANNELS;
	} else if (!strcmp(name, "nice")) {
		ret = parse_u64(value, 19, &x);
		t->nice = (uint32_t)x;
		bit = P_NICE;
	} else if (!strcmp(name, "manual-protect")) {
		ret = parse_bool(value, &t->manual_protect);
		bit = P_MANUAL;
	} else if (!strcmp(name, "stats-json") || !strcmp(name, "dirty-trace")) {
		char *dst = name[0] == 's' ? t->stats_json : t->dirty_trace;

		if (strlen(value) >= MIG_PATH_MAX)
			ret = -ENAMETOOLONG;
		else
			snprintf(dst, MIG_PATH_MAX, "%s", strcmp(value, "none") ? value : "");
		bit = name[0] == 's' ? P_STATS : P_TRACE;
	} else {
		snprintf(err, errlen, "unknown parameter '%s' (downtime-ms, max-bandwidth, "
			 "verify-ram, max-rounds, max-bytes-factor, max-time-s, "
			 "on-nonconvergence, manual-protect, channels, nice, stats-json, dirty-trace)",
			 name);
		pthread_mutex_unlock(&m->lock);
		return -EINVAL;
	}
	if (ret)
		snprintf(err, errlen, "bad value '%s' for %s", value, name);
	else
		m->set_mask |= bit;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void mig_destroy(struct vm *vm)
{
	struct mig *m = vm->mig;

	if (!m)
		return;
	mig_cancel(vm);
	pthread_mutex_lock(&m->lock);
	if (m->conn) /* the VM is going away: no time for goodbyes */
		transport_shutdown(m->conn);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	stream_close(&m->in);
	if (m->cancel_efd >= 0)
		close(m->cancel_efd);
	stats_free(&m->st);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->mig = NULL;
}
