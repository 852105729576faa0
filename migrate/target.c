/* The target side: accept one migration, check HELLO, build the VM from
 * it, take RAM and state, check them, say READY, wait for COMMIT. Only
 * then does mig_incoming() return; mig_incoming_commit() starts the vCPUs
 * and says RUNNING. Every value from the stream is checked before use
 * (stream.c, ram_recv.c, vmstate_load), and any failure before COMMIT
 * discards the VM: the guest never runs here unless the source gave it up. */
#include "migrate/mig.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "migrate/ram/chan.h"
#include "migrate/ram/ram.h"
#include "migrate/state/vmstate.h"
#include "vmm/monitor.h"
#include "vmm/core/prealloc.h"
#include "vmm/core/vm.h"
#if __has_include("migrate/state/cpucompat.h")
#include "migrate/state/cpucompat.h"
#define HAVE_CPUCOMPAT 1
#endif

struct tgt {
	struct vm *vm;
	struct mig *m;
	struct stream *s;
	bool vm_made;
	uint8_t *state;
	size_t state_len;
	uint32_t round;
	uint64_t pages_at_round;
	struct stats_round rec;
	bool in_round;
	uint64_t t0, t_final;
	char *err;
	size_t errlen;
	struct ram_prefault *pf; /* first-touch helpers while RAM arrives */
	const struct mig_params *p;
	struct transport_listener lst; /* kept open for the data channels */
	struct chan_tgt *ct;     /* data channels, when the source asked */
	struct chan_totals ct_seen; /* channel figures already in the stats */
	uint8_t *ram;            /* --mem given: mapped before the connection */
	struct prealloc *pa;     /* --prealloc: populating ram while waiting */
};

static bool signalled(void)
{
	sigset_t set;

	/* SIGINT/SIGTERM are blocked (run.c reads them from a signalfd
	 * later), so a target stuck waiting must look for them itself. */
	return sigpending(&set) == 0 &&
	       (sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1);
}

/* The listener stays in g->lst (closed by the caller): data channels
 * connect there too. */
static int wait_connection(struct tgt *g, const struct transport_addr *a, const char *uri)
{
	struct transport_conn conn;
	int ret = transport_listen(a, &g->lst, g->err, g->errlen);

	if (ret)
		return ret;
	fprintf(stderr, "minivmm: waiting for a migration on %s\n", uri);
	for (;;) {
		ret = transport_accept(&g->lst, 200, MIG_IO_TIMEOUT_MS, &conn, g->err, g->errlen);
		if (ret != -ETIMEDOUT && ret != -EINTR)
			break;
		if (signalled()) {
			snprintf(g->err, g->errlen, "interrupted by a signal");
			return -EINTR;
		}
	}
	if (!ret)
		stream_attach(g->s, &conn, MIG_IO_TIMEOUT_MS);
	return ret;
}

static int open_snapshot(struct tgt *g, const struct transport_addr *a)
{
	struct transport_conn conn;
	int ret = transport_open_file(a, false, &conn, g->err, g->errlen);

	if (!ret)
		stream_attach(g->s, &conn, 0);
	return ret;
}

static int reject(struct tgt *g, const char *fmt, const char *what)
{
	char why[TEXT_MAX_LEN];

	snprintf(why, sizeof(why), fmt, what);
	if (!g->m->in_file)
		stream_send_text(g->s, ST_REJECT, why);
	snprintf(g->err, g->errlen, "refused the migration: %s", why);
	return -EPERM;
}

static int check_hello(struct tgt *g, const struct hello *h)
{
	char path[PATH_MAX];
	pid_t pid = 0;

	/* A live VM of that name here is a clash, unless it is the source
	 * itself (a same-host migration): HELLO carries its pid. */
	if (!g->m->in_file && monitor_default_path(h->name, path, sizeof(path)) == 0 &&
	    monitor_probe(path, &pid) == -EADDRINUSE && (pid == 0 || (uint32_t)pid != h->pid)) {
		char msg[160];

		snprintf(msg, sizeof(msg), "VM name '%s' is already running on this host (pid %d)",
			 h->name, (int)pid);
		return reject(g, "%s", msg);
	}
	if (g->p && g->p->expect_mem && h->mem_size != g->p->expect_mem) {
		char msg[160];

		snprintf(msg, sizeof(msg), "memory differs: the VM has %llu MiB, this target "
			 "was started for %llu MiB (--mem)",
			 (unsigned long long)(h->mem_size >> 20),
			 (unsigned long long)(g->p->expect_mem >> 20));
		return reject(g, "%s", msg);
	}
	if (g->p && g->p->expect_cpus && h->ncpus != (uint32_t)g->p->expect_cpus) {
		char msg[160];

		snprintf(msg, sizeof(msg), "vCPUs differ: the VM has %u, this target was "
			 "started for %d (--cpus)", h->ncpus, g->p->expect_cpus);
		return reject(g, "%s", msg);
	}
	return 0;
}

