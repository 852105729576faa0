/* Post-copy, source side. The guest is paused here for the whole phase,
 * so its RAM does not change: a page can be sent from any thread at any
 * time, and each page is sent once because whoever sends it first takes
 * its bit from to_send atomically (the server takes single pages, the
 * push whole words). After a lost link the target says which pages it
 * still lacks and to_send becomes exactly that set. */
#include "migrate/postcopy/pc_source_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/policy/estimator.h"
#include "migrate/postcopy/pc_pace.h"
#include "migrate/postcopy/pc_policy.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/ram/bitmap.h"
#include "migrate/ram/xbzrle.h"
#include "migrate/section.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

/* How long a lost link waits for the target's last word on main; once
 * every page was sent, long enough for the target to place what its
 * socket still held (the push's queue is bounded, pc_policy_push_queue). */
#define PC_LAST_WORD_MS 200
#define PC_LAST_WORD_SENT_MS 2000

/* Test hook (docs/migration.md): cut both connections once this many
 * pages were pushed, once. */
static uint64_t test_cut_after(void)
{
	const char *v = getenv("MINIVMM_TEST_PC_CUT");

	return v && *v ? strtoull(v, NULL, 10) : 0;
}

void pc_src_attach_rp(struct pc_src *pc, const struct transport_conn *conn)
{
	stream_attach(&pc->rp, conn, MIG_IO_TIMEOUT_MS);
	/* A reply is a vCPU waiting: ahead of the push where the link's
	 * queue can tell them apart (docs/postcopy.md). Best effort. */
	(void)transport_prefer_latency(&pc->rp.conn);
}

int pc_src_connect_rp(struct pc_src *pc, const struct transport_addr *a, char *err,
		      size_t errlen)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], b[RETURN_PATH_LEN];
	struct transport_conn conn;
	int ret = transport_connect(a, MIG_IO_TIMEOUT_MS, &conn, err, errlen);

	if (ret)
		return ret;
	pc_src_attach_rp(pc, &conn);
	stream_preamble_encode(pre);
	le_put64(b, pc->token);
	le_put32(b + 8, 0);
	ret = stream_write_all(&pc->rp, pre, sizeof(pre), err, errlen);
	if (!ret)
		ret = stream_send(&pc->rp, ST_RETURN_PATH, b, sizeof(b), err, errlen);
	return ret;
}

int pc_src_create(struct pc_src **out, struct vm *vm, struct mig *m, uint64_t token, char *err,
		  size_t errlen)
{
	struct pc_src *pc = calloc(1, sizeof(*pc));

	*out = pc;
	if (!pc) {
		snprintf(err, errlen, "post-copy: out of memory");
		return -ENOMEM;
	}
	pc->vm = vm;
	pc->m = m;
	pc->npages = vm->ram_size / VM_PAGE_SIZE;
	pc->token = token;
	pc->to_send = calloc(bm_words(pc->npages), 8);
	pc->resendable = calloc(bm_words(pc->npages), 8);
	pc->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&pc->mu, NULL);
	stream_reset(&pc->rp);
	if (!pc->to_send || !pc->resendable || pc->stop_efd < 0) {
		snprintf(err, errlen, "post-copy: out of memory");
		return -ENOMEM;
	}
	return 0;
}

int pc_src_setup(struct pc_src **out, struct mig_src_env *env, struct xbz_cache *xbz)
{
	uint8_t b[POSTCOPY_LEN] = { 0 };
	struct pc_src *pc;
	uint32_t len, take;
	int ret;

	*out = NULL;
	le_put32(b, xbz ? POSTCOPY_DELTA : 0);
	ret = stream_send(env->s, ST_POSTCOPY, b, sizeof(b), env->err, env->errlen);
	if (!ret)
		ret = stream_recv_expect(env->s, ST_POSTCOPY, b, sizeof(b), &len, "target",
					 env->err, env->errlen);
	if (ret)
		return ret;
	if (len != POSTCOPY_LEN) {
		snprintf(env->err, env->errlen, "bad POSTCOPY reply from the target");
		return -EPROTO;
	}
	take = le_get32(b);
	if (take & ~(POSTCOPY_ACCEPTED | (xbz ? POSTCOPY_DELTA : 0))) {
		snprintf(env->err, env->errlen, "protocol error: the target took post-copy "
			 "features not offered (%#x)", take);
		return -EPROTO;
	}
	if (!(take & POSTCOPY_ACCEPTED)) {
		fprintf(stderr, "minivmm: the target cannot take post-copy; pre-copy only\n");
		return 0;
	}
	ret = pc_src_create(&pc, env->vm, env->m, le_get64(b + 4), env->err, env->errlen);
	*out = pc;
	if (!ret && xbz && (take & POSTCOPY_DELTA)) {
		pc->xbz = xbz;
		pc->kept = calloc(bm_words(pc->npages), 8);
		pc->enc = malloc(PC_DELTA_AREA);
		if (!pc->kept || !pc->enc) {
			snprintf(env->err, env->errlen, "post-copy: out of memory");
			return -ENOMEM;
		}
	}
	return ret ? ret : pc_src_connect_rp(pc, env->addr, env->err, env->errlen);
}

