/* RAM, source side: dirty tracking on, round 0 (every page), rounds 1..n
 * (the pages the last sync found dirty), the final round in the pause.
 * With data channels every round goes over them, the final one too: the
 * estimate that chose to stop assumed their bandwidth. */
#include "migrate/ram/section_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_policy.h"
#include "migrate/postcopy/pc_source.h"
#include "migrate/ram/bitmap.h"
#include "vmm/core/hotpages.h"

/* The target grants up to what was asked (0: one stream it is) and a
 * token the channels present when they connect. */
static int ask_channels(struct ram_sec *x, struct mig_src_env *env)
{
	uint8_t b[CHANNELS_LEN];
	uint32_t len;
	int ret;

	le_put32(b, env->t->channels);
	le_put64(b + 4, 0);
	ret = stream_send(env->s, ST_CHANNELS, b, CHANNELS_LEN, env->err, env->errlen);
	if (!ret)
		ret = stream_recv_expect(env->s, ST_CHANNELS, b, sizeof(b), &len, "target",
					 env->err, env->errlen);
	if (ret)
		return ret;
	if (len != CHANNELS_LEN || le_get32(b) > env->t->channels) {
		snprintf(env->err, env->errlen, "bad CHANNELS reply from the target");
		return -EPROTO;
	}
	x->nchan = le_get32(b);
	x->chan_token = le_get64(b + 4);
	return 0;
}

