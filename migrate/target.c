/* The target side: accept one migration, check HELLO, build the VM from
 * it, hand every frame to the section that loads it (section.h), check
 * and load on END, say READY, wait for COMMIT. Only then does
 * mig_incoming() return; mig_incoming_commit() starts the vCPUs and says
 * RUNNING. Every value from the stream is checked before use, and any
 * failure before COMMIT discards the VM: the guest never runs here unless
 * the source gave it up. */
#include "migrate/mig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/auth/handshake.h"
#include "migrate/faulthook.h"
#include "migrate/hostlimits.h"
#include "migrate/postcopy/pc_target.h"
#include "migrate/section.h"
#include "migrate/state/cpucompat.h"
#include "migrate/state/devcfg.h"
#include "vmm/core/prealloc.h"
#include "devices/conline.h"
#include "vmm/core/vm.h"

struct tgt {
	struct vm *vm;
	struct mig *m;
	struct stream *s;
	bool vm_made;
	bool shell;       /* g->vm prepared (vm_prepare) for --mem, not yet made */
	struct mig_sections ss;
	struct mig_tgt_env env;
	char *err;
	size_t errlen;
	const struct mig_params *p;
	struct transport_listener lst; /* kept open for the data channels */
	uint8_t *ram;            /* --mem given: mapped before the connection */
	struct prealloc *pa;     /* --prealloc: populating ram while waiting */
	int sigfd;               /* SIGINT/SIGTERM pending: polled, never read */
	const char *uri;         /* the --incoming address */
	bool peer_local;         /* the connection comes from this host */
	struct auth_key key;     /* --migrate-key or the default one; unset: keyless */
	char peer[96];           /* for messages */
	unsigned pings;          /* PINGs answered: the first is the handshake's */
};

/* The handshake as a whole (preamble to ACCEPT): a peer that trickles
 * bytes cannot hold a waiting target longer than this. */
#define MIG_HANDSHAKE_MS 10000

static bool signalled(void)
{
	sigset_t set;

	/* SIGINT/SIGTERM are blocked (the run loop reads them from a
	 * signalfd later), so a target stuck waiting must look for them. */
	return sigpending(&set) == 0 &&
	       (sigismember(&set, SIGINT) == 1 || sigismember(&set, SIGTERM) == 1);
}

/* Who connected, for the refusal line, and whether from this host (the
 * same-host name check; a unix socket always is). */
