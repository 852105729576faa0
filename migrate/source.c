/* The source side of a live migration, run in its own thread so the guest
 * keeps running during the pre-copy rounds:
 *   connect, HELLO/ACCEPT, PING/PONG (round trip), probe the switchover
 *   cost, dirty logging on, round 0 (all pages), rounds 1..n (dirty pages)
 *   until the stop rule or a backstop, pause, final round, STATE, END,
 *   READY, COMMIT, RUNNING.
 * Until COMMIT is sent every failure resumes the guest here: the VM is
 * never lost. After COMMIT the target owns the guest. */
#include "migrate/mig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/ram/bitmap.h"
#include "migrate/ram/chan.h"
#include "migrate/ram/ram.h"
#include "migrate/stats/trace.h"
#include "migrate/state/vmstate.h"
#include "vmm/core/vm.h"
#if __has_include("migrate/state/cpucompat.h")
#include "migrate/state/cpucompat.h"
#define HAVE_CPUCOMPAT 1
#endif

/* Restore on the target is assumed to cost what save costs here (same
 * ioctls, reversed) plus this for starting the vCPU threads. */
#define RESTORE_EXTRA_MS 0.5
/* A page on the wire: contents plus its share of run tables. */
#define WIRE_PAGE_BYTES (VM_PAGE_SIZE + 16)

struct src {
	struct vm *vm;
	struct mig *m;
	const struct mig_tunables *t;
	struct stream s;
	struct ram_dirty d;
	struct ram_sender rs;
	struct est e;
	struct est_rate rate;
	struct trace trace;
	struct chan_src *cs;      /* data channels, when the target granted them */
	uint32_t nchan;
	uint64_t chan_token;
	struct chan_totals ct_seen;
	uint64_t chan_bytes;      /* written on the data channels */
	bool tracing, paused, committed, file, converged;
	uint64_t t0, t_pause, t_last_sync, t_prev_sync;
	double rtt_ms, state_ms, digest_ms, pause_ms, sync_ms;
	size_t state_len;
	char err[512];
};

static uint64_t out_bytes(const struct src *c)
{
	return c->s.bytes_out + c->chan_bytes;
}

static double ms_since(uint64_t t)
{
	return (double)(clock_now_ns() - t) / 1e6;
}

static void set_state(struct src *c, enum mig_state st)
{
	pthread_mutex_lock(&c->m->lock);
	c->m->state = st;
	pthread_mutex_unlock(&c->m->lock);
}

static int send_hello(struct src *c)
{
	struct hello h = {
		.version = STREAM_VERSION,
		.flags = c->t->verify_ram ? HELLO_FLAG_VERIFY_RAM : 0,
		.mem_size = c->vm->ram_size,
		.ncpus = (uint32_t)c->vm->ncpus,
		.pid = (uint32_t)getpid(),
		.page_size = VM_PAGE_SIZE,
	};
	uint8_t pre[STREAM_PREAMBLE_LEN], *buf = NULL;
	int n, ret;

	snprintf(h.name, sizeof(h.name), "%s", c->vm->cfg.name);
#ifdef HAVE_CPUCOMPAT
	struct cpucompat cc;
	uint8_t blob[CPUCOMPAT_WIRE_SIZE];
	const char *inject = getenv("MINIVMM_CPUCOMPAT_OVERRIDE");

	ret = cpucompat_get(c->vm, &cc, c->err, sizeof(c->err));
	/* Tests fake a different CPU with this (see docs/migration.md). */
	if (!ret && inject && *inject)
		ret = cpucompat_override(&cc, inject, c->err, sizeof(c->err));
	if (ret)
		return ret;
	n = cpucompat_encode(&cc, blob, sizeof(blob));
	if (n < 0)
		return n;
	h.compat = blob;
	h.compat_len = (uint32_t)n;
#endif
	buf = malloc(HELLO_FIXED_LEN + h.compat_len);
	ret = -ENOMEM;
	if (!buf)
		goto out;
	n = stream_hello_encode(&h, buf, HELLO_FIXED_LEN + h.compat_len);
	stream_preamble_encode(pre);
	ret = n < 0 ? n : stream_write_all(&c->s, pre, sizeof(pre), c->err, sizeof(c->err));
	if (!ret)
		ret = stream_send(&c->s, ST_HELLO, buf, (uint32_t)n, c->err, sizeof(c->err));
out:
	free(buf);
	return ret;
}

