/* The source side of a live migration, run in its own thread so the guest
 * keeps running during the pre-copy passes:
 *   connect, HELLO/ACCEPT, PING/PONG (round trip), probe the switchover
 *   cost (a brief pause), set the sections up, pass 0, passes 1..n until
 *   the stop rule or a backstop, pause, final pass, the sections' final
 *   parts, END, READY, COMMIT, RUNNING.
 * What is sent in a pass is the sections' business (section.h); this file
 * only sequences them. Until COMMIT is sent every failure resumes the
 * guest here: the VM is never lost. After COMMIT the target owns it. */
#include "migrate/mig.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/auth/handshake.h"
#include "migrate/faulthook.h"
#include "migrate/postcopy/pc_policy.h"
#include "migrate/section.h"
#include "migrate/throttle_ctl.h"
#include "migrate/state/cpucompat.h"
#include "migrate/state/devcfg.h"
#include "vmm/core/status.h"
#include "devices/conline.h"
#include "vmm/core/vm.h"

/* Starting the vCPU threads on the target, beyond the state load that
 * the machine-state section accounts for. */
#define RESTORE_EXTRA_MS 0.5

struct src {
	struct vm *vm;
	struct mig *m;
	const struct mig_tunables *t;
	struct stream s;
	struct est e;
	struct est_rate rate;
	struct transport_addr addr; /* the data channels connect here too */
	struct mig_sections ss;
	struct mig_src_env env;
	bool paused, committed, file, converged;
	bool policy_cancel;       /* cancelled by on-nonconvergence, not the user */
	bool target_announced;    /* READY came: the target's devices announced the guest */
	uint64_t t0, t_pause;
	uint64_t t_running; /* RUNNING received: where downtime (and pre-copy's total) ends */
	struct throttle_ctl thr;  /* on-nonconvergence throttle */
	uint64_t last_sent;       /* bytes of the last pass, for the plan */
	uint64_t disk_wait;       /* a post-copy switch waits: the disk's rest then (0: no wait) */
	/* Stalls the migration caused outside the throttle's holds (which the
	 * vCPU threads count): the probe's pause and the switchover's. */
	double stall_max_ms, stall_total_ms;
	double rtt_ms, pause_ms;
	char err[512];
};

static uint64_t out_bytes(const struct src *c)
{
	return c->s.bytes_out + c->env.extra_bytes_out;
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
	uint8_t *buf = NULL, blob[CPUCOMPAT_WIRE_SIZE];
	struct auth_key key = { 0 };
	const char *inject = getenv("MINIVMM_CPUCOMPAT_OVERRIDE");
	uint8_t dev[DEVICES_MAX_LEN];
	struct cpucompat cc;
	struct devcfg dc;
	int n, ret, ndev = 0;

	snprintf(h.name, sizeof(h.name), "%s", c->vm->cfg.name);
	ret = cpucompat_get(c->vm, &cc, c->err, sizeof(c->err));
	/* Tests fake a different CPU with this (docs/migration.md). */
	if (!ret && inject && *inject)
		ret = cpucompat_override(&cc, inject, c->err, sizeof(c->err));
	if (ret)
		return ret;
	n = cpucompat_encode(&cc, blob, sizeof(blob));
	if (n < 0)
		return n;
	h.compat = blob;
	h.compat_len = (uint32_t)n;
	if (devcfg_from_vm(c->vm, &dc)) {
		if (dc.disk && c->t->disk_copy)
			dc.disk_flags |= DEVCFG_DISK_STREAMED;
		ndev = devcfg_encode(&dc, dev, sizeof(dev));
		if (ndev < 0)
			return ndev;
		h.flags |= HELLO_FLAG_DEVICES;
	}
	buf = malloc(HELLO_FIXED_LEN + h.compat_len);
	ret = -ENOMEM;
	if (!buf)
		goto out;
	n = stream_hello_encode(&h, buf, HELLO_FIXED_LEN + h.compat_len);
	/* Keyed: the target proves the key before it sees a byte of HELLO. */
	ret = n < 0 ? n : c->file ? 0 : auth_key_resolve(c->t->key, &key, c->err, sizeof(c->err));
	if (!ret)
		ret = auth_source(&c->s, &key, c->t->integrity, c->err, sizeof(c->err));
	auth_wipe(&key, sizeof(key));
	if (!ret)
		ret = stream_send(&c->s, ST_HELLO, buf, (uint32_t)n, c->err, sizeof(c->err));
	if (!ret && ndev)
		ret = stream_send(&c->s, ST_DEVICES, dev, (uint32_t)ndev, c->err, sizeof(c->err));
out:
	free(buf);
	return ret;
}