static void lose(struct pc_src *pc, const char *why)
{
	pthread_mutex_lock(&pc->mu);
	if (!atomic_exchange(&pc->lost, 1))
		snprintf(pc->err, sizeof(pc->err), "%s", why);
	pthread_mutex_unlock(&pc->mu);
}

/* Whether the server sends asked page i: one still to send (taken now),
 * or one the push took but the server never sent. The push's copy may sit
 * behind megabytes in the main socket's buffer while the guest waits for
 * this page; a second copy on the return path costs a page and the target
 * drops whichever comes second. At most once per page: repeated requests
 * cost nothing. */
static bool serve_page(struct pc_src *pc, uint64_t i)
{
	if (!pc_bm_take(pc->to_send, i) && !bm_test(pc->resendable, i))
		return false;
	bm_clear(pc->resendable, i);
	return true;
}

/* Sends on the return path, in runs, the pages of [first, first + n)
 * serve_page gives. */
static int send_asked(struct pc_src *pc, uint64_t first, uint64_t n, char *err, size_t errlen)
{
	uint64_t i = first, end = first + n;

	while (i < end) {
		uint64_t j;
		int ret;

		if (!serve_page(pc, i)) {
			i++;
			continue;
		}
		for (j = i + 1; j < end && j - i < PC_BATCH_PAGES && serve_page(pc, j); j++)
			;
		ret = pc_pages_send(&pc->rp, pc->vm->ram, i, (uint32_t)(j - i), err, errlen);
		if (ret)
			return ret;
		atomic_fetch_add(&pc->requested, j - i);
		i = j;
	}
	return 0;
}

/* One PAGE_REQ: out of range is answered with ERROR (and the connection
 * stays), a page already sent on the return path costs nothing. */
static int serve_request(struct pc_src *pc, uint32_t len, char *err, size_t errlen)
{
	uint8_t b[PAGE_REQ_LEN];
	uint64_t first, end;
	uint32_t n;
	int ret = stream_recv_fixed(&pc->rp, ST_PAGE_REQ, len, b, sizeof(b), err, errlen);

	if (ret)
		return ret;
	first = le_get64(b);
	n = le_get32(b + 8);
	if (n == 0 || n > PAGE_REQ_MAX_PAGES || first >= pc->npages || n > pc->npages - first) {
		atomic_fetch_add(&pc->bad, 1);
		return stream_send_text(&pc->rp, ST_ERROR, "bad PAGE_REQ: pages out of range");
	}
	/* Only the asked pages: what follows them comes on the push, which
	 * goes on from there, so that a guest walking through its memory finds
	 * the next pages already coming without a request for each. Sent on
	 * the return path too, they would sit ahead of the next fault's reply
	 * wherever both share the link (docs/postcopy.md). push_from is
	 * 1-based: 0 says "nothing new". */
	end = first + n;
	if (end < pc->npages)
		atomic_store(&pc->push_from, end + 1);
	return send_asked(pc, first, n, err, errlen);
}

/* One PC_KEPT slice: its pages may go as deltas from now on (a page
 * named that is not missing is never pushed: harmless). */