/* PING/PONG. Inside a round the target answers once the round's pages
 * are in (the end-of-round drain); before round 0 it is one round trip. */
static int ping(struct src *c)
{
	uint8_t tok[8];
	int ret;

	le_put64(tok, clock_now_ns());
	ret = stream_send(&c->s, ST_PING, tok, 8, c->err, sizeof(c->err));
	if (!ret)
		ret = stream_recv_expect(&c->s, ST_PONG, tok, 8, NULL, "target", c->err,
					 sizeof(c->err));
	return ret;
}

/* The target grants up to what was asked (0: one stream it is) and a
 * token the channels present when they connect. */
static int ask_channels(struct src *c)
{
	uint8_t b[CHANNELS_LEN];
	uint32_t len;
	int ret;

	le_put32(b, c->t->channels);
	le_put64(b + 4, 0);
	ret = stream_send(&c->s, ST_CHANNELS, b, CHANNELS_LEN, c->err, sizeof(c->err));
	if (!ret)
		ret = stream_recv_expect(&c->s, ST_CHANNELS, b, sizeof(b), &len, "target", c->err,
					 sizeof(c->err));
	if (ret)
		return ret;
	if (len != CHANNELS_LEN || le_get32(b) > c->t->channels) {
		snprintf(c->err, sizeof(c->err), "bad CHANNELS reply from the target");
		return -EPROTO;
	}
	c->nchan = le_get32(b);
	c->chan_token = le_get64(b + 4);
	return 0;
}

static int handshake(struct src *c)
{
	uint64_t t;
	int ret = send_hello(c);

	if (ret)
		return ret;
	if (c->file)
		return 0;
	ret = stream_recv_expect(&c->s, ST_ACCEPT, NULL, 0, NULL, "target", c->err,
				 sizeof(c->err));
	if (ret)
		return ret;
	/* One round trip, for the switchover cost estimate (READY/COMMIT and
	 * COMMIT/RUNNING are one each). */
	t = clock_now_ns();
	ret = ping(c);
	c->rtt_ms = ms_since(t);
	if (!ret && c->t->channels)
		ret = ask_channels(c);
	return ret;
}

/* Measures what the switchover costs besides RAM: pausing the vCPUs and
 * saving their state (the guest stalls for that once, here), and hashing
 * RAM when --verify-ram (both sides hash). */
static int probe_costs(struct src *c)
{
	uint8_t *blob = NULL;
	uint64_t t = clock_now_ns(), t1;
	int ret = vm_pause(c->vm);

	if (ret) {
		snprintf(c->err, sizeof(c->err), "the VM is shutting down");
		vm_resume(c->vm);
		return ret;
	}
	t1 = clock_now_ns();
	ret = vmstate_save(c->vm, &blob, &c->state_len, c->err, sizeof(c->err));
	c->state_ms = ms_since(t1);
	vm_resume(c->vm);
	c->pause_ms = (double)(t1 - t) / 1e6;
	free(blob);
	if (ret)
		return ret;
	if (c->t->verify_ram) {
		t = clock_now_ns();
		(void)ram_digest(c->vm->ram, c->vm->ram_size / VM_PAGE_SIZE);
		c->digest_ms = ms_since(t);
	}
	return 0;
}

static double fixed_cost_ms(const struct src *c)
{
	double bw = est_bandwidth(&c->e);
	double xfer = bw > 0 ? (double)c->state_len * 1000.0 / bw : 0;

	return c->pause_ms + c->sync_ms + c->state_ms * 2 + RESTORE_EXTRA_MS + xfer +
	       2 * c->rtt_ms + 2 * c->digest_ms;
}

static int send_round_marker(struct src *c, uint32_t round, bool final)
{
	uint8_t b[8];

	le_put32(b, round);
	le_put32(b + 4, (final ? ROUND_FLAG_FINAL : 0) |
		 (c->converged ? ROUND_FLAG_CONVERGED : 0));
	return stream_send(&c->s, ST_ROUND, b, 8, c->err, sizeof(c->err));
}

static void publish(struct src *c, uint32_t round, uint64_t remaining,
		    double expected)
{
	struct mig *m = c->m;

	pthread_mutex_lock(&m->lock);
	m->round = round;
	m->remaining_pages = remaining;
	m->expected_downtime_ms = expected;
	m->bw_Bps = est_bandwidth(&c->e);
	m->st.bytes_total = out_bytes(c);
	m->st.pages_normal = c->rs.pages_normal;
	m->st.pages_zero = c->rs.pages_zero;
	m->st.pages_skipped = c->rs.pages_skipped;
	m->st.total_ms = ms_since(c->t0);
	pthread_mutex_unlock(&m->lock);
}