/* The populating is done or stopped once the source is here: from now on
 * the receiver and its prefault helpers need the CPUs. */
static void prealloc_end(struct tgt *g)
{
	uint64_t done;
	double ms;

	if (!g->pa)
		return;
	done = prealloc_stop(g->pa, &ms);
	g->pa = NULL;
	pthread_mutex_lock(&g->m->lock);
	g->m->st.prealloc_bytes = done;
	g->m->st.prealloc_ms = ms;
	pthread_mutex_unlock(&g->m->lock);
	fprintf(stderr, "minivmm: %llu of %llu MiB of guest RAM populated ahead, in %.0f ms\n",
		(unsigned long long)(done >> 20), (unsigned long long)(g->p->expect_mem >> 20), ms);
}

/* --mem given: RAM exists before the source does, so it can be populated
 * while nobody waits for it. */
static int premap_ram(struct tgt *g)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int ret;

	if (!g->p || !g->p->expect_mem)
		return 0;
	ret = vm_ram_map(g->p->expect_mem, &g->ram, g->err, g->errlen);
	if (ret || !g->p->prealloc)
		return ret;
	ret = prealloc_start(&g->pa, g->ram, g->p->expect_mem, ncpu > 1 ? (int)ncpu : 1,
			     g->err, g->errlen);
	if (!ret)
		fprintf(stderr, "minivmm: populating %llu MiB of guest RAM while waiting (--prealloc)\n",
			(unsigned long long)(g->p->expect_mem >> 20));
	return ret;
}

/* The source's CPU against the one this host gives the same VM. */
static int check_cpu(struct tgt *g, const struct hello *h)
{
#ifdef HAVE_CPUCOMPAT
	struct cpucompat src, here;
	char why[512];

	if (cpucompat_decode(&src, h->compat, h->compat_len, why, sizeof(why)) < 0)
		return reject(g, "bad CPU description: %s", why);
	if (cpucompat_get(g->vm, &here, why, sizeof(why)) < 0)
		return reject(g, "cannot read this host's CPU: %s", why);
	if (cpucompat_check(&src, &here, why, sizeof(why)) < 0)
		return reject(g, "incompatible CPU: %s", why);
#else
	(void)g;
	(void)h;
#endif
	return 0;
}

static int handshake(struct tgt *g)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], *buf = NULL;
	struct vm_config cfg = { 0 };
	struct hello h;
	uint32_t len;
	int ret;

	ret = stream_read_all(g->s, pre, sizeof(pre), g->err, g->errlen);
	if (!ret)
		ret = stream_preamble_decode(pre, g->err, g->errlen);
	if (ret)
		return ret;
	buf = malloc(stream_max_len(ST_HELLO));
	if (!buf)
		return -ENOMEM;
	ret = stream_recv_expect(g->s, ST_HELLO, buf, stream_max_len(ST_HELLO), &len,
				 "source", g->err, g->errlen);
	if (!ret)
		ret = stream_hello_decode(buf, len, &h, g->err, g->errlen);
	prealloc_end(g);
	if (!ret)
		ret = check_hello(g, &h);
	if (ret)
		goto out;
	snprintf(cfg.name, sizeof(cfg.name), "%s", h.name);
	cfg.mem_size = h.mem_size;
	cfg.ncpus = (int)h.ncpus;
	cfg.ram = g->ram; /* NULL, or checked above to be mem_size bytes */
	g->ram = NULL;
	ret = vm_create(g->vm, &cfg, g->err, g->errlen);
	if (ret) {
		char why[600];

		snprintf(why, sizeof(why), "%s", g->err);
		ret = reject(g, "cannot create the VM here: %s", why);
		goto out;
	}
	g->vm_made = true;
	ret = check_cpu(g, &h); /* h.compat points into buf */
	if (ret)
		goto out;
	pthread_mutex_lock(&g->m->lock);
	g->m->st.ram_bytes = h.mem_size;
	g->m->st.vcpus = h.ncpus;
	pthread_mutex_unlock(&g->m->lock);
	if (!g->m->in_file)
		ret = stream_send(g->s, ST_ACCEPT, NULL, 0, g->err, g->errlen);