static int take_kept(struct pc_src *pc, uint32_t len, char *err, size_t errlen)
{
	uint64_t words = bm_words(pc->npages), n = 0, *got = calloc(words, 8);
	int ret;

	if (!got) {
		snprintf(err, errlen, "PC_KEPT: out of memory");
		return -ENOMEM;
	}
	ret = pc_missing_recv(&pc->rp, len, got, pc->npages, &n, err, errlen);
	for (uint64_t w = 0; w < words && !ret; w++)
		if (got[w])
			atomic_fetch_or_explicit(&pc->kept[w], got[w], memory_order_relaxed);
	free(got);
	return ret;
}

static void *server_main(void *arg)
{
	struct pc_src *pc = arg;
	char err[256];

	for (;;) {
		struct stream_hdr h;
		int ret = stream_recv_hdr(&pc->rp, &h, err, sizeof(err));

		if (!ret && h.type == ST_PAGE_REQ)
			ret = serve_request(pc, h.len, err, sizeof(err));
		else if (!ret && h.type == ST_PC_KEPT && pc->kept)
			ret = take_kept(pc, h.len, err, sizeof(err));
		else if (!ret) {
			snprintf(err, sizeof(err), "protocol error: %s on the return path",
				 stream_type_name(h.type));
			ret = -EPROTO;
		}
		if (ret) {
			if (ret != -ECANCELED)
				lose(pc, err);
			return NULL;
		}
	}
}

int pc_src_start_server(struct pc_src *pc, char *err, size_t errlen)
{
	int ret;

	/* Idle while nothing faults: only a failure or a stop ends a read. */
	stream_set_timeout(&pc->rp, 0);
	pc->rp.cancel_fd = pc->stop_efd;
	ret = pool_start(&pc->server, 1, server_main, pc, 0, "pc-server", err, errlen);
	pc->serving = !ret;
	return ret;
}

void pc_src_stop_server(struct pc_src *pc)
{
	uint64_t one = 1, v;

	if (!pc->serving)
		return;
	if (write(pc->stop_efd, &one, sizeof(one)) < 0)
		stream_shutdown(&pc->rp);
	pool_join(&pc->server);
	pc->serving = false;
	if (read(pc->stop_efd, &v, sizeof(v)) < 0) {
		/* nothing pending */
	}
}

int pc_src_switch(struct pc_src *pc, struct mig_src_env *env, const uint64_t *bm)
{
	uint64_t words = bm_words(pc->npages), n = 0;
	int ret;

	for (uint64_t w = 0; w < words; w++) {
		atomic_store(&pc->to_send[w], bm[w]);
		pc->resendable[w] = bm[w];
		n += (uint64_t)__builtin_popcountll(bm[w]);
	}
	ret = pc_bitmap_send(env->s, ST_MISSING, bm, pc->npages, env->err, env->errlen);
	if (ret < 0)
		return ret;
	pc->t_switch = clock_now_ns();
	pthread_mutex_lock(&env->m->lock);
	env->m->st.postcopy = true;
	env->m->st.pc_pages_missing = n;
	env->m->remaining_pages = n;
	pthread_mutex_unlock(&env->m->lock);
	fprintf(stderr, "minivmm: switching to post-copy: %llu pages the target lacks\n",
		(unsigned long long)n);
	/* The target may fault on its first state load: serve from now on. */
	return pc_src_start_server(pc, env->err, env->errlen);
}

static void publish(struct pc_src *pc, struct mig_src_env *env, uint64_t left)
{
	struct mig *m = env->m;

	pthread_mutex_lock(&m->lock);
	m->st.pc_pages_requested = atomic_load(&pc->requested);
	m->st.pc_pages_pushed = atomic_load(&pc->pushed);
	m->st.pc_bad_requests = atomic_load(&pc->bad);
	m->st.postcopy_ms = clock_ms_since(pc->t_switch);
	m->remaining_pages = left;
	m->st.bytes_total = env->s->bytes_out + pc->rp.bytes_out + env->extra_bytes_out;
	pthread_mutex_unlock(&m->lock);
}

uint64_t pc_src_left(struct pc_src *pc)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < bm_words(pc->npages); w++)
		n += (uint64_t)__builtin_popcountll(atomic_load(&pc->to_send[w]));
	return n;
}

/* The push shares the link with the return path's replies: its queue is
 * bounded for the whole phase (pc_policy_push_queue; TCP only, a Unix
 * socket shares no link; nothing measured: the kernel's sizing), and the
 * gate (pc_pace.h) keeps it near empty. */