static int open_channels(struct ram_sec *x, struct mig_src_env *env)
{
	struct mig *m = env->m;
	struct chan_src_cfg cfg = {
		.vm = env->vm, .d = &x->d, .cancel = &m->cancel,
		.cancel_fd = m->cancel_efd, .rate = x->rs.rate,
		.sent_bm = x->rs.sent_bm, .timeout_ms = MIG_IO_TIMEOUT_MS,
		.nice = (int)env->t->nice, .live_bytes = &m->live_bytes, .xbz = x->xbz,
		.session = stream_mac_session(env->s), .integrity = stream_mac_integrity(env->s),
		.stop = x->rs.stop,
	};
	int ret = chan_src_open(&x->cs, env->addr, x->nchan, x->chan_token, &cfg, env->err,
				env->errlen);

	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	m->st.channels = x->nchan;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int ram_save_setup(void *sec, struct mig_src_env *env)
{
	struct ram_sec *x = sec;
	struct vm *vm = env->vm;
	uint64_t npages = vm->ram_size / VM_PAGE_SIZE;
	int ret = 0;

	ram_send_init(&x->rs, vm, env->s, &env->m->cancel, env->rate);
	x->rs.live_bytes = &env->m->live_bytes;
	if (!env->file && env->t->verify_ram) {
		/* Both sides hash all of RAM in the pause: part of its cost. */
		uint64_t t = clock_now_ns();

		(void)ram_digest(vm->ram, npages);
		x->digest_ms = clock_ms_since(t);
	}
	/* A snapshot is one pass: nothing is ever sent twice. */
	if (!env->file && env->t->xbzrle_cache) {
		ret = xbz_cache_create(&x->xbz, env->t->xbzrle_cache, env->err, env->errlen);
		if (!ret)
			ret = ram_send_set_xbz(&x->rs, x->xbz, env->err, env->errlen);
		if (ret)
			return ret;
		pthread_mutex_lock(&env->m->lock);
		env->m->st.xbzrle_cache_bytes = x->xbz->nslots * VM_PAGE_SIZE;
		pthread_mutex_unlock(&env->m->lock);
	}
	if (!env->file && env->t->channels)
		ret = ask_channels(x, env);
	if (ret)
		return ret;
	if (env->t->dirty_trace[0]) {
		ret = trace_open(&x->trace, env->t->dirty_trace, npages, VM_PAGE_SIZE);
		if (ret) {
			snprintf(env->err, env->errlen, "dirty trace %.300s: %s",
				 env->t->dirty_trace, strerror(-ret));
			return ret;
		}
		x->tracing = true;
		x->rs.sent_bm = calloc(bm_words(npages), 8);
	}
	/* Post-copy allowed: migrate_start_postcopy ends a pass early, and
	 * round 0's coverage tells the switch what it did not send. */
	if (!env->file && env->t->postcopy) {
		x->rs.stop = &env->m->start_postcopy;
		if (!x->rs.sent_bm)
			x->rs.sent_bm = calloc(bm_words(npages), 8);
		if (!x->rs.sent_bm) {
			snprintf(env->err, env->errlen, "calloc(round 0 coverage): out of memory");
			return -ENOMEM;
		}
	}
	/* The throttle looks at round 0's debt while it runs (not with delta
	 * encoding): that needs round 0's coverage. Kept to the end, as the
	 * channels' senders hold the pointer. */
	if (!env->file && env->t->nonconvergence == MIG_NONCONV_THROTTLE &&
	    !env->t->xbzrle_cache && !x->rs.sent_bm &&
	    !(x->rs.sent_bm = calloc(bm_words(npages), 8))) {
		snprintf(env->err, env->errlen, "calloc(round 0 coverage): out of memory");
		return -ENOMEM;
	}
	if (x->nchan && (ret = open_channels(x, env)) != 0)
		return ret;
	if (!env->file && env->t->postcopy && (ret = pc_src_setup(&x->pcs, env, x->xbz)) != 0)
		return ret;
	/* Declined: the stop flag stays 0 (migrate_start_postcopy needs
	 * pc_possible). */
	pthread_mutex_lock(&env->m->lock);
	env->m->pc_possible = x->pcs != NULL;
	pthread_mutex_unlock(&env->m->lock);
	if (env->file) { /* no logging: the guest is paused for a snapshot */
		ram_dirty_init(&x->d, npages);
		return ram_dirty_scan(vm, &x->d, env->err, env->errlen);
	}
	ret = ram_dirty_start(vm, &x->d, env->t->manual_protect, env->err, env->errlen);
	x->t_last_sync = clock_now_ns();
	return ret;
}

/* The channels' figures since the last call, into the sender's. */
static void fold_channels(struct ram_sec *x, struct mig_src_env *env)
{
	struct chan_totals t;

	chan_src_totals(x->cs, &t);
	x->rs.pages_normal += t.normal - x->cs_seen.normal;
	x->rs.pages_zero += t.zero - x->cs_seen.zero;
	x->rs.pages_skipped += t.skipped - x->cs_seen.skipped;
	x->rs.xbz_pages += t.xbz_pages - x->cs_seen.xbz_pages;
	x->rs.xbz_saved += t.xbz_saved - x->cs_seen.xbz_saved;
	x->rs.xbz_misses += t.xbz_misses - x->cs_seen.xbz_misses;
	x->rs.xbz_ns += t.xbz_ns - x->cs_seen.xbz_ns;
	env->extra_bytes_out = t.bytes;
	x->cs_seen = t;
}

static void publish(struct ram_sec *x, struct mig_src_env *env)
{
	struct mig *m = env->m;

	pthread_mutex_lock(&m->lock);
	m->st.pages_normal = x->rs.pages_normal;
	m->st.pages_zero = x->rs.pages_zero;
	m->st.pages_skipped = x->rs.pages_skipped;
	m->st.pages_populated_late = x->d.found_late;
	m->st.dirty_ring_resends = x->d.ring_resends;
	m->st.xbzrle_pages = x->rs.xbz_pages;
	m->st.xbzrle_bytes_saved = x->rs.xbz_saved;
	m->st.xbzrle_cache_misses = x->rs.xbz_misses;
	m->st.xbzrle_encode_ms = (double)x->rs.xbz_ns / 1e6;
	pthread_mutex_unlock(&m->lock);
}

/* Pages in use that round 0 did not send (it ended early, or they were
 * first touched after it passed them: then they are dirty anyway). */
static int uncovered_to_dirty(struct ram_sec *x, struct mig_src_env *env)
{
	struct resident now;
	int ret;

	if (!x->rs.sent_bm)
		return 0;
	resident_init(&now, RESIDENT_AUTO);
	ret = resident_scan(&now, env->vm->ram, 0, x->d.npages, env->err, env->errlen);
	for (size_t i = 0; !ret && i < now.n; i++)
		for (uint64_t p = now.r[i].first; p < now.r[i].first + now.r[i].count; p++)
			if (!bm_test(x->rs.sent_bm, p))
				bm_set(x->d.bm, p);
	resident_free(&now);
	return ret;
}

/* The pages the vCPUs' registers point at, if the guest dirtied them:
 * sent now, in the pause, rather than asked for by the guest's first
 * faults on the target (docs/postcopy.md, "Pages sent with the state").
 * At most PC_HOT_MAX, and no more than PC_HOT_SHARE of the downtime
 * limit takes at the estimated bandwidth. */
static int send_hot(struct ram_sec *x, struct mig_src_env *env)
{
	/* Candidates that are clean (code, a number in a register) take no
	 * budget: ask for more than will be sent. */
	uint64_t pages[4 * PC_HOT_MAX];
	double bw = est_bandwidth(env->e);
	int max = PC_HOT_MAX, n, nregs, ret = 0, sent = 0, busy = 0;
	char why[160];

	if (bw > 0) {
		double fit = bw * env->t->downtime_ms / 1000.0 * PC_HOT_SHARE / RAM_WIRE_PAGE_BYTES;

		if (fit < max)
			max = (int)fit;
	}
	n = hotpages_find(env->vm, pages, 3 * PC_HOT_MAX, why, sizeof(why));
	if (n < 0) {
		/* A hint only: the pages stay in the missing set. */
		fprintf(stderr, "minivmm: post-copy: the vCPUs' pages are not sent ahead: %s\n", why);
		n = 0;
	}
	/* Then what the guest kept writing; a page on both lists is sent
	 * once: the first send clears its bit. */
	nregs = n;
	n += ram_hotwin_pages(&x->hw, x->d.bm, pages + n, 4 * PC_HOT_MAX - n);
	ram_hotwin_free(&x->hw);
	for (int i = 0; i < n && sent < max && !ret; i++) {
		if (!bm_test(x->d.bm, pages[i]))
			continue;
		bm_clear(x->d.bm, pages[i]);
		ret = ram_send_page(&x->rs, pages[i], env->err, env->errlen);
		sent += !ret;
		busy += !ret && i >= nregs;
	}
	if (!ret)
		ret = ram_send_flush(&x->rs, env->err, env->errlen);
	pthread_mutex_lock(&env->m->lock);
	env->m->st.pc_pages_hot = (uint64_t)sent;
	env->m->st.pc_pages_busy = (uint64_t)busy;
	pthread_mutex_unlock(&env->m->lock);
	return ret;
}

/* Only while the switch can use it: the target took post-copy. */
int ram_save_before_switch(void *sec, struct mig_src_env *env)
{
	struct ram_sec *x = sec;
	uint64_t t = clock_now_ns();
	char why[160];
	int ret;

	if (!x->pcs)
		return 0;
	ret = ram_hotwin_take(&x->hw, env->vm, &x->d, x->rs.sent_bm, PC_HOT_WINDOW_US, why,
			      sizeof(why));
	if (ret < 0) {
		snprintf(env->err, env->errlen, "%s", why);
		return ret;
	}
	if (ret)
		fprintf(stderr, "minivmm: post-copy: the guest's busiest pages are not sent ahead: "
			"%s\n", why);
	pthread_mutex_lock(&env->m->lock);
	env->m->st.pc_hotwin_ms = clock_ms_since(t);
	pthread_mutex_unlock(&env->m->lock);
	return 0;
}

/* Round 0's look at its own debt, every p->progress_ms; a tracker that
 * cannot be read without disturbing it ends the looks (the rounds still
 * decide, a round later). */
static void probe(void *arg)
{
	struct ram_sec *x = arg;
	struct mig_pass *p = x->probe_pass;
	uint64_t now = clock_now_ns(), debt;
	char err[160];
	int ret;

	if (!p || now < x->probe_next)
		return;
	x->probe_next = now + (uint64_t)p->progress_ms * 1000000ULL;
	ret = ram_dirty_debt(x->rs.vm, &x->d, x->rs.sent_bm, &debt, err, sizeof(err));
	if (ret) {
		/* The tracker cannot say (docs/migration.md) is expected. */
		if (ret != -EOPNOTSUPP)
			fprintf(stderr, "minivmm: round 0's throttle looks stopped: %s\n", err);
		x->probe_pass = NULL;
		return;
	}
	p->progress(p->progress_arg, debt);
}

static int send_round0(struct ram_sec *x, struct mig_src_env *env, struct mig_pass *p)
{
	bool look = p->progress && p->progress_ms && x->rs.sent_bm;
	int ret;

	x->probe_pass = look ? p : NULL;
	x->probe_next = clock_now_ns() + (uint64_t)p->progress_ms * 1000000ULL;
	if (x->cs) {
		ret = chan_src_round(x->cs, 0, look ? probe : NULL, x, p->progress_ms, env->err,
				     env->errlen);
	} else {
		x->rs.tick = look ? probe : NULL;
		x->rs.tick_arg = x;
		ret = ram_send_all(&x->rs, &x->d, env->err, env->errlen);
		x->rs.tick = NULL;
	}
	x->probe_pass = NULL;
	return ret;
}

static int send_round_marker(struct ram_sec *x, struct mig_src_env *env,
			     const struct mig_pass *p)
{
	uint8_t b[ROUND_LEN];

	le_put32(b, p->round);
	le_put32(b + 4, (p->final ? ROUND_FLAG_FINAL : 0) |
		 (env->converged ? ROUND_FLAG_CONVERGED : 0) |
		 (p->final && env->postcopy && x->pcs ? ROUND_FLAG_POSTCOPY : 0));
	return stream_send(env->s, ST_ROUND, b, ROUND_LEN, env->err, env->errlen);
}

int ram_save_iterate(void *sec, struct mig_src_env *env, struct mig_pass *p)
{
	struct ram_sec *x = sec;
	uint64_t t = clock_now_ns();
	uint64_t p0 = x->rs.pages_normal + x->rs.pages_zero;
	int ret;

	/* A trace problem must not fail the migration: tracing stops. */
	if (x->tracing && p->round > 0 &&
	    trace_round(&x->trace, p->round, t - env->t0, x->d.bm) < 0)
		x->tracing = false;
	ret = send_round_marker(x, env, p);
	if (!ret && p->final && env->postcopy && x->pcs) {
		/* The switch: the target gets the set it lacks, not the pages:
		 * the dirty ones, and those a pass ended early did not cover. */
		ret = uncovered_to_dirty(x, env);
		if (!ret)
			ret = send_hot(x, env);
		if (!ret)
			ret = pc_src_switch(x->pcs, env, x->d.bm);
		p->rec->dirty_pages = bm_count(x->d.bm, x->d.npages);
	} else if (!ret && p->round == 0) {
		ret = send_round0(x, env, p);
		if (x->cs)
			fold_channels(x, env);
	} else if (!ret && x->cs) {
		ret = chan_src_round(x->cs, p->round, NULL, NULL, 0, env->err, env->errlen);
		fold_channels(x, env);
	} else if (!ret) {
		ret = ram_send_dirty(&x->rs, &x->d, env->err, env->errlen);
	}
	publish(x, env);
	if (ret)
		return ret;
	p->rec->pages_sent = x->rs.pages_normal + x->rs.pages_zero - p0;
	if (p->round == 0) {
		p->rec->dirty_pages = x->d.npages;
		p->resend_bytes = p->rec->pages_sent * RAM_WIRE_PAGE_BYTES;
		if (x->tracing && trace_round(&x->trace, 0, t - env->t0, x->rs.sent_bm) < 0)
			x->tracing = false;
	}
	return 0;
}

int ram_save_pending(void *sec, struct mig_src_env *env, struct mig_pass *p,
		     struct mig_pending *out)
{
	struct ram_sec *x = sec;
	uint64_t t, dirty;
	int ret;

	/* The sync that chose to stop sent nothing: the final round's dirty
	 * rate counts from the last round that did. */
	if (p->final)
		x->t_last_sync = x->t_prev_sync;
	t = clock_now_ns();
	ret = ram_dirty_sync(env->vm, &x->d, env->err, env->errlen);
	if (ret)
		return ret;
	dirty = bm_count(x->d.bm, x->d.npages);
	x->sync_ms = clock_ms_since(t);
	p->rec->sync_ms = x->sync_ms;
	p->rec->dirty_pages = dirty;
	p->rec->dirty_rate_pps = t > x->t_last_sync ?
		(double)dirty * 1e9 / (double)(t - x->t_last_sync) : 0;
	x->t_prev_sync = x->t_last_sync;
	x->t_last_sync = t;
	out->bytes += dirty * RAM_WIRE_PAGE_BYTES;
	out->rate_Bps += p->rec->dirty_rate_pps * RAM_WIRE_PAGE_BYTES;
	pthread_mutex_lock(&env->m->lock);
	env->m->remaining_pages = dirty;
	pthread_mutex_unlock(&env->m->lock);
	return 0;
}

/* In the pause: the last dirty sync, and hashing RAM when --verify-ram
 * (both sides hash). */
double ram_save_cost_ms(void *sec, struct mig_src_env *env)
{
	struct ram_sec *x = sec;

	(void)env;
	return x->sync_ms + 2 * x->digest_ms;
}

int ram_save_complete(void *sec, struct mig_src_env *env, struct mig_end *end)
{
	(void)sec;
	if (env->t->verify_ram) {
		end->flags |= END_FLAG_DIGEST;
		end->digest = ram_digest(env->vm->ram, env->vm->ram_size / VM_PAGE_SIZE);
	}
	return 0;
}

int ram_save_postcopy(void *sec, struct mig_src_env *env)
{
	struct ram_sec *x = sec;

	int ret;

	if (!x->pcs)
		return 0;
	ret = pc_src_run(x->pcs, env);
	/* The return path's bytes count with the rest. */
	env->extra_bytes_out += pc_src_rp_bytes(x->pcs);
	return ret;
}

void ram_save_cleanup(void *sec, struct mig_src_env *env, bool ok)
{
	struct ram_sec *x = sec;

	pc_src_destroy(x->pcs);
	x->pcs = NULL;
	ram_hotwin_free(&x->hw);

	(void)ok;
	if (x->tracing)
		trace_close(&x->trace);
	x->tracing = false;
	free(x->rs.sent_bm);
	x->rs.sent_bm = NULL;
	ram_dirty_stop(env->vm, &x->d);
	chan_src_close(x->cs);
	x->cs = NULL;
	ram_send_fini(&x->rs);
	xbz_cache_destroy(x->xbz); /* after every sender that used it */
	x->xbz = NULL;
}
