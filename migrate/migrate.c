/* The entry points the rest of minivmm calls (migrate/migrate.h): start,
 * cancel, `info migrate`, parameters, teardown. The work is done in
 * source.c (thread) and target.c, over the sections of sections.c. */
#include "migrate/mig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "migrate/auth/hmac.h"
#include "migrate/auth/keyfile.h"
#include "migrate/postcopy/pc_target.h"
#include "devices/conline.h"
#include "vmm/core/vm.h"

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
		[MIG_POSTCOPY] = "postcopy", [MIG_POSTCOPY_PAUSED] = "postcopy-paused",
		[MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
		[MIG_CANCELLED] = "cancelled",
	};

	return s <= MIG_CANCELLED ? names[s] : "?";
}

bool mig_status_in_progress(const char *status)
{
	for (enum mig_state s = MIG_SETUP; s <= MIG_POSTCOPY_PAUSED; s++)
		if (!strcmp(status, mig_state_name(s)))
			return true;
	return false;
}

void mig_params_init(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	mig_tunables_default(&p->t);
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
	pthread_cond_init(&m->cond, NULL);
	m->conn = NULL;
	stream_reset(&m->in);
	m->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	mig_tunables_default(&m->t);
	vm->mig = m;
	return m;
}

/* The settings of the next run: the command line's, then the monitor's. */
static void effective(struct mig *m, const struct mig_params *p, struct mig_tunables *out)
{
	unsigned nc = mig_param_index(mig_param_by_name("on-nonconvergence"));

	if (p)
		*out = p->t;
	else
		mig_tunables_default(out);
	for (size_t i = 0; i < mig_param_count; i++)
		if (m->set_mask & (1u << i))
			mig_param_copy(out, &m->t, &mig_param_table[i]);
	/* Post-copy allowed and no policy chosen: it is the policy. */
	if (out->postcopy && !(m->set_mask & (1u << nc)) && !(p && (p->set & (1u << nc))))
		out->nonconvergence = MIG_NONCONV_POSTCOPY;
}

bool mig_state_busy(enum mig_state s)
{
	return s >= MIG_SETUP && s <= MIG_POSTCOPY_PAUSED;
}

static bool busy(const struct mig *m)
{
	return mig_state_busy(m->state);
}

/* `migrate URI` while a post-copy link is down: the source thread
 * reconnects there (pc_source.c). */
static int recover_at(struct mig *m, const char *uri, char *err, size_t errlen)
{
	if (m->recover_pending) {
		snprintf(err, errlen, "a recovery is already under way");
		return -EBUSY;
	}
	snprintf(m->recover_uri, sizeof(m->recover_uri), "%s", uri);
	m->recover_pending = true;
	pthread_cond_broadcast(&m->cond);
	return 0;
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
	if (m->state == MIG_POSTCOPY_PAUSED && m->st.role == STATS_SOURCE) {
		ret = recover_at(m, uri, err, errlen);
		pthread_mutex_unlock(&m->lock);
		return ret;
	}
	/* A VM that arrived here by migration may leave again. */
	if (busy(m) || (m->state == MIG_COMPLETED && m->st.role == STATS_SOURCE)) {
		snprintf(err, errlen, m->state == MIG_COMPLETED ? "the VM has migrated already" :
			 "a migration is already running (migrate_cancel stops it)");
		pthread_mutex_unlock(&m->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&m->lock);
	pool_join(&m->thread); /* the previous, finished attempt */
	pthread_mutex_lock(&m->lock);
	effective(m, p, &m->run);
	if (m->run.nonconvergence == MIG_NONCONV_POSTCOPY && !m->run.postcopy) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errlen, "on-nonconvergence postcopy needs post-copy allowed "
			 "(--postcopy, or migrate_set_parameter postcopy on)");
		return -EINVAL;
	}
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
	m->start_postcopy = 0;
	m->pc_possible = false;
	m->recover_pending = false;
	m->remaining_pages = 0;
	m->expected_downtime_ms = 0;
	m->bw_Bps = 0;
	atomic_store(&m->live_bytes, 0);
	stats_free(&m->st);
	memset(&m->st, 0, sizeof(m->st));
	m->st.role = STATS_SOURCE;
	m->st.downtime_limit_ms = m->run.downtime_ms;
	m->st.max_bandwidth_Bps = m->run.max_bandwidth;
	m->st.ram_bytes = vm->ram_size;
	m->st.vcpus = (uint32_t)vm->ncpus;
	m->t0_ns = clock_now_ns();
	pthread_mutex_unlock(&m->lock);
	ret = pool_start(&m->thread, 1, mig_source_thread, vm, 0, "migration", err, errlen);
	if (ret)
		m->state = MIG_FAILED;
	return ret;
}