/* PING/PONG. Inside a pass the target answers once what the pass sent is
 * applied (the end-of-pass drain: wait_ms); before pass 0 it is one round
 * trip (MIG_IO_TIMEOUT_MS). */
static int ping(struct src *c, int wait_ms)
{
	uint8_t tok[8];
	int ret;

	le_put64(tok, clock_now_ns());
	ret = stream_send(&c->s, ST_PING, tok, 8, c->err, sizeof(c->err));
	stream_set_timeout(&c->s, wait_ms);
	if (!ret)
		ret = stream_recv_expect(&c->s, ST_PONG, tok, 8, NULL, "target", c->err,
					 sizeof(c->err));
	stream_set_timeout(&c->s, MIG_IO_TIMEOUT_MS);
	return ret;
}

static int handshake(struct src *c)
{
	uint64_t t;
	int ret = send_hello(c);

	if (ret || c->file)
		return ret;
	ret = stream_recv_expect(&c->s, ST_ACCEPT, NULL, 0, NULL, "target", c->err,
				 sizeof(c->err));
	if (ret)
		return ret;
	/* One round trip, for the switchover cost estimate (READY/COMMIT and
	 * COMMIT/RUNNING are one each). */
	t = clock_now_ns();
	ret = ping(c, MIG_IO_TIMEOUT_MS);
	c->rtt_ms = clock_ms_since(t);
	c->env.rtt_ms = c->rtt_ms;
	return ret;
}

/* A pause of every vCPU, from the pause request to the resume (or the
 * target's RUNNING): guest_stall_total_ms counts it once per vCPU. */
static void note_stall(struct src *c, double ms)
{
	if (ms > c->stall_max_ms)
		c->stall_max_ms = ms;
	c->stall_total_ms += ms * c->vm->ncpus;
}

/* Measures what the switchover costs besides the pending bytes: pausing
 * the vCPUs (the guest stalls for that once, here) and whatever each
 * section's final part costs (save_probe). */
static void pause_failed(struct src *c, int ret)
{
	if (ret == -ETIMEDOUT)
		snprintf(c->err, sizeof(c->err), "a vCPU did not stop within %d ms (inside one "
			 "long instruction?)", c->vm->pause_timeout_ms > 0 ? c->vm->pause_timeout_ms :
			 VM_PAUSE_TIMEOUT_MS);
	else
		snprintf(c->err, sizeof(c->err), "the VM is shutting down");
}

static int probe_costs(struct src *c)
{
	uint64_t t = clock_now_ns(), t1;
	int ret = vm_pause(c->vm);

	if (ret) {
		pause_failed(c, ret);
		vm_resume(c->vm);
		return ret;
	}
	t1 = clock_now_ns();
	for (int i = 0; i < c->ss.n && !ret; i++)
		if (c->ss.s[i].ops->save_probe)
			ret = c->ss.s[i].ops->save_probe(c->ss.s[i].state, &c->env);
	vm_resume(c->vm);
	c->pause_ms = (double)(t1 - t) / 1e6;
	note_stall(c, clock_ms_since(t));
	return ret;
}

static double fixed_cost_ms(struct src *c)
{
	double ms = c->pause_ms + RESTORE_EXTRA_MS + 2 * c->rtt_ms;

	for (int i = 0; i < c->ss.n; i++)
		if (c->ss.s[i].ops->save_cost_ms)
			ms += c->ss.s[i].ops->save_cost_ms(c->ss.s[i].state, &c->env);
	return ms;
}

static void publish(struct src *c, uint32_t round, double expected)
{
	struct mig *m = c->m;

	pthread_mutex_lock(&m->lock);
	m->round = round;
	m->expected_downtime_ms = expected;
	m->bw_Bps = est_bandwidth(&c->e);
	m->st.bytes_total = out_bytes(c);
	m->st.total_ms = clock_ms_since(c->t0);
	pthread_mutex_unlock(&m->lock);
}