out:
	free(buf);
	return ret;
}

/* Folds what the data channels received since the last call into the
 * stats; called where the channels are between rounds. */
static void fold_channels(struct tgt *g)
{
	struct chan_totals t;

	if (!g->ct)
		return;
	chan_tgt_totals(g->ct, &t);
	g->m->st.pages_normal += t.normal - g->ct_seen.normal;
	g->m->st.pages_zero += t.zero - g->ct_seen.zero;
	g->m->chan_bytes_in = t.bytes;
	g->ct_seen = t;
}

static uint64_t in_bytes(const struct tgt *g)
{
	return g->s->bytes_in + g->m->chan_bytes_in;
}

static void close_round(struct tgt *g)
{
	if (!g->in_round)
		return;
	fold_channels(g);
	g->rec.duration_ms = (double)(clock_now_ns() - g->t0) / 1e6 - g->rec.start_ms;
	g->rec.bytes = in_bytes(g) - g->rec.bytes;
	g->rec.pages_sent = g->m->st.pages_normal + g->m->st.pages_zero - g->pages_at_round;
	stats_add_round(&g->m->st, &g->rec);
	g->in_round = false;
}

static int on_round(struct tgt *g, uint32_t len)
{
	uint8_t b[8];
	int ret;

	if (len != ROUND_LEN) {
		snprintf(g->err, g->errlen, "bad ROUND: %u bytes", len);
		return -EPROTO;
	}
	ret = stream_read_all(g->s, b, 8, g->err, g->errlen);
	if (ret)
		return ret;
	/* No page of this round may land before every channel ended the
	 * previous one (chan.h). */
	if (g->ct && le_get32(b) > 0)
		ret = chan_tgt_wait(g->ct, le_get32(b) - 1, g->err, g->errlen);
	if (ret)
		return ret;
	close_round(g);
	g->round = le_get32(b);
	if (le_get32(b + 4) & ROUND_FLAG_FINAL) {
		g->t_final = clock_now_ns();
		g->m->st.converged = (le_get32(b + 4) & ROUND_FLAG_CONVERGED) != 0;
	}
	g->rec = (struct stats_round){
		.round = g->round,
		.start_ms = (double)(clock_now_ns() - g->t0) / 1e6,
		.bytes = in_bytes(g), /* start value; close_round subtracts */
	};
	g->in_round = true;
	g->pages_at_round = g->m->st.pages_normal + g->m->st.pages_zero;
	g->m->st.rounds++;
	return 0;
}

static int on_end(struct tgt *g, uint32_t len)
{
	uint8_t b[END_LEN];
	int ret;

	if (len != END_LEN) {
		snprintf(g->err, g->errlen, "bad END: %u bytes", len);
		return -EPROTO;
	}
	ret = stream_read_all(g->s, b, END_LEN, g->err, g->errlen);
	if (ret)
		return ret;
	close_round(g);
	g->m->end_ns = clock_now_ns();
	if (!g->state) {
		snprintf(g->err, g->errlen, "protocol error: END before the machine state");
		return -EPROTO;
	}
	ret = vmstate_load(g->vm, g->state, g->state_len, g->err, g->errlen);
	if (ret)
		return ret;
	if (le_get32(b) & END_FLAG_DIGEST) {
		uint64_t want = le_get64(b + 4);
		uint64_t got = ram_digest(g->vm->ram, g->vm->ram_size / VM_PAGE_SIZE);

		if (got != want) {
			snprintf(g->err, g->errlen,
				 "RAM digest mismatch: source %016llx, target %016llx",
				 (unsigned long long)want, (unsigned long long)got);
			return -EIO;
		}
		fprintf(stderr, "minivmm: RAM digest verified: %016llx\n",
			(unsigned long long)got);
	}
	return 0;
}

/* The source asks for data channels before round 0; they connect to the
 * listening socket and prove they belong to this migration with a token
 * only this connection has seen. */