int mig_cancel(struct vm *vm)
{
	struct mig *m = vm->mig;
	int ret = -ENOENT;

	if (!m)
		return -ENOENT;
	pthread_mutex_lock(&m->lock);
	if (busy(m) && m->state < MIG_COMMITTED) {
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

/* The parameters as a migration started now would use them (the running
 * one's while it runs), under their monitor names. */
static void print_params(struct mig *m, const struct mig_params *p, FILE *out)
{
	struct mig_tunables eff;
	char v[MIG_PATH_MAX];

	if (busy(m))
		eff = m->run;
	else
		effective(m, p, &eff);
	for (size_t i = 0; i < mig_param_count; i++) {
		mig_param_format(&eff, &mig_param_table[i], v, sizeof(v));
		fprintf(out, "%s: %s\n", mig_param_table[i].name, v);
	}
}

void mig_info(struct vm *vm, const struct mig_params *p, FILE *out)
{
	struct mig *m = mig_get(vm);
	const struct stats *st;

	if (!m) {
		fprintf(out, "status: none\n");
		return;
	}
	pc_tgt_publish(m->pc); /* the target's live post-copy figures */
	pthread_mutex_lock(&m->lock);
	st = &m->st;
	fprintf(out, "status: %s\n", mig_state_name(m->state));
	if (m->state != MIG_NONE) {
		uint64_t lb = atomic_load(&m->live_bytes);
		bool live = busy(m);

		if (m->uri[0])
			fprintf(out, "uri: %s\n", m->uri);
		fprintf(out, "role: %s\n", stats_role_name(st->role));
		fprintf(out, "round: %u\nrounds: %u\n", m->round, st->rounds);
		fprintf(out, "total_ms: %.1f\nsetup_ms: %.1f\n",
			live ? clock_ms_since(m->t0_ns) : st->total_ms, st->setup_ms);
		fprintf(out, "bytes_total: %llu\npages_normal: %llu\npages_zero: %llu\n"
			"pages_skipped: %llu\n",
			(unsigned long long)(live && lb > st->bytes_total ? lb : st->bytes_total),
			(unsigned long long)st->pages_normal, (unsigned long long)st->pages_zero,
			(unsigned long long)st->pages_skipped);
		if (live)
			fprintf(out, "remaining_pages: %llu\nbandwidth_Bps: %.0f\n"
				"expected_downtime_ms: %.1f\nthrottle_pct: %u\n",
				(unsigned long long)m->remaining_pages, m->bw_Bps,
				m->expected_downtime_ms, m->throttle_pct);
		else
			fprintf(out, "downtime_ms: %.1f\nconverged: %s\nthroughput_Bps: %.0f\n",
				st->downtime_ms, st->converged ? "yes" : "no", st->throughput_Bps);
		{
			double gap = vm->console ? conline_gap_ms(vm->console) : 0;

			fprintf(out, "guest_console_gap_ms: %.1f\n",
				gap > st->guest_console_gap_ms ? gap : st->guest_console_gap_ms);
		}
		if (st->postcopy)
			fprintf(out, "postcopy_ms: %.1f\npostcopy_pages_missing: %llu\n"
				"postcopy_pages_requested: %llu\npostcopy_pages_pushed: %llu\n"
				"postcopy_pages_hot: %llu\npostcopy_pages_busy: %llu\n"
				"postcopy_pages_delta: %llu\n"
				"postcopy_faults: %llu\npostcopy_fault_p50_ms: %.3f\n"
				"postcopy_fault_p99_ms: %.3f\npostcopy_fault_max_ms: %.3f\n"
				"postcopy_blocktime_ms: %.1f\npostcopy_recoveries: %u\n",
				st->postcopy_ms, (unsigned long long)st->pc_pages_missing,
				(unsigned long long)st->pc_pages_requested,
				(unsigned long long)st->pc_pages_pushed,
				(unsigned long long)st->pc_pages_hot,
				(unsigned long long)st->pc_pages_busy,
				(unsigned long long)st->pc_pages_delta,
				(unsigned long long)st->pc_faults, st->pc_fault_p50_ms,
				st->pc_fault_p99_ms, st->pc_fault_max_ms, st->pc_blocktime_ms,
				st->pc_recoveries);
		if (st->error[0])
			fprintf(out, "error: %s\n", st->error);
	}
	print_params(m, p, out);
	pthread_mutex_unlock(&m->lock);
}

int mig_set_parameter(struct vm *vm, const char *name, const char *value,
		      char *err, size_t errlen)
{
	const struct mig_param *p = mig_param_by_name(name);
	struct mig *m = mig_get(vm);
	int ret;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!p) {
		snprintf(err, errlen, "unknown parameter '%s' (help lists them)", name);
		return -EINVAL;
	}
	/* A key that cannot be used is refused now, not at the migration. */
	if (!strcmp(p->name, "key") && strcmp(value, "none")) {
		struct auth_key k;

		ret = auth_key_load(value, &k, err, errlen);
		auth_wipe(&k, sizeof(k));
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&m->lock);
	ret = mig_param_set(&m->t, p, value, err, errlen);
	if (!ret)
		m->set_mask |= 1u << mig_param_index(p);
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
	m->cancel = 1; /* a post-copy source waiting for `migrate URI` gives up */
	pthread_cond_broadcast(&m->cond);
	if (m->conn) /* the VM is going away: no time for goodbyes */
		transport_shutdown(m->conn);
	pthread_mutex_unlock(&m->lock);
	pool_join(&m->thread);
	stream_close(&m->in);
	if (m->cancel_efd >= 0)
		close(m->cancel_efd);
	pc_tgt_destroy(m->pc);
	m->pc = NULL;
	stats_free(&m->st);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->mig = NULL;
}

void mig_release_faults(struct vm *vm)
{
	struct mig *m = vm->mig;

	if (m && m->pc) {
		pc_tgt_destroy(m->pc);
		m->pc = NULL;
	}
}

int mig_start_postcopy(struct vm *vm, char *err, size_t errlen)
{
	struct mig *m = mig_get(vm);
	int ret = 0;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&m->lock);
	if (m->st.role != STATS_SOURCE || !busy(m) || m->state >= MIG_SWITCHOVER) {
		snprintf(err, errlen, "no pre-copy migration is running");
		ret = -ENOENT;
	} else if (!m->run.postcopy || !m->pc_possible) {
		snprintf(err, errlen, m->run.postcopy ? "post-copy is not possible (yet): the "
			 "target has not taken it" : "post-copy is not allowed for this migration "
			 "(migrate_set_parameter postcopy on, before migrate)");
		ret = -EPERM;
	} else {
		m->start_postcopy = 1;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int mig_recover(struct vm *vm, const char *uri, char *err, size_t errlen)
{
	struct mig *m = vm->mig;
	struct transport_addr a;
	int ret;

	if (!m || m->st.role != STATS_TARGET || !m->pc) {
		snprintf(err, errlen, "no incoming post-copy migration here");
		return -ENOENT;
	}
	ret = transport_parse(uri, true, &a, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	if (m->state != MIG_POSTCOPY_PAUSED) {
		snprintf(err, errlen, "the post-copy link is not lost (status %s)",
			 mig_state_name(m->state));
		ret = -EBUSY;
	} else {
		ret = recover_at(m, uri, err, errlen);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}