/* The channels' figures since the last call, into the sender's. */
static void fold_channels(struct src *c)
{
	struct chan_totals t;

	chan_src_totals(c->cs, &t);
	c->rs.pages_normal += t.normal - c->ct_seen.normal;
	c->rs.pages_zero += t.zero - c->ct_seen.zero;
	c->rs.pages_skipped += t.skipped - c->ct_seen.skipped;
	c->chan_bytes = t.bytes;
	c->ct_seen = t;
}

/* Sends one round: round 0 = everything, else the pages in d.bm. With
 * data channels every round goes over them, the final one too (the
 * estimate that chose to stop assumed their bandwidth). */
static int send_round(struct src *c, uint32_t round, bool final,
		      struct stats_round *rec)
{
	uint64_t t = clock_now_ns(), b0 = out_bytes(c);
	uint64_t p0 = c->rs.pages_normal + c->rs.pages_zero;
	int ret;

	rec->round = round;
	rec->start_ms = (double)(t - c->t0) / 1e6;
	if (c->tracing && round > 0 &&
	    trace_round(&c->trace, round, t - c->t0, c->d.bm) < 0)
		c->tracing = false; /* a trace problem must not fail the migration */
	ret = send_round_marker(c, round, final);
	if (!ret && c->cs) {
		ret = chan_src_round(c->cs, round, c->err, sizeof(c->err));
		fold_channels(c);
	} else if (!ret) {
		ret = round == 0 ? ram_send_all(&c->rs, &c->d, c->err, sizeof(c->err)) :
		      ram_send_dirty(&c->rs, &c->d, c->err, sizeof(c->err));
	}
	/* A round is over when the target has applied it, not when the
	 * socket buffers took it: megabytes can sit there, more with channels,
	 * and a pause that found them still queued would wait for them
	 * (measured: 6-50 ms of downtime on fresh target memory). So the
	 * round's duration, the bandwidth estimate and the next pause all
	 * see the real rate. */
	if (!ret && !final && !c->file)
		ret = ping(c);
	if (ret)
		return ret;
	rec->duration_ms = ms_since(t);
	rec->bytes = out_bytes(c) - b0;
	rec->pages_sent = c->rs.pages_normal + c->rs.pages_zero - p0;
	if (!final)
		est_sample(&c->e, rec->bytes, clock_now_ns() - t);
	rec->bw_estimate_Bps = est_bandwidth(&c->e);
	if (round == 0) {
		rec->dirty_pages = c->d.npages;
		est_set_fixed_ms(&c->e, fixed_cost_ms(c));
		rec->expected_downtime_ms = est_expected_downtime_ms(&c->e,
			rec->pages_sent * WIRE_PAGE_BYTES);
		if (c->tracing) {
			if (trace_round(&c->trace, 0, t - c->t0, c->rs.sent_bm) < 0)
				c->tracing = false;
			free(c->rs.sent_bm);
			c->rs.sent_bm = NULL;
		}
	}
	pthread_mutex_lock(&c->m->lock);
	ret = stats_add_round(&c->m->st, rec);
	c->m->st.rounds = round + 1;
	pthread_mutex_unlock(&c->m->lock);
	return ret;
}

/* Dirty sync for round `round`: fills rec's dirty figures. */
static int sync_round(struct src *c, struct stats_round *rec, uint64_t *dirty)
{
	uint64_t t = clock_now_ns();
	int ret = ram_dirty_sync(c->vm, &c->d, c->err, sizeof(c->err));

	if (ret)
		return ret;
	*dirty = bm_count(c->d.bm, c->d.npages);
	c->sync_ms = ms_since(t);
	rec->dirty_pages = *dirty;
	rec->dirty_rate_pps = t > c->t_last_sync ?
		(double)*dirty * 1e9 / (double)(t - c->t_last_sync) : 0;
	c->t_prev_sync = c->t_last_sync;
	c->t_last_sync = t;
	est_set_fixed_ms(&c->e, fixed_cost_ms(c));
	rec->expected_downtime_ms = est_expected_downtime_ms(&c->e, *dirty * WIRE_PAGE_BYTES);
	return 0;
}