/* One pass over every section: round 0 = everything, later rounds what
 * the last sync found. A pass is over when the target has applied it, not
 * when the socket buffers took it: megabytes can sit there, and a pause
 * that found them still queued would wait for them. So the pass's
 * duration, the bandwidth estimate and the next pause all see the real
 * rate. */
static int pass(struct src *c, uint32_t round, bool final, struct stats_round *rec)
{
	uint64_t t = clock_now_ns(), b0 = out_bytes(c);
	struct mig_pass p = { .round = round, .final = final, .rec = rec };
	int ret = 0, tr;

	if (!final)
		mig_fault_delay_round(round);
	if (round == 0 && !final)
		throttle_ctl_arm(&c->thr, &p, rec);
	rec->round = round;
	rec->start_ms = (double)(t - c->t0) / 1e6;
	c->env.converged = c->converged;
	for (int i = 0; i < c->ss.n && !ret; i++)
		if (c->ss.s[i].ops->save_iterate)
			ret = c->ss.s[i].ops->save_iterate(c->ss.s[i].state, &c->env, &p);
	if (round == 0 && !final && (tr = throttle_ctl_disarm(&c->thr)) != 0 && !ret) {
		snprintf(c->err, sizeof(c->err), "%s", c->thr.err);
		ret = tr;
	}
	if (!ret && !final && !c->file)
		ret = ping(c, MIG_DRAIN_TIMEOUT_MS);
	if (ret)
		return ret;
	rec->duration_ms = clock_ms_since(t);
	rec->bytes = out_bytes(c) - b0;
	c->last_sent = rec->bytes;
	if (!final)
		est_sample(&c->e, rec->bytes, clock_now_ns() - t);
	rec->bw_estimate_Bps = est_bandwidth(&c->e);
	if (round == 0) {
		est_set_fixed_ms(&c->e, fixed_cost_ms(c));
		rec->expected_downtime_ms = est_expected_downtime_ms(&c->e, p.resend_bytes);
	}
	pthread_mutex_lock(&c->m->lock);
	ret = stats_add_round(&c->m->st, rec);
	c->m->st.rounds = round + 1;
	pthread_mutex_unlock(&c->m->lock);
	return ret;
}

/* Post-copy defers RAM only: what the other sections (the streamed disk)
 * still hold goes in the pause. While sending that would take longer than
 * the downtime limit and it shrinks round by round, the switch waits and
 * pre-copy goes on (a RAM pass the switch request stopped sends nothing);
 * a disk rest that stops shrinking, or a backstop, switches all the same. */
static bool disk_first(struct src *c, enum est_decision why, const struct mig_pending *pend)
{
	uint64_t left = pend->precopy_bytes, last = c->disk_wait;
	/* the transfer alone: the pause's fixed costs are there either way */
	double ms = est_expected_downtime_ms(&c->e, left) - est_expected_downtime_ms(&c->e, 0);

	if (why != EST_CONTINUE || !left || ms <= c->t->downtime_ms || (last && left >= last)) {
		if (last && left)
			fprintf(stderr, "minivmm: post-copy switches with the disk's %llu KiB "
				"still to send in the pause\n", (unsigned long long)(left >> 10));
		c->disk_wait = 0;
		return false;
	}
	if (!last)
		fprintf(stderr, "minivmm: post-copy waits for the disk: %llu KiB to send first "
			"(%.0f ms at the current rate)\n", (unsigned long long)(left >> 10), ms);
	c->disk_wait = left;
	return true;
}

/* What every section still has to send, synced now; fills rec's dirty
 * figures and the expected downtime. */
static int pending(struct src *c, uint32_t round, bool final, struct stats_round *rec,
		   struct mig_pending *out)
{
	struct mig_pass p = { .round = round, .final = final, .rec = rec };
	int ret = 0;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < c->ss.n && !ret; i++) {
		uint64_t before = out->bytes;

		if (c->ss.s[i].ops->save_pending)
			ret = c->ss.s[i].ops->save_pending(c->ss.s[i].state, &c->env, &p, out);
		if (!c->ss.s[i].ops->save_postcopy)
			out->precopy_bytes += out->bytes - before;
	}
	if (ret)
		return ret;
	est_set_fixed_ms(&c->e, fixed_cost_ms(c));
	rec->expected_downtime_ms = est_expected_downtime_ms(&c->e, out->bytes);
	return 0;
}