static void bound_push_queue(struct mig_src_env *env, double bw, const struct transport_path *path)
{
	uint32_t q, got;

	if (!(bw > 0) || !path)
		return;
	q = pc_policy_push_queue(bw, path->min_rtt_us, path->mss);
	if (transport_bound_send_queue(&env->s->conn, q, &got))
		return;
	pthread_mutex_lock(&env->m->lock);
	env->m->st.pc_push_queue_bytes = got;
	pthread_mutex_unlock(&env->m->lock);
}

/* A page the target kept a stale copy of goes as a delta against what
 * the cache holds of it: what the target held at the switch, as the
 * cache is not updated after it (xbz_cache_delta). -1: whole. */
static int encode_delta(void *arg, uint64_t page, const uint8_t *cur, uint8_t *out, size_t cap)
{
	struct pc_src *pc = arg;
	uint64_t w = atomic_load_explicit(&pc->kept[page / 64], memory_order_relaxed);

	if (!((w >> (page % 64)) & 1))
		return -1;
	return xbz_cache_delta(pc->xbz, page, cur, out, cap);
}

/* Every page not yet taken on the main connection: in order, from wherever
 * the last request left off, wrapping around, until a whole sweep of the
 * bitmap finds nothing (pages are only ever taken, so that is the end). */
static int push(struct pc_src *pc, struct mig_src_env *env, uint64_t *cut)
{
	uint64_t words = bm_words(pc->npages), empty = 0, w = 0, n = 0;
	double bw = env->e ? est_bandwidth(env->e) : 0;
	struct transport_path path;
	bool tcp = !transport_path_info(&env->s->conn, &path);
	struct pc_delta dl = { .encode = encode_delta, .arg = pc, .enc = pc->enc };
	struct pc_batch batch;
	struct pc_pace pace;
	int ret = 0;

	bound_push_queue(env, bw, tcp ? &path : NULL);
	pc_pace_init(&pace, &env->s->conn, bw, tcp ? &path : NULL);
	for (; empty < words; w = w + 1 < words ? w + 1 : 0, n++) {
		uint64_t from = atomic_exchange(&pc->push_from, 0), v;

		if (from && from - 1 < pc->npages) {
			/* From that page on; the word's lower pages wait for
			 * the wrap-around. */
			w = (from - 1) / 64;
			v = pc_bm_take_bits(pc->to_send, w, ~0ULL << ((from - 1) % 64));
			empty = 0;
		} else {
			v = pc_bm_take_word(pc->to_send, w);
			empty = v ? 0 : empty + 1;
		}

		while (v) {
			uint64_t b = (uint64_t)__builtin_ctzll(v), e = b;
			uint64_t bytes, ns;

			while (e < 64 && (v >> e & 1))
				e++;
			if (e - b > pace.piece_pages)
				e = b + pace.piece_pages;
			v &= e == 64 ? 0 : ~0ULL << e;
			ret = pc_batch_build(&batch, pc->vm->ram, w * 64 + b, (uint32_t)(e - b),
					     pc->kept ? &dl : NULL);
			if (ret) {
				snprintf(env->err, env->errlen, "post-copy push: a batch of %llu pages",
					 (unsigned long long)(e - b));
				goto out;
			}
			pc_pace_wait(&pace, batch.bytes);
			ret = pc_batch_write(env->s, &batch, env->err, env->errlen);
			if (ret) {
				/* Not sent: the target will say it lacks them. */
				goto out;
			}
			atomic_fetch_add(&pc->pushed, e - b);
			bytes = batch.bytes;
			if (env->rate && (ns = est_rate_account(env->rate, bytes, clock_now_ns())))
				clock_sleep_ns(ns);
			if (*cut && atomic_load(&pc->pushed) >= *cut) {
				*cut = 0;
				stream_shutdown(env->s);
				stream_shutdown(&pc->rp);
			}
		}
		if (atomic_load(&pc->lost)) {
			ret = -ENOTCONN; /* the server's connection: its reason */
			goto out;
		}
		if (n % 1024 == 0)
			publish(pc, env, pc_src_left(pc));
	}
out:
	pc_pace_fini(&pace);
	pthread_mutex_lock(&env->m->lock);
	env->m->st.pc_pages_delta += dl.pages;
	env->m->st.pc_delta_bytes_saved += dl.saved;
	env->m->st.pc_push_gate_bytes = pace.gate;
	env->m->st.pc_push_wait_ms += (double)pace.wait_ns / 1e6;
	pthread_mutex_unlock(&env->m->lock);
	return ret;
}