static int precopy(struct src *c, enum est_decision *why, uint32_t *next_round)
{
	struct stats_round rec = { 0 };
	uint64_t dirty = 0;
	int ret;

	set_state(c, MIG_ACTIVE);
	ret = send_round(c, 0, false, &rec);
	if (ret)
		return ret;
	publish(c, 0, 0, rec.expected_downtime_ms);
	for (uint32_t r = 1;; r++) {
		memset(&rec, 0, sizeof(rec));
		ret = sync_round(c, &rec, &dirty);
		if (ret)
			return ret;
		*why = est_decide(&c->e, r, dirty * WIRE_PAGE_BYTES, out_bytes(c),
				  (uint64_t)ms_since(c->t0),
				  rec.dirty_rate_pps * WIRE_PAGE_BYTES);
		publish(c, r, dirty, rec.expected_downtime_ms);
		if (*why != EST_CONTINUE) {
			*next_round = r;
			return 0;
		}
		ret = send_round(c, r, false, &rec);
		if (ret)
			return ret;
	}
}

static int send_state_and_end(struct src *c)
{
	uint8_t *blob = NULL, end[END_LEN];
	size_t len = 0;
	uint64_t digest = 0;
	int ret = vmstate_save(c->vm, &blob, &len, c->err, sizeof(c->err));

	if (ret)
		return ret;
	if (len > STATE_MAX_LEN) {
		snprintf(c->err, sizeof(c->err), "vmstate blob of %zu bytes is too large", len);
		free(blob);
		return -E2BIG;
	}
	ret = stream_send(&c->s, ST_STATE, blob, (uint32_t)len, c->err, sizeof(c->err));
	free(blob);
	if (ret)
		return ret;
	if (c->t->verify_ram)
		digest = ram_digest(c->vm->ram, c->vm->ram_size / VM_PAGE_SIZE);
	le_put32(end, c->t->verify_ram ? END_FLAG_DIGEST : 0);
	le_put64(end + 4, digest);
	return stream_send(&c->s, ST_END, end, END_LEN, c->err, sizeof(c->err));
}

/* Downtime starts here (design notes section 4). */
static int pause_guest(struct src *c)
{
	int ret;

	c->t_pause = clock_now_ns();
	ret = vm_pause(c->vm);
	c->paused = true;
	if (ret)
		snprintf(c->err, sizeof(c->err), "the VM is shutting down");
	return ret;
}

static int switchover(struct src *c, uint32_t round)
{
	struct stats_round rec = { 0 };
	uint64_t dirty;
	int ret;

	set_state(c, MIG_SWITCHOVER);
	ret = pause_guest(c);
	if (ret)
		return ret;
	if (!c->file) {
		/* The sync that chose to stop sent nothing: the final round's
		 * dirty rate counts from the last round that did. */
		c->t_last_sync = c->t_prev_sync;
		ret = sync_round(c, &rec, &dirty);
		if (!ret)
			ret = send_round(c, round, true, &rec);
		if (ret)
			return ret;
	}
	ret = send_state_and_end(c);
	if (ret || c->file)
		return ret;
	ret = stream_recv_expect(&c->s, ST_READY, NULL, 0, NULL, "target", c->err,
				 sizeof(c->err));
	if (ret)
		return ret;
	/* The point of no return: mig_cancel refuses from here on. */
	pthread_mutex_lock(&c->m->lock);
	if (c->m->cancel) {
		pthread_mutex_unlock(&c->m->lock);
		snprintf(c->err, sizeof(c->err), "cancelled");
		return -ECANCELED;
	}
	c->m->state = MIG_COMMITTED;
	pthread_mutex_unlock(&c->m->lock);
	ret = stream_send(&c->s, ST_COMMIT, NULL, 0, c->err, sizeof(c->err));
	c->committed = true;
	if (!ret)
		ret = stream_recv_expect(&c->s, ST_RUNNING, NULL, 0, NULL, "target", c->err,
					 sizeof(c->err));
	return ret;
}

/* Cold migration (file:PATH): the guest is paused for the whole save. */
static int save_to_file(struct src *c)
{
	struct stats_round rec = { 0 };
	int ret;

	ret = pause_guest(c);
	if (ret)
		return ret;
	set_state(c, MIG_SWITCHOVER);
	ret = send_round(c, 0, true, &rec);
	return ret ? ret : send_state_and_end(c);
}