static int precopy(struct src *c, enum est_decision *why, uint32_t *next_round)
{
	struct stats_round rec = { 0 };
	struct mig_pending pend = { 0 };
	int ret;

	set_state(c, MIG_ACTIVE);
	ret = pass(c, 0, false, &rec);
	if (ret)
		return ret;
	publish(c, 0, rec.expected_downtime_ms);
	for (uint32_t r = 1;; r++) {
		/* What the sync before this one left (after round 0: what
		 * round 0 sent), for the post-copy policy. */
		uint64_t before = r == 1 ? c->last_sent : pend.bytes;

		memset(&rec, 0, sizeof(rec));
		ret = pending(c, r, false, &rec, &pend);
		if (ret)
			return ret;
		*why = est_decide(&c->e, r, pend.bytes, out_bytes(c),
				  (uint64_t)clock_ms_since(c->t0), pend.rate_Bps);
		publish(c, r, rec.expected_downtime_ms);
		if (pc_policy_due(c->t, c->m->start_postcopy != 0, *why, r, pend.bytes, before) &&
		    !disk_first(c, *why, &pend)) {
			c->env.postcopy = true;
			*next_round = r;
			return 0;
		}
		if (*why != EST_CONTINUE) {
			*next_round = r;
			return 0;
		}
		/* After each sync the plan compares what the round dirtied
		 * with what the round before sent; the share holds for the
		 * pass that follows. */
		/* Waiting for the disk, a stopped RAM pass sends nothing: the
		 * plan would read that as a guest outrunning the link. */
		if (!c->disk_wait || !c->m->start_postcopy)
			ret = throttle_ctl_round(&c->thr, &rec, c->last_sent, c->err,
						 sizeof(c->err));
		if (!ret)
			ret = pass(c, r, false, &rec);
		if (ret)
			return ret;
	}
}

/* The sections' final parts, then END. */
static int complete(struct src *c)
{
	struct mig_end end = { 0 };
	uint8_t b[END_LEN];
	int ret = 0;

	for (int i = 0; i < c->ss.n && !ret; i++)
		if (c->ss.s[i].ops->save_complete)
			ret = c->ss.s[i].ops->save_complete(c->ss.s[i].state, &c->env, &end);
	if (ret)
		return ret;
	le_put32(b, end.flags);
	le_put64(b + 4, end.digest);
	return stream_send(&c->s, ST_END, b, END_LEN, c->err, sizeof(c->err));
}

/* Downtime starts here (docs/stats-json.md, `downtime_ms`). */
static int pause_guest(struct src *c)
{
	int ret;

	c->t_pause = clock_now_ns();
	ret = vm_pause(c->vm);
	c->paused = true; /* counted either way: roll_back resumes */
	if (ret)
		pause_failed(c, ret);
	return ret;
}

/* Just before COMMIT: the target owes nothing between READY and COMMIT,
 * so a connection it has hung up (killed, crashed) or spoken on (ERROR)
 * means it cannot have taken the guest, and rolling back is safe. A
 * target lost without a word (a cut link) is only found after COMMIT,
 * where the guest must stay paused (docs/migration.md). */
static int target_still_there(struct src *c)
{
	struct pollfd p = { .fd = c->s.conn.fd, .events = POLLIN | POLLRDHUP };
	int ret;

	if (poll(&p, 1, 0) <= 0)
		return 0;
	ret = stream_recv_expect(&c->s, ST_COMMIT, NULL, 0, NULL, "target", c->err,
				 sizeof(c->err));
	if (!ret) {
		snprintf(c->err, sizeof(c->err), "protocol error: the target sent COMMIT");
		ret = -EPROTO;
	}
	return ret;
}

/* The pause, the final pass, the handover. A snapshot (file:) is one
 * pass of everything in the pause, and has no one to hand over to. */