static void describe_peer(struct tgt *g, int fd)
{
	struct sockaddr_storage pa, la;
	socklen_t pl = sizeof(pa), ll = sizeof(la);
	char host[64] = "?";
	unsigned port = 0;

	g->peer_local = false;
	snprintf(g->peer, sizeof(g->peer), "a local process");
	if (getpeername(fd, (struct sockaddr *)&pa, &pl) < 0 ||
	    getsockname(fd, (struct sockaddr *)&la, &ll) < 0)
		return;
	if (pa.ss_family == AF_UNIX) {
		g->peer_local = true;
		return;
	}
	if (pa.ss_family == AF_INET) {
		const struct sockaddr_in *p = (void *)&pa, *l = (void *)&la;

		inet_ntop(AF_INET, &p->sin_addr, host, sizeof(host));
		port = ntohs(p->sin_port);
		g->peer_local = p->sin_addr.s_addr == l->sin_addr.s_addr ||
				(ntohl(p->sin_addr.s_addr) >> 24) == 127;
	} else if (pa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *p = (void *)&pa, *l = (void *)&la;

		inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof(host));
		port = ntohs(p->sin6_port);
		g->peer_local = !memcmp(&p->sin6_addr, &l->sin6_addr, sizeof(p->sin6_addr)) ||
				IN6_IS_ADDR_LOOPBACK(&p->sin6_addr);
	}
	snprintf(g->peer, sizeof(g->peer), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* The next connection on g->lst (kept open by the caller: data channels
 * connect there too), its stream bounded by the handshake deadline,
 * per-frame deadlines and a pending signal. */
static int wait_connection(struct tgt *g)
{
	struct transport_conn conn;
	int ret;

	for (;;) {
		ret = transport_accept(&g->lst, 200, MIG_IO_TIMEOUT_MS, &conn, g->err, g->errlen);
		if (ret != -ETIMEDOUT && ret != -EINTR)
			break;
		if (signalled()) {
			snprintf(g->err, g->errlen, "interrupted by a signal");
			return -EINTR;
		}
	}
	if (ret)
		return ret;
	describe_peer(g, conn.fd);
	stream_attach(g->s, &conn, MIG_IO_TIMEOUT_MS);
	g->s->intr_fd = g->sigfd;
	stream_set_frame_ms(g->s, MIG_IO_TIMEOUT_MS);
	g->s->deadline_ns = clock_now_ns() + (uint64_t)MIG_HANDSHAKE_MS * 1000000u;
	return 0;
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
	char why[256];

	/* HELLO's pid proves nothing: the front end asks the local VM of
	 * that name whether it migrates to us. A snapshot has no source,
	 * so it never takes a live VM's name. */
	if (g->p && g->p->name_check &&
	    g->p->name_check(h->name, g->m->in_file ? NULL : g->uri, g->peer_local, why,
			     sizeof(why)) < 0)
		return reject(g, "%s", why);
	/* Without --mem/--cpus the host bounds what a peer may ask for. */
	if (g->p && !g->p->expect_mem) {
		uint64_t max = hostlimits_max_mem();

		if (max && h->mem_size > max) {
			char msg[200];

			snprintf(msg, sizeof(msg), "memory: the VM has %llu MiB, more than this "
				 "host has available (%llu MiB; --mem sets the size)",
				 (unsigned long long)(h->mem_size >> 20),
				 (unsigned long long)(max >> 20));
			return reject(g, "%s", msg);
		}
	}
	if (g->p && !g->p->expect_cpus && h->ncpus > (uint32_t)hostlimits_max_cpus()) {
		char msg[160];

		snprintf(msg, sizeof(msg), "vCPUs: the VM has %u, more than this host's %d "
			 "online CPUs (--cpus sets the count)", h->ncpus, hostlimits_max_cpus());
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

/* --mem given: RAM and the KVM VM with its memory slots exist before the
 * source does (what they cost grows with RAM: KVM's per-page arrays), and
 * RAM can be populated while nobody waits for it. */
static int premap_ram(struct tgt *g)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct vm_config cfg = { 0 };
	uint8_t *ram;
	int ret;

	if (!g->p || !g->p->expect_mem)
		return 0;
	ret = vm_ram_map(g->p->expect_mem, &g->ram, g->err, g->errlen);
	if (ret)
		return ret;
	ram = g->ram;
	cfg.mem_size = g->p->expect_mem;
	cfg.ram = g->ram;
	g->ram = NULL; /* the shell owns it, also when vm_prepare fails */
	ret = vm_prepare(g->vm, &cfg, g->err, g->errlen);
	if (ret)
		return ret;
	g->shell = true;
	if (!g->p->prealloc)
		return 0;
	ret = prealloc_start(&g->pa, ram, g->p->expect_mem, ncpu > 1 ? (int)ncpu : 1,
			     g->err, g->errlen);
	if (!ret)
		fprintf(stderr, "minivmm: populating %llu MiB of guest RAM while waiting (--prealloc)\n",
			(unsigned long long)(g->p->expect_mem >> 20));
	return ret;
}

/* The source's CPU against the one this host gives the same VM. */
static int check_cpu(struct tgt *g, const struct hello *h)
{
	struct cpucompat src, here;
	char why[512];

	if (cpucompat_decode(&src, h->compat, h->compat_len, why, sizeof(why)) < 0)
		return reject(g, "bad CPU description: %s", why);
	if (cpucompat_get(g->vm, &here, why, sizeof(why)) < 0)
		return reject(g, "cannot read this host's CPU: %s", why);
	if (cpucompat_check(&src, &here, why, sizeof(why)) < 0)
		return reject(g, "incompatible CPU: %s", why);
	return 0;
}

/* The devices the VM needs of this host (DEVICES, after HELLO), checked
 * before anything is built: a missing bridge refuses here. */
static int take_devices(struct tgt *g, const struct hello *h, struct vm_config *cfg)
{
	uint8_t buf[DEVICES_MAX_LEN];
	struct devcfg d = { 0 };
	char why[1024];
	uint32_t len;
	int ret = 0;

	if (h->flags & HELLO_FLAG_DEVICES) {
		ret = stream_recv_expect(g->s, ST_DEVICES, buf, sizeof(buf), &len, "source", g->err,
					 g->errlen);
		if (!ret && devcfg_decode(buf, len, &d, why, sizeof(why)) < 0)
			return reject(g, "%s", why);
	}
	if (!ret && devcfg_accept(&d, g->p ? &g->p->net : NULL, &cfg->net, why, sizeof(why)) < 0)
		return reject(g, "%s", why);
	if (!ret && devcfg_accept_disk(&d, g->p ? &g->p->disk : NULL, &cfg->disk, why,
				       sizeof(why)) < 0)
		return reject(g, "%s", why);
	return ret;
}

/* MIG_IDLE_TIMEOUT_MS, or shorter for a test (MINIVMM_TEST_IDLE_MS,
 * docs/migration.md "Test hooks"): so that a test's pass outlasts it. */
static int idle_ms(void)
{
	const char *v = getenv("MINIVMM_TEST_IDLE_MS");
	long n = v ? strtol(v, NULL, 10) : 0;

	return n > 0 && n < MIG_IDLE_TIMEOUT_MS ? (int)n : MIG_IDLE_TIMEOUT_MS;
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
	if (!ret && !g->m->in_file) /* before HELLO: a stranger learns and costs nothing */
		ret = auth_target(g->s, pre, &g->key, g->err, g->errlen);
	if (ret)
		return ret;
	if (g->key.set && !g->m->in_file)
		fprintf(stderr, "minivmm: %s proved the migration key; integrity %s\n", g->peer,
			stream_mac_integrity(g->s) ? "on" : "off (page frames not checked)");
	buf = malloc(stream_max_len(ST_HELLO));
	if (!buf)
		return -ENOMEM;
	ret = stream_recv_expect(g->s, ST_HELLO, buf, stream_max_len(ST_HELLO), &len,
				 "source", g->err, g->errlen);
	if (!ret)
		ret = stream_hello_decode(buf, len, &h, g->err, g->errlen);
	if (!ret) /* a source, not a stray connection: RAM is its now */
		prealloc_end(g);
	if (!ret)
		ret = check_hello(g, &h);
	if (!ret)
		ret = take_devices(g, &h, &cfg);
	if (ret)
		goto out;
	snprintf(cfg.name, sizeof(cfg.name), "%s", h.name);
	cfg.mem_size = h.mem_size;
	cfg.ncpus = (int)h.ncpus;
	cfg.dirty_ring = g->p ? g->p->dirty_ring : 0;
	cfg.ram = g->ram; /* NULL, or checked above to be mem_size bytes */
	g->ram = NULL;
	ret = g->shell ? vm_finish(g->vm, &cfg, g->err, g->errlen) :
	      vm_create(g->vm, &cfg, g->err, g->errlen);
	g->shell = false; /* made, or destroyed by the failure */
	if (ret) {
		char why[600];

		snprintf(why, sizeof(why), "%s", g->err);
		ret = reject(g, "cannot create the VM here: %s", why);
		goto out;
	}
	g->vm_made = true;
	/* No back-end touches the guest before it runs here (the RX frames
	 * that arrive meanwhile wait, in order, behind those the source
	 * hands over). */
	device_list_quiesce(&g->vm->devices);
	ret = check_cpu(g, &h); /* h.compat points into buf */
	if (ret)
		goto out;
	pthread_mutex_lock(&g->m->lock);
	g->m->st.ram_bytes = h.mem_size;
	g->m->st.vcpus = h.ncpus;
	pthread_mutex_unlock(&g->m->lock);
	if (!g->m->in_file)
		ret = stream_send(g->s, ST_ACCEPT, NULL, 0, g->err, g->errlen);
	g->s->deadline_ns = 0; /* the migration has begun: frames have their own */
	/* While a pass runs on the data channels the main connection is
	 * quiet for as long as the pass lasts: it waits on while the
	 * channels move (a pass longer than the bound: a big guest on a
	 * slow link). */
	g->s->idle_ms = idle_ms();
	g->s->idle_live = &g->m->live_bytes;
out:
	free(buf);
	return ret;
}

/* The source's ERROR: its reason becomes ours. */
static int source_gave_up(struct tgt *g, uint32_t len)
{
	char text[TEXT_MAX_LEN + 1];

	if (!stream_recv_text(g->s, len, text, sizeof(text), g->err, g->errlen))
		snprintf(g->err, g->errlen, "the source gave up: %s", text);
	return -ECONNABORTED;
}

static int on_ping(struct tgt *g, uint32_t len)
{
	uint8_t tok[8];
	int ret;

	ret = stream_recv_fixed(g->s, ST_PING, len, tok, sizeof(tok), g->err, g->errlen);
	/* A PING inside a pass asks for the pass to be applied first (the
	 * source's end-of-pass drain). */
	for (int i = 0; i < g->ss.n && !ret; i++)
		if (g->ss.s[i].ops->load_drain)
			ret = g->ss.s[i].ops->load_drain(g->ss.s[i].state, &g->env);
	/* Test hook: the first pass's drain as slow as a slow disk's flush. */
	if (!ret && g->pings++ == 1 && getenv("MINIVMM_TEST_DRAIN_DELAY_MS")) {
		unsigned long ms = strtoul(getenv("MINIVMM_TEST_DRAIN_DELAY_MS"), NULL, 10);

		usleep((useconds_t)(ms > 60000 ? 60000 : ms) * 1000);
	}
	if (!ret && !g->m->in_file)
		ret = stream_send(g->s, ST_PONG, tok, 8, g->err, g->errlen);
	return ret;
}

static int on_end(struct tgt *g, uint32_t len)
{
	struct mig_end end;
	uint8_t b[END_LEN];
	int ret;

	ret = stream_recv_fixed(g->s, ST_END, len, b, END_LEN, g->err, g->errlen);
	if (ret)
		return ret;
	g->m->end_ns = clock_now_ns();
	end = (struct mig_end){ .flags = le_get32(b), .digest = le_get64(b + 4) };
	for (int i = 0; i < g->ss.n && !ret; i++)
		if (g->ss.s[i].ops->load_complete)
			ret = g->ss.s[i].ops->load_complete(g->ss.s[i].state, &g->env, &end);
	return ret;
}

/* Frames until END; returns 0 once every section loaded and checked its
 * part. */
static int receive(struct tgt *g)
{
	for (;;) {
		struct mig_section *sec;
		struct stream_hdr h;
		int ret;

		if (signalled()) {
			snprintf(g->err, g->errlen, "interrupted by a signal");
			return -EINTR;
		}
		/* A blocked read also returns on a signal (g->s->intr_fd). */
		ret = stream_recv_hdr(g->s, &h, g->err, g->errlen);
		if (ret == -ETIME)
			snprintf(g->err, g->errlen, "the source sent nothing for %d s",
				 (g->s->idle_ms + 999) / 1000);
		if (ret)
			return ret;
		switch (h.type) {
		case ST_PING:
			ret = on_ping(g, h.len);
			break;
		case ST_END:
			return on_end(g, h.len);
		case ST_ERROR:
			return source_gave_up(g, h.len);
		default:
			sec = mig_sections_for_frame(&g->ss, h.type);
			if (!sec || !sec->ops->load_frame) {
				snprintf(g->err, g->errlen,
					 "protocol error: unexpected %s from the source",
					 stream_type_name(h.type));
				return -EPROTO;
			}
			ret = sec->ops->load_frame(sec->state, &g->env, &h);
			break;
		}
		if (ret)
			return ret;
	}
}

static void write_stats(struct mig *m, enum stats_result result, const char *error)
{
	char err[256];

	m->st.result = result;
	if (error)
		snprintf(m->st.error, sizeof(m->st.error), "%s", error);
	m->st.bytes_total = m->in.bytes_in + m->chan_bytes_in;
	if (m->in_stats[0] && stats_write_json(&m->st, m->in_stats, err, sizeof(err)) < 0)
		fprintf(stderr, "minivmm: %s\n", err);
}

static struct mig *mig_new_target(const struct mig_params *p)
{
	struct mig *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->conn = NULL;
	m->cancel_efd = -1;
	stream_reset(&m->in);
	m->st.role = STATS_TARGET;
	if (p)
		snprintf(m->in_stats, sizeof(m->in_stats), "%s", p->t.stats_json);
	return m;
}

/* After READY: the source's last words before COMMIT (LATE, for the
 * sections that take it), then COMMIT. */
static int wait_commit(struct tgt *g)
{
	for (;;) {
		struct mig_section *sec;
		struct stream_hdr h;
		int ret = stream_recv_hdr(g->s, &h, g->err, g->errlen);

		if (ret)
			return ret;
		if (h.type == ST_COMMIT && h.len == 0)
			return 0;
		if (h.type == ST_ERROR)
			return source_gave_up(g, h.len);
		sec = h.type == ST_LATE ? mig_sections_for_frame(&g->ss, h.type) : NULL;
		if (!sec) {
			snprintf(g->err, g->errlen, "protocol error: %s from the source, not COMMIT",
				 stream_type_name(h.type));
			return -EPROTO;
		}
		ret = sec->ops->load_frame(sec->state, &g->env, &h);
		if (ret)
			return ret;
	}
}

/* After a refused connection the target waits on as it did before it:
 * the VM that connection made is gone, RAM (--mem) is mapped and, with
 * --prealloc, populated again. */
static int rearm(struct tgt *g)
{
	stream_close(g->s);
	if (g->vm_made) {
		g->vm->mig = NULL;
		vm_destroy(g->vm);
		g->vm_made = false;
	}
	if (!g->p || !g->p->expect_mem)
		return 0;
	if (!g->ram && !g->shell)
		return premap_ram(g);
	if (g->p->prealloc && !g->pa)
		return prealloc_start(&g->pa, g->shell ? g->vm->ram : g->ram, g->p->expect_mem,
				      hostlimits_max_cpus(), g->err, g->errlen);
	return 0;
}

/* Connections until one passes the handshake: a port scan, a health
 * check, garbage, a trickler or a refused HELLO costs one line, not the
 * waiting target. Only a signal (or a local failure) ends the wait. */
static int serve(struct tgt *g, const struct transport_addr *a)
{
	int ret = transport_listen(a, &g->lst, g->err, g->errlen);

	if (ret)
		return ret;
	if (!g->key.set && a->kind != TRANSPORT_UNIX)
		fprintf(stderr, "minivmm: warning: no migration key (--migrate-key): anyone who "
			"can reach %s can run a VM here\n", g->uri);
	fprintf(stderr, "minivmm: waiting for a migration on %s\n", g->uri);
	for (;;) {
		ret = wait_connection(g);
		if (ret)
			return ret;
		g->m->t0_ns = clock_now_ns();
		ret = handshake(g);
		if (!ret || ret == -EINTR || ret == -ENOMEM)
			return ret;
		fprintf(stderr, "minivmm: refused a connection from %s: %s; still waiting\n",
			g->peer, g->err);
		ret = rearm(g);
		if (ret)
			return ret;
	}
}

/* Sections set up, every frame until END, sections cleaned up (they stay
 * allocated for LATE, until mig_incoming ends). */
static int take_vm(struct tgt *g)
{
	int ret = mig_sections_create(&g->ss, g->err, g->errlen);

	g->env = (struct mig_tgt_env){
		.vm = g->vm, .m = g->m, .s = g->s, .file = g->m->in_file, .lst = &g->lst,
		.nice = g->p ? (int)g->p->t.nice : 0, .t0 = g->m->t0_ns,
		.err = g->err, .errlen = g->errlen,
	};
	for (int i = 0; i < g->ss.n && !ret; i++)
		if (g->ss.s[i].ops->load_setup)
			ret = g->ss.s[i].ops->load_setup(g->ss.s[i].state, &g->env);
	if (!ret)
		ret = receive(g);
	for (int i = 0; i < g->ss.n; i++)
		if (g->ss.s[i].ops->load_cleanup)
			g->ss.s[i].ops->load_cleanup(g->ss.s[i].state, &g->env);
	g->m->final_ns = g->env.t_final;
	return ret;
}

int mig_incoming(const char *uri, const struct mig_params *p, struct vm *vm,
		 char *err, size_t errlen)
{
	struct mig *m = mig_new_target(p);
	struct tgt g = { .vm = vm, .m = m, .err = err, .errlen = errlen, .p = p,
			 .lst = { .fd = -1 }, .sigfd = -1, .uri = uri };
	struct transport_addr a;
	sigset_t sigs;
	int ret;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	g.s = &m->in;
	/* The run loop blocks these and reads them from its own signalfd
	 * later; this one only shows a pending one to blocked reads. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	g.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	ret = transport_parse(uri, true, &a, err, errlen);
	m->in_file = !ret && a.kind == TRANSPORT_FILE;
	atomic_store(&m->live_bytes, 0);
	if (!ret && !m->in_file)
		ret = auth_key_resolve(p ? p->t.key : NULL, &g.key, err, errlen);
	if (!ret)
		ret = premap_ram(&g);
	if (!ret && m->in_file) {
		m->t0_ns = clock_now_ns();
		ret = open_snapshot(&g, &a);
		if (!ret)
			ret = handshake(&g);
	} else if (!ret) {
		ret = serve(&g, &a);
	}
	if (!ret)
		ret = take_vm(&g);
	transport_listener_close(&g.lst);
	auth_wipe(&g.key, sizeof(g.key));
	prealloc_stop(g.pa, NULL); /* still running only if no source came */
	if (g.ram) /* not adopted by a VM: nothing got that far */
		munmap(g.ram, p->expect_mem);
	if (g.shell) /* nor by a source */
		vm_destroy(vm);
	/* Test hook: a target that dies mid-switchover (docs/migration.md). */
	if (!ret && getenv("MINIVMM_TEST_TARGET_DIE") &&
	    !strcmp(getenv("MINIVMM_TEST_TARGET_DIE"), "before-ready"))
		raise(SIGKILL);
	/* The state is in: the devices speak for the guest from here, so
	 * what the network sends it from now on waits on this host (the
	 * back-ends stay quiesced until the guest runs). */
	if (!ret && !m->in_file)
		device_list_announce(&vm->devices);
	if (!ret && !m->in_file)
		ret = stream_send(&m->in, ST_READY, NULL, 0, err, errlen);
	m->in.idle_ms = 0; /* the source answers READY at once */
	if (!ret && !m->in_file)
		ret = wait_commit(&g);
	mig_sections_destroy(&g.ss);
	if (m->final_ns && !m->end_ns)
		m->end_ns = m->final_ns;
	if (ret) {
		if (stream_is_open(&m->in) && ret != -ECONNABORTED && !m->in_file)
			stream_send_text(&m->in, ST_ERROR, err);
		m->st.total_ms = clock_ms_since(m->t0_ns);
		write_stats(m, STATS_FAILED, err);
		stream_close(&m->in);
		pc_tgt_destroy(m->pc); /* switched, not committed: the source keeps the guest */
		m->pc = NULL;
		if (g.vm_made) {
			vm->mig = NULL;
			vm_destroy(vm);
		}
		stats_free(&m->st);
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free(m);
		if (g.sigfd >= 0)
			close(g.sigfd);
		return ret;
	}
	if (g.sigfd >= 0)
		close(g.sigfd);
	m->in.intr_fd = -1;
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
	if (!m->in_file)
		mig_fault_delay("COMMIT");
	/* Back-ends first, as vm_resume does: the frames that waited for the
	 * guest are in its RX ring, their interrupt pending, by the time its
	 * vCPU first enters, instead of waking it from its idle HLT after. */
	device_list_post_migrate(&vm->devices);
	device_list_resume(&vm->devices);
	ret = vm_start(vm, err, errlen);
	if (ret) {
		write_stats(m, STATS_FAILED, err);
		return ret;
	}
	/* RUNNING (which ends the source's downtime) and our own downtime
	 * wait until the vCPU threads have entered KVM_RUN: on a busy host a
	 * new thread was seen to run 2.4 ms after it was made, and a downtime
	 * that ends before the guest runs again under-reports it. */
	if (vm_wait_entered(vm, MIG_ENTER_WAIT_MS))
		fprintf(stderr, "minivmm: incoming migration: the vCPUs have not run after %d ms; "
			"reporting the guest running anyway\n", MIG_ENTER_WAIT_MS);
	now = clock_now_ns();
	/* The target's downtime: from the final pass (the source had paused
	 * by then) to vCPUs running here. */
	m->st.restore_ms = (double)(now - m->end_ns) / 1e6;
	m->st.downtime_ms = m->final_ns ? (double)(now - m->final_ns) / 1e6 : 0;
	m->st.total_ms = (double)(now - m->t0_ns) / 1e6;
	m->state = MIG_COMPLETED;
	/* The guest runs here now whatever happens to this message. */
	if (!m->in_file && stream_send(&m->in, ST_RUNNING, NULL, 0, err, errlen) < 0)
		fprintf(stderr, "minivmm: could not tell the source the guest runs here: %s\n",
			err);
	if (m->pc) { /* post-copy: the rest of RAM comes on this connection */
		fprintf(stderr, "minivmm: incoming migration: guest running (restore %.1f ms), "
			"post-copy: its missing pages follow\n", m->st.restore_ms);
		return pc_tgt_run(m->pc, &m->in, err, errlen);
	}
	stream_close(&m->in);
	/* The guest's first line here ends the switchover's gap: after this
	 * JSON is written, so `info migrate` has it, live. */
	if (vm->console)
		conline_gap_one_more(vm->console);
	write_stats(m, STATS_COMPLETED, NULL);
	fprintf(stderr, "minivmm: incoming migration completed: guest running (restore %.1f ms)\n",
		m->st.restore_ms);
	return 0;
}

int mig_incoming_frames(struct vm *vm, struct mig *m, char *err, size_t errlen)
{
	struct tgt g = { .vm = vm, .m = m, .s = &m->in, .err = err, .errlen = errlen,
			 .lst = { .fd = -1 }, .sigfd = -1 };
	int ret = take_vm(&g);

	if (!ret && !m->in_file)
		ret = wait_commit(&g);
	mig_sections_destroy(&g.ss);
	return ret;
}