static int connect_and_setup(struct src *c, const char *uri)
{
	struct transport_addr a; /* the data channels connect here too */
	struct transport_conn conn;
	int ret;

	ret = transport_parse(uri, false, &a, c->err, sizeof(c->err));
	if (ret)
		return ret;
	c->file = a.kind == TRANSPORT_FILE;
	ret = c->file ? transport_open_file(&a, true, &conn, c->err, sizeof(c->err)) :
	      transport_connect(&a, MIG_IO_TIMEOUT_MS, &conn, c->err, sizeof(c->err));
	if (ret)
		return ret;
	stream_attach(&c->s, &conn, c->file ? 0 : MIG_IO_TIMEOUT_MS);
	c->s.cancel_fd = c->m->cancel_efd;
	pthread_mutex_lock(&c->m->lock);
	c->m->conn = &c->s.conn;
	ret = c->m->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&c->m->lock);
	if (ret) {
		snprintf(c->err, sizeof(c->err), "cancelled");
		return ret;
	}
	ret = handshake(c);
	if (!ret && !c->file)
		ret = probe_costs(c);
	if (ret)
		return ret;
	if (c->t->dirty_trace[0]) {
		ret = trace_open(&c->trace, c->t->dirty_trace, c->vm->ram_size / VM_PAGE_SIZE,
				 VM_PAGE_SIZE);
		if (ret) {
			snprintf(c->err, sizeof(c->err), "dirty trace %.300s: %s", c->t->dirty_trace,
				 strerror(-ret));
			return ret;
		}
		c->tracing = true;
		c->rs.sent_bm = calloc(bm_words(c->vm->ram_size / VM_PAGE_SIZE), 8);
	}
	if (c->nchan) {
		struct chan_src_cfg cfg = {
			.vm = c->vm, .d = &c->d, .cancel = &c->m->cancel,
			.cancel_fd = c->m->cancel_efd, .rate = c->rs.rate,
			.sent_bm = c->rs.sent_bm, .timeout_ms = MIG_IO_TIMEOUT_MS,
			.nice = (int)c->t->nice, .live_bytes = &c->m->live_bytes,
		};

		ret = chan_src_open(&c->cs, &a, c->nchan, c->chan_token, &cfg, c->err,
				    sizeof(c->err));
		if (ret)
			return ret;
		pthread_mutex_lock(&c->m->lock);
		c->m->st.channels = c->nchan;
		pthread_mutex_unlock(&c->m->lock);
	}
	if (!c->file) {
		ret = ram_dirty_start(c->vm, &c->d, c->t->manual_protect, c->err,
				      sizeof(c->err));
		c->t_last_sync = clock_now_ns();
	} else {
		c->d.npages = c->vm->ram_size / VM_PAGE_SIZE;
	}
	return ret;
}

static void finish_stats(struct src *c, const char *result, bool converged)
{
	struct mig *m = c->m;
	char err[256];

	pthread_mutex_lock(&m->lock);
	m->st.result = result;
	m->st.converged = converged;
	m->st.total_ms = ms_since(c->t0);
	m->st.downtime_ms = c->t_pause && !strcmp(result, "completed") ? ms_since(c->t_pause) : 0;
	m->st.bytes_total = out_bytes(c);
	m->st.pages_normal = c->rs.pages_normal;
	m->st.pages_zero = c->rs.pages_zero;
	m->st.pages_skipped = c->rs.pages_skipped;
	m->st.throughput_Bps = m->st.total_ms > m->st.setup_ms ?
		(double)out_bytes(c) * 1000.0 / (m->st.total_ms - m->st.setup_ms) : 0;
	if (strcmp(result, "completed"))
		snprintf(m->st.error, sizeof(m->st.error), "%s", c->err);
	m->state = !strcmp(result, "completed") ? MIG_COMPLETED :
		   !strcmp(result, "cancelled") ? MIG_CANCELLED : MIG_FAILED;
	pthread_mutex_unlock(&m->lock);
	if (c->t->stats_json[0] &&
	    stats_write_json(&m->st, c->t->stats_json, err, sizeof(err)) < 0)
		fprintf(stderr, "minivmm: %s\n", err);
}

/* Before COMMIT: tell the target why (best effort), resume the guest. */
static void roll_back(struct src *c, bool cancelled)
{
	if (stream_is_open(&c->s) && !c->file) {
		c->s.cancel_fd = -1;
		stream_set_timeout(&c->s, 500);
		stream_send_text(&c->s, ST_ERROR, cancelled ? "migration cancelled on the source" :
				 c->err);
	}
	ram_dirty_stop(c->vm, &c->d);
	if (c->paused)
		vm_resume(c->vm);
	c->paused = false;
}