static int switchover(struct src *c, uint32_t round)
{
	struct stats_round rec = { 0 };
	struct mig_pending pend;
	int ret;

	set_state(c, MIG_SWITCHOVER);
	throttle_ctl_end(&c->thr);
	for (int i = 0; c->env.postcopy && i < c->ss.n; i++)
		if (c->ss.s[i].ops->save_before_switch &&
		    (ret = c->ss.s[i].ops->save_before_switch(c->ss.s[i].state, &c->env)) != 0)
			return ret;
	ret = pause_guest(c);
	if (!ret)
		mig_fault_delay("SWITCHOVER");
	if (!ret && c->file)
		ret = pass(c, 0, true, &rec);
	else if (!ret && !(ret = pending(c, round, true, &rec, &pend)))
		ret = pass(c, round, true, &rec);
	if (!ret)
		ret = complete(c);
	if (ret || c->file)
		return ret;
	ret = stream_recv_expect(&c->s, ST_READY, NULL, 0, NULL, "target", c->err,
				 sizeof(c->err));
	if (ret)
		return ret;
	/* The target speaks for the guest from READY on (its devices
	 * announced it): a rollback now must take the network back. */
	c->target_announced = true;
	mig_fault_delay("READY");
	for (int i = 0; i < c->ss.n && !ret; i++)
		if (c->ss.s[i].ops->save_late)
			ret = c->ss.s[i].ops->save_late(c->ss.s[i].state, &c->env);
	if (!ret)
		ret = target_still_there(c);
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
	if (!ret)
		c->t_running = clock_now_ns();
	return ret;
}

static int connect_and_setup(struct src *c, const char *uri)
{
	struct transport_conn conn;
	int ret;

	ret = transport_parse(uri, false, &c->addr, c->err, sizeof(c->err));
	if (ret)
		return ret;
	c->file = c->addr.kind == TRANSPORT_FILE;
	ret = c->file ? transport_open_file(&c->addr, true, &conn, c->err, sizeof(c->err)) :
	      transport_connect(&c->addr, MIG_IO_TIMEOUT_MS, &conn, c->err, sizeof(c->err));
	if (ret)
		return ret;
	stream_attach(&c->s, &conn, c->file ? 0 : MIG_IO_TIMEOUT_MS);
	c->s.cancel_fd = c->m->cancel_efd;
	c->env.file = c->file;
	pthread_mutex_lock(&c->m->lock);
	c->m->conn = &c->s.conn;
	ret = c->m->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&c->m->lock);
	if (ret) {
		snprintf(c->err, sizeof(c->err), "cancelled");
		return ret;
	}
	mig_fault_delay("HANDSHAKE");
	ret = handshake(c);
	if (!ret && !c->file)
		ret = probe_costs(c);
	for (int i = 0; i < c->ss.n && !ret; i++)
		if (c->ss.s[i].ops->save_setup)
			ret = c->ss.s[i].ops->save_setup(c->ss.s[i].state, &c->env);
	return ret;
}