/* Pushed everything: the target says when every page is in (pages on the
 * return path may still be on their way). */
static int wait_done(struct pc_src *pc, struct mig_src_env *env)
{
	struct stream_hdr h;
	int ret = stream_recv_hdr(env->s, &h, env->err, env->errlen);

	if (!ret && h.type == ST_ERROR) {
		char text[TEXT_MAX_LEN + 1];

		if (!stream_recv_text(env->s, h.len, text, sizeof(text), env->err, env->errlen))
			snprintf(env->err, env->errlen, "the target gave up: %.300s", text);
		return -ECONNABORTED;
	}
	if (!ret && (h.type != ST_PC_DONE || h.len)) {
		snprintf(env->err, env->errlen, "protocol error: %s from the target, not PC_DONE",
			 stream_type_name(h.type));
		ret = -EPROTO;
	}
	(void)pc;
	return ret;
}

/* A lost link may be the target's last word on main ahead of its close:
 * ERROR when its VM stopped (then post-copy ends here instead of waiting
 * for a recovery that cannot come), or PC_DONE when every page was in
 * already. Nothing else comes on main from the target, so it is at a
 * frame boundary. 1: done, 0: nothing said, or -ECONNABORTED. */
static int last_word(struct mig_src_env *env, bool all_sent)
{
	char text[TEXT_MAX_LEN + 1], e[128];
	struct stream_hdr h;

	if (!stream_is_open(env->s))
		return 0;
	stream_set_timeout(env->s, all_sent ? PC_LAST_WORD_SENT_MS : PC_LAST_WORD_MS);
	if (stream_recv_hdr(env->s, &h, e, sizeof(e)))
		return 0;
	if (h.type == ST_PC_DONE && !h.len)
		return 1;
	if (h.type != ST_ERROR || stream_recv_text(env->s, h.len, text, sizeof(text), e, sizeof(e)))
		return 0;
	snprintf(env->err, env->errlen, "the target gave up: %.300s", text);
	return -ECONNABORTED;
}

int pc_src_run(struct pc_src *pc, struct mig_src_env *env)
{
	uint64_t cut = test_cut_after();
	int ret, said;

	for (;;) {
		ret = push(pc, env, &cut);
		if (!ret)
			ret = wait_done(pc, env);
		if (!ret) /* PC_DONE: every page is there, whatever the return path did */
			break;
		if (ret == -ENOTCONN) {
			pthread_mutex_lock(&pc->mu);
			snprintf(env->err, env->errlen, "%s", pc->err);
			pthread_mutex_unlock(&pc->mu);
		}
		if (ret == -ECONNABORTED || ret == -EPROTO)
			break;
		said = last_word(env, pc_src_left(pc) == 0);
		if (said) {
			ret = said < 0 ? said : 0;
			break;
		}
		ret = pc_src_recover(pc, env);
		if (ret)
			break;
	}
	pc_src_stop_server(pc);
	publish(pc, env, pc_src_left(pc));
	return ret;
}

bool pc_src_lost(struct pc_src *pc, char *err, size_t errlen)
{
	bool lost;

	pthread_mutex_lock(&pc->mu);
	lost = atomic_load(&pc->lost) != 0;
	snprintf(err, errlen, "%s", pc->err);
	pthread_mutex_unlock(&pc->mu);
	return lost;
}

uint64_t pc_src_rp_bytes(const struct pc_src *pc)
{
	return pc->rp_bytes_closed + pc->rp.bytes_out;
}

void pc_src_destroy(struct pc_src *pc)
{
	if (!pc)
		return;
	pc_src_stop_server(pc);
	stream_close(&pc->rp);
	if (pc->stop_efd >= 0)
		close(pc->stop_efd);
	pthread_mutex_destroy(&pc->mu);
	free(pc->to_send);
	free(pc->resendable);
	free(pc->kept);
	free(pc->enc);
	free(pc);
}