/* After COMMIT without RUNNING the guest may already run on the target:
 * resuming here could run it twice, so it stays paused, as a `stop` the
 * operator can undo with `cont` once they know the target is gone. */
static void hold_paused(struct src *c)
{
	struct vm *vm = c->vm;
	bool was_user = false;

	ram_dirty_stop(vm, &c->d);
	pthread_mutex_lock(&vm->lock);
	was_user = vm->user_paused;
	vm->user_paused = true;
	pthread_mutex_unlock(&vm->lock);
	if (was_user)
		vm_resume(vm);
}

void *mig_source_thread(void *arg)
{
	struct vm *vm = arg;
	struct src *c = calloc(1, sizeof(*c));
	struct mig *m = vm->mig;
	enum est_decision why = EST_CONVERGED;
	uint32_t round = 1;
	bool cancelled;
	int ret;

	if (!c)
		return NULL;
	c->vm = vm;
	c->m = m;
	c->t = &m->run;
	stream_reset(&c->s);
	c->t0 = m->t0_ns;
	mig_thread_nice((int)c->t->nice);
	ram_send_init(&c->rs, vm, &c->s, &m->cancel, NULL);
	c->rs.live_bytes = &m->live_bytes;
	if (c->t->max_bandwidth) {
		est_rate_init(&c->rate, c->t->max_bandwidth, clock_now_ns());
		c->rs.rate = &c->rate;
	}
	est_init(&c->e, &(struct est_config){
		.downtime_ms = c->t->downtime_ms, .max_bandwidth = c->t->max_bandwidth,
		.max_rounds = c->t->max_rounds,
		.max_bytes = (uint64_t)c->t->max_bytes_factor * vm->ram_size,
		.max_time_ms = c->t->max_time_ms });

	ret = connect_and_setup(c, m->uri);
	pthread_mutex_lock(&m->lock);
	m->st.setup_ms = ms_since(c->t0);
	pthread_mutex_unlock(&m->lock);
	if (!ret && c->file) {
		ret = save_to_file(c);
	} else if (!ret) {
		ret = precopy(c, &why, &round);
		if (!ret && why != EST_CONVERGED && c->t->cancel_on_nonconvergence) {
			snprintf(c->err, sizeof(c->err),
				 "did not converge (%s, expected downtime %.0f ms > limit %u ms); "
				 "cancelled as on-nonconvergence=cancel asks",
				 est_decision_text(why), m->expected_downtime_ms, c->t->downtime_ms);
			m->cancel = 1;
			ret = -ETIMEDOUT;
		}
		c->converged = why == EST_CONVERGED;
		if (!ret)
			ret = switchover(c, round);
	}
	if (c->tracing)
		trace_close(&c->trace);
	free(c->rs.sent_bm);
	cancelled = m->cancel && !c->committed;
	if (ret && cancelled && !strstr(c->err, "converge"))
		snprintf(c->err, sizeof(c->err), "cancelled by the user");
	if (!ret) {
		ram_dirty_stop(vm, &c->d);
		finish_stats(c, "completed", why == EST_CONVERGED);
		fprintf(stderr, "minivmm: migration to %s completed\n", m->uri);
		stats_print_summary(stderr, &m->st);
		vm_request_stop(vm, VM_EXIT_MIGRATED, 0, "migrated");
	} else if (!c->committed) {
		roll_back(c, cancelled);
		finish_stats(c, cancelled ? "cancelled" : "failed", false);
		fprintf(stderr, "minivmm: migration to %s %s: %s; the guest keeps running here\n",
			m->uri, cancelled ? "cancelled" : "failed", c->err);
	} else {
		char why2[512];

		snprintf(why2, sizeof(why2), "COMMIT sent but the target did not confirm (%.300s): "
			 "the guest may run there, so it stays paused here (`cont` resumes it)",
			 c->err);
		snprintf(c->err, sizeof(c->err), "%s", why2);
		hold_paused(c);
		finish_stats(c, "failed", false);
		fprintf(stderr, "minivmm: migration to %s: %s\n", m->uri, c->err);
	}
	pthread_mutex_lock(&m->lock);
	m->conn = NULL;
	pthread_mutex_unlock(&m->lock);
	chan_src_close(c->cs);
	stream_close(&c->s);
	free(c);
	return NULL;
}