static void finish_stats(struct src *c, enum stats_result result, bool converged)
{
	struct mig *m = c->m;
	uint64_t end;
	char err[256];

	pthread_mutex_lock(&m->lock);
	m->st.result = result;
	m->st.converged = converged;
	/* Not at this call: turning dirty logging off and closing the
	 * channels come after RUNNING and grow with RAM, but the guest
	 * already runs on the target by then. */
	/* Post-copy ends when every page is there (now), and its guest ran
	 * on the target from RUNNING. */
	end = c->t_running && result == STATS_COMPLETED && !m->st.postcopy ? c->t_running :
	      clock_now_ns();
	m->st.total_ms = (double)(end - c->t0) / 1e6;
	m->st.downtime_ms = c->t_pause && result == STATS_COMPLETED ?
		(double)((c->t_running ? c->t_running : end) - c->t_pause) / 1e6 : 0;
	if (m->st.downtime_ms > 0)
		note_stall(c, m->st.downtime_ms);
	{
		double hmax = (double)__atomic_load_n(&c->vm->hold_max_ns, __ATOMIC_RELAXED) / 1e6;

		m->st.guest_stall_max_ms = c->stall_max_ms > hmax ? c->stall_max_ms : hmax;
		m->st.throttle_hold_max_ms = hmax;
		m->st.guest_stall_total_ms = c->stall_total_ms +
			(double)__atomic_load_n(&c->vm->hold_total_ns, __ATOMIC_RELAXED) / 1e6;
	}
	if (c->vm->console) {
		conline_gap_stop(c->vm->console);
		m->st.guest_console_gap_ms = conline_gap_ms(c->vm->console);
	}
	m->st.bytes_total = out_bytes(c);
	m->st.dirty_ring_entries = c->vm->dring_entries;
	m->st.dirty_ring_full_exits = __atomic_load_n(&c->vm->dring_full_exits, __ATOMIC_RELAXED);
	m->st.dirty_ring_lost = __atomic_load_n(&c->vm->dring_lost, __ATOMIC_ACQUIRE);
	m->st.dirty_ring_resyncs = __atomic_load_n(&c->vm->dring_resyncs, __ATOMIC_RELAXED);
	m->st.dirty_ring_loss = (int)__atomic_load_n(&c->vm->dring_loss, __ATOMIC_RELAXED);
	m->st.dirty_ring_reset_errors = __atomic_load_n(&c->vm->dring_reset_errors,
							__ATOMIC_RELAXED);
	m->st.dirty_ring_reset_errno = __atomic_load_n(&c->vm->dring_reset_errno, __ATOMIC_RELAXED);
	if (m->st.dirty_ring_lost)
		fprintf(stderr, "minivmm: dirty rings not trusted (%s%s%s): from then on every "
			"sync resent every populated page\n",
			dring_loss_name((enum dring_loss)m->st.dirty_ring_loss),
			m->st.dirty_ring_reset_errno ? ", KVM_RESET_DIRTY_RINGS: " : "",
			m->st.dirty_ring_reset_errno ? strerror(m->st.dirty_ring_reset_errno) : "");
	m->st.throughput_Bps = m->st.total_ms > m->st.setup_ms ?
		(double)out_bytes(c) * 1000.0 / (m->st.total_ms - m->st.setup_ms) : 0;
	if (result != STATS_COMPLETED)
		snprintf(m->st.error, sizeof(m->st.error), "%s", c->err);
	m->state = result == STATS_COMPLETED ? MIG_COMPLETED :
		   result == STATS_CANCELLED ? MIG_CANCELLED : MIG_FAILED;
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
	if (c->paused) {
		vm_resume(c->vm);
		note_stall(c, clock_ms_since(c->t_pause));
	}
	c->paused = false;
	if (c->target_announced)
		device_list_announce(&c->vm->devices);
}

/* After COMMIT without RUNNING the guest may already run on the target:
 * resuming here could run it twice, so it stays paused, as a `stop` the
 * operator can undo with `cont` once they know the target is gone. */
static void hold_paused(struct src *c)
{
	struct vm *vm = c->vm;
	bool was_user = false;

	pthread_mutex_lock(&vm->lock);
	was_user = vm->user_paused;
	vm->user_paused = true;
	pthread_mutex_unlock(&vm->lock);
	if (was_user)
		vm_resume(vm);
	note_stall(c, clock_ms_since(c->t_pause)); /* and on, until `cont` */
}

static void src_init(struct src *c, struct vm *vm)
{
	struct mig *m = vm->mig;

	c->vm = vm;
	c->m = m;
	c->t = &m->run;
	stream_reset(&c->s);
	c->t0 = m->t0_ns;
	if (c->t->max_bandwidth)
		est_rate_init(&c->rate, c->t->max_bandwidth, clock_now_ns());
	throttle_ctl_init(&c->thr, vm, m, c->t);
	vm_hold_reset_stats(vm);
	if (vm->console)
		conline_gap_start(vm->console, false);
	est_init(&c->e, &(struct est_config){
		.downtime_ms = c->t->downtime_ms, .max_bandwidth = c->t->max_bandwidth,
		.max_rounds = c->t->max_rounds,
		.max_bytes = (uint64_t)c->t->max_bytes_factor * vm->ram_size,
		.max_time_ms = c->t->max_time_s * 1000 });
	c->env = (struct mig_src_env){
		.vm = vm, .m = m, .t = c->t, .s = &c->s, .addr = &c->addr, .e = &c->e,
		.rate = c->t->max_bandwidth ? &c->rate : NULL, .t0 = c->t0,
		.err = c->err, .errlen = sizeof(c->err),
	};
}