static int on_channels(struct tgt *g, uint32_t len)
{
	uint8_t b[CHANNELS_LEN];
	uint64_t token = 0;
	uint32_t want;
	int ret;

	if (len != CHANNELS_LEN) {
		snprintf(g->err, g->errlen, "bad CHANNELS: %u bytes", len);
		return -EPROTO;
	}
	ret = stream_read_all(g->s, b, CHANNELS_LEN, g->err, g->errlen);
	if (ret)
		return ret;
	if (g->ct || g->in_round || g->m->in_file) {
		snprintf(g->err, g->errlen, "protocol error: CHANNELS after the rounds began");
		return -EPROTO;
	}
	want = le_get32(b);
	if (want > CHANNELS_MAX)
		want = CHANNELS_MAX;
	if (g->lst.fd < 0)
		want = 0;
	if (want && getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		snprintf(g->err, g->errlen, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	le_put32(b, want);
	le_put64(b + 4, token);
	ret = stream_send(g->s, ST_CHANNELS, b, CHANNELS_LEN, g->err, g->errlen);
	if (!ret && want)
		ret = chan_tgt_accept(&g->ct, &g->lst, want, token, g->vm, g->pf,
				      MIG_IO_TIMEOUT_MS,
				      g->p && g->p->nice >= 0 ? g->p->nice : MIG_DEFAULT_NICE,
				      g->err, g->errlen);
	if (!ret)
		g->m->st.channels = want;
	return ret;
}

static int on_state(struct tgt *g, uint32_t len)
{
	/* The final round's pages on the channels come before the state. */
	if (g->ct && g->in_round) {
		int ret = chan_tgt_wait(g->ct, g->round, g->err, g->errlen);

		if (ret)
			return ret;
	}
	if (g->state) {
		snprintf(g->err, g->errlen, "protocol error: machine state sent twice");
		return -EPROTO;
	}
	g->state = malloc(len ? len : 1);
	if (!g->state)
		return -ENOMEM;
	g->state_len = len;
	return stream_read_all(g->s, g->state, len, g->err, g->errlen);
}

/* Frames until END; returns 0 once the state is loaded and checked. */
static int receive(struct tgt *g)
{
	for (;;) {
		struct stream_hdr h;
		uint8_t tok[8];
		char text[TEXT_MAX_LEN + 1];
		int ret;

		if (signalled()) {
			snprintf(g->err, g->errlen, "interrupted by a signal");
			return -EINTR;
		}
		ret = stream_recv_hdr(g->s, &h, g->err, g->errlen);
		if (ret)
			return ret;
		switch (h.type) {
		case ST_PING:
			if (h.len != 8) {
				snprintf(g->err, g->errlen, "bad PING: %u bytes", h.len);
				return -EPROTO;
			}
			ret = stream_read_all(g->s, tok, 8, g->err, g->errlen);
			/* A PING inside a round asks for the round's pages to
			 * be in (the source's drain) */
			if (!ret && g->ct && g->in_round)
				ret = chan_tgt_wait(g->ct, g->round, g->err, g->errlen);
			if (!ret && !g->m->in_file)
				ret = stream_send(g->s, ST_PONG, tok, 8, g->err, g->errlen);
			break;
		case ST_ROUND:
			ret = on_round(g, h.len);
			break;
		case ST_PAGES:
			if (!g->in_round) {
				snprintf(g->err, g->errlen, "protocol error: pages outside a round");
				return -EPROTO;
			}
			ret = ram_recv_pages(g->s, g->vm, g->pf, h.len, &g->m->st.pages_normal,
					     &g->m->st.pages_zero, g->err, g->errlen);
			g->rec.pages_sent = g->m->st.pages_normal + g->m->st.pages_zero -
					    g->pages_at_round;
			break;
		case ST_CHANNELS:
			ret = on_channels(g, h.len);
			break;
		case ST_STATE:
			ret = on_state(g, h.len);
			break;
		case ST_END:
			return on_end(g, h.len);
		case ST_ERROR:
			ret = stream_recv_text(g->s, h.len, text, sizeof(text), g->err, g->errlen);
			if (!ret)
				snprintf(g->err, g->errlen, "the source gave up: %s", text);
			return -ECONNABORTED;
		default:
			snprintf(g->err, g->errlen, "protocol error: unexpected %s from the source",
				 stream_type_name(h.type));
			return -EPROTO;
		}
		if (ret)
			return ret;
	}
}

static void write_stats(struct mig *m, const char *result, const char *error)
{
	char err[256];

	m->st.result = result;
	if (error)
		snprintf(m->st.error, sizeof(m->st.error), "%s", error);
	m->st.bytes_total = m->in.bytes_in + m->chan_bytes_in;
	if (m->in_stats[0] && stats_write_json(&m->st, m->in_stats, err, sizeof(err)) < 0)
		fprintf(stderr, "minivmm: %s\n", err);
}

/* Two helpers measured best on the 2-core machines (docs/migration.md,
 * "Throughput"); on one CPU they would only take turns with the receiver. */
static int prefault_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n >= 2 ? 2 : 0;
}

int mig_incoming(const char *uri, const struct mig_params *p, struct vm *vm,
		 char *err, size_t errlen)
{
	struct mig *m = calloc(1, sizeof(*m));
	struct tgt g = { .vm = vm, .m = m, .err = err, .errlen = errlen, .p = p,
			 .lst = { .fd = -1 } };
	struct transport_addr a;
	int ret;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->conn = NULL;
	m->cancel_efd = -1;
	stream_reset(&m->in);
	m->st.role = "target";
	if (p && p->stats_json)
		snprintf(m->in_stats, sizeof(m->in_stats), "%s", p->stats_json);
	g.s = &m->in;
	ret = transport_parse(uri, true, &a, err, errlen);
	m->in_file = !ret && a.kind == TRANSPORT_FILE;
	if (!ret)
		ret = premap_ram(&g);
	if (!ret)
		ret = m->in_file ? open_snapshot(&g, &a) : wait_connection(&g, &a, uri);
	g.t0 = m->t0_ns = clock_now_ns();
	if (!ret)
		ret = handshake(&g);
	/* The helpers only make it faster: without them, receive anyway. On
	 * RAM populated ahead (--prealloc) they would only walk page tables. */
	if (!ret && m->st.prealloc_bytes < vm->ram_size &&
	    ram_prefault_start(&g.pf, vm, prefault_threads(), err, errlen) < 0)
		fprintf(stderr, "minivmm: %s; receiving without prefault helpers\n", err);
	if (!ret)
		ret = receive(&g);
	if (g.ct) {
		fold_channels(&g);
		chan_tgt_close(g.ct); /* before the prefault helpers they use */
		g.ct = NULL;
	}
	transport_listener_close(&g.lst);
	ram_prefault_stop(g.pf); /* before the VM (and its RAM) can go away */
	prealloc_stop(g.pa, NULL); /* still running only if no source came */
	if (g.ram) /* not adopted by a VM: nothing got that far */
		munmap(g.ram, p->expect_mem);
	/* Test hook: a target that dies mid-switchover (docs/migration.md). */
	if (!ret && getenv("MINIVMM_TEST_TARGET_DIE") &&
	    !strcmp(getenv("MINIVMM_TEST_TARGET_DIE"), "before-ready"))
		raise(SIGKILL);
	if (!ret && !m->in_file)
		ret = stream_send(&m->in, ST_READY, NULL, 0, err, errlen);
	if (!ret && !m->in_file)
		ret = stream_recv_expect(&m->in, ST_COMMIT, NULL, 0, NULL, "source", err, errlen);
	free(g.state);
	if (g.t_final)
		m->end_ns = m->end_ns ? m->end_ns : g.t_final;
	m->st.downtime_ms = g.t_final ? (double)g.t_final / 1e6 : 0; /* finished in commit */
	if (ret) {
		if (stream_is_open(&m->in) && ret != -ECONNABORTED && !m->in_file)
			stream_send_text(&m->in, ST_ERROR, err);
		m->st.total_ms = (double)(clock_now_ns() - m->t0_ns) / 1e6;
		write_stats(m, "failed", err);
		stream_close(&m->in);
		if (g.vm_made) {
			vm->mig = NULL;
			vm_destroy(vm);
		}
		stats_free(&m->st);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return ret;
	}
	vm->mig = m;
	return 0;
}

int mig_incoming_commit(struct vm *vm, char *err, size_t errlen)
{
	struct mig *m = vm->mig;
	uint64_t now;
	int ret;

	if (!m) {
		snprintf(err, errlen, "no incoming migration");
		return -EINVAL;
	}
	ret = vm_start(vm, err, errlen);
	now = clock_now_ns();
	if (ret) {
		write_stats(m, "failed", err);
		return ret;
	}
	m->st.restore_ms = (double)(now - m->end_ns) / 1e6;
	m->st.downtime_ms = m->st.downtime_ms > 0 ? (double)now / 1e6 - m->st.downtime_ms : 0;
	m->st.total_ms = (double)(now - m->t0_ns) / 1e6;
	m->state = MIG_COMPLETED;
	/* The guest runs here now whatever happens to this message. */
	if (!m->in_file && stream_send(&m->in, ST_RUNNING, NULL, 0, err, errlen) < 0)
		fprintf(stderr, "minivmm: could not tell the source the guest runs here: %s\n",
			err);
	stream_close(&m->in);
	write_stats(m, "completed", NULL);
	fprintf(stderr, "minivmm: incoming migration completed: guest running (restore %.1f ms)\n",
		m->st.restore_ms);
	return 0;
}