/* Runs the migration to its end: 0 when the target runs the guest. */
static int migrate(struct src *c, enum est_decision *why)
{
	uint32_t round = 1;
	int ret = connect_and_setup(c, c->m->uri);

	pthread_mutex_lock(&c->m->lock);
	c->m->st.setup_ms = clock_ms_since(c->t0);
	pthread_mutex_unlock(&c->m->lock);
	if (!ret && !c->file)
		ret = precopy(c, why, &round);
	if (!ret && *why != EST_CONVERGED && c->t->nonconvergence == MIG_NONCONV_CANCEL) {
		snprintf(c->err, sizeof(c->err),
			 "did not converge (%s, expected downtime %.0f ms > limit %u ms); "
			 "cancelled as on-nonconvergence=cancel asks",
			 est_decision_text(*why), c->m->expected_downtime_ms, c->t->downtime_ms);
		c->m->cancel = 1;
		c->policy_cancel = true;
		ret = -ETIMEDOUT;
	}
	c->converged = *why == EST_CONVERGED && !c->env.postcopy;
	if (!ret)
		ret = switchover(c, round);
	if (!ret && c->env.postcopy) {
		/* The target runs the guest: the pause here ended for it. */
		c->t_running = clock_now_ns();
		set_state(c, MIG_POSTCOPY);
		for (int i = 0; i < c->ss.n && !ret; i++)
			if (c->ss.s[i].ops->save_postcopy)
				ret = c->ss.s[i].ops->save_postcopy(c->ss.s[i].state, &c->env);
	}
	return ret;
}

void *mig_source_thread(void *arg)
{
	struct vm *vm = arg;
	struct src *c = calloc(1, sizeof(*c));
	enum est_decision why = EST_CONVERGED;
	struct mig *m = vm->mig;
	bool cancelled;
	int ret;

	if (!c)
		return NULL;
	src_init(c, vm);
	mig_thread_nice((int)c->t->nice);
	ret = mig_sections_create(&c->ss, c->err, sizeof(c->err));
	if (!ret)
		ret = migrate(c, &why);
	throttle_ctl_end(&c->thr);
	/* Tracking off and connections closed before the guest gets its
	 * speed back: dirty logging slows every write it makes. */
	for (int i = 0; i < c->ss.n; i++)
		if (c->ss.s[i].ops->save_cleanup)
			c->ss.s[i].ops->save_cleanup(c->ss.s[i].state, &c->env, !ret);
	cancelled = m->cancel && !c->committed;
	if (ret && cancelled && !c->policy_cancel)
		snprintf(c->err, sizeof(c->err), "cancelled by the user");
	if (!ret) {
		finish_stats(c, STATS_COMPLETED, why == EST_CONVERGED);
		fprintf(stderr, "minivmm: migration to %s completed\n", m->uri);
		stats_print_summary(stderr, &m->st);
		vm_request_stop(vm, VM_EXIT_MIGRATED, VMM_STATUS_OK, "migrated");
	} else if (!c->committed) {
		roll_back(c, cancelled);
		finish_stats(c, cancelled ? STATS_CANCELLED : STATS_FAILED, false);
		fprintf(stderr, "minivmm: migration to %s %s: %s; the guest keeps running here\n",
			m->uri, cancelled ? "cancelled" : "failed", c->err);
	} else {
		char why2[512];

		if (c->t_running) /* post-copy: the target ran the guest */
			snprintf(why2, sizeof(why2), "post-copy did not complete (%.300s): the guest "
				 "ran on the target, so it stays paused here", c->err);
		else
			snprintf(why2, sizeof(why2), "COMMIT sent but the target did not confirm "
				 "(%.300s): the guest may run there, so it stays paused here (`cont` "
				 "resumes it)", c->err);
		snprintf(c->err, sizeof(c->err), "%s", why2);
		hold_paused(c);
		finish_stats(c, STATS_FAILED, false);
		fprintf(stderr, "minivmm: migration to %s: %s\n", m->uri, c->err);
	}
	mig_sections_destroy(&c->ss);
	pthread_mutex_lock(&m->lock);
	m->conn = NULL;
	pthread_mutex_unlock(&m->lock);
	stream_close(&c->s);
	throttle_ctl_fini(&c->thr);
	free(c);
	return NULL;
}
