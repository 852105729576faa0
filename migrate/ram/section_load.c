/* RAM, target side: ROUND frames open a round, PAGES land in guest RAM
 * (every run checked against its size in ram_recv.c), CHANNELS sets up the
 * data channels, and END's digest is checked against this side's RAM. */
#include "migrate/ram/section_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_target.h"
#include "migrate/ram/bitmap.h"

/* Two helpers, the best count on the 2-core machines (the figures for 1-4:
 * docs/migration.md, "Throughput"); on one CPU they would only take turns
 * with the receiver. */
static int prefault_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n >= 2 ? 2 : 0;
}

int ram_load_setup(void *sec, struct mig_tgt_env *env)
{
	struct ram_sec *x = sec;

	/* Calloc'd: for a big guest the kernel gives zero pages lazily, so
	 * only the parts of it that pages land in cost memory. */
	x->have = calloc(bm_words(env->vm->ram_size / VM_PAGE_SIZE), 8);
	if (!x->have) {
		snprintf(env->err, env->errlen, "calloc(received-page bitmap): out of memory");
		return -ENOMEM;
	}
	/* The helpers only make it faster: without them, receive anyway. On
	 * RAM populated ahead (--prealloc) they would only walk page tables. */
	if (env->m->st.prealloc_bytes < env->vm->ram_size &&
	    ram_prefault_start(&x->pf, env->vm, prefault_threads(), env->err, env->errlen) < 0)
		fprintf(stderr, "minivmm: %s; receiving without prefault helpers\n", env->err);
	return 0;
}

/* Folds what the data channels received since the last call into the
 * stats; called where the channels are between rounds. */
static void fold_channels(struct ram_sec *x, struct mig_tgt_env *env)
{
	struct chan_totals t;

	if (!x->ct)
		return;
	chan_tgt_totals(x->ct, &t);
	env->m->st.pages_normal += t.normal - x->ct_seen.normal;
	env->m->st.pages_zero += t.zero - x->ct_seen.zero;
	env->m->chan_bytes_in = t.bytes;
	x->ct_seen = t;
}

static uint64_t in_bytes(const struct mig_tgt_env *env)
{
	return env->s->bytes_in + env->m->chan_bytes_in;
}

/* Per-round records the target keeps: a source's rounds are bounded by
 * max-rounds (30 by default), a hostile peer's only by its bandwidth. Past
 * this the rounds are counted and not recorded. */
#define RAM_MAX_ROUND_RECORDS 4096

static void close_round(struct ram_sec *x, struct mig_tgt_env *env)
{
	struct stats *st = &env->m->st;

	if (!x->in_round)
		return;
	fold_channels(x, env);
	x->rec.duration_ms = clock_ms_since(env->t0) - x->rec.start_ms;
	x->rec.bytes = in_bytes(env) - x->rec.bytes;
	x->rec.pages_sent = st->pages_normal + st->pages_zero - x->pages_at_round;
	if (st->nrec < RAM_MAX_ROUND_RECORDS)
		stats_add_round(st, &x->rec);
	x->in_round = false;
}

static int on_round(struct ram_sec *x, struct mig_tgt_env *env, uint32_t len)
{
	struct stats *st = &env->m->st;
	uint8_t b[ROUND_LEN];
	int ret;

	ret = stream_recv_fixed(env->s, ST_ROUND, len, b, ROUND_LEN, env->err, env->errlen);
	if (ret)
		return ret;
	/* Rounds go 0, 1, 2, ... (the final one too): st->rounds counts
	 * those opened so far. */
	if (le_get32(b) != st->rounds) {
		snprintf(env->err, env->errlen, "protocol error: ROUND %u where round %u was due",
			 le_get32(b), st->rounds);
		return -EPROTO;
	}
	if (st->rounds == UINT32_MAX) {
		snprintf(env->err, env->errlen, "protocol error: too many rounds");
		return -EPROTO;
	}
	/* Round 0 is past CHANNELS: nothing more may connect, so a second
	 * source now finds the port closed instead of a silent backlog. */
	if (le_get32(b) == 0 && env->lst)
		transport_listener_close(env->lst);
	/* No page of this round may land before every channel ended the
	 * previous one (chan.h). */
	if (x->ct && le_get32(b) > 0)
		ret = chan_tgt_wait(x->ct, le_get32(b) - 1, env->err, env->errlen);
	if (ret)
		return ret;
	close_round(x, env);
	x->round = le_get32(b);
	if ((le_get32(b + 4) & ROUND_FLAG_POSTCOPY) &&
	    (!(le_get32(b + 4) & ROUND_FLAG_FINAL) || !x->pct)) {
		snprintf(env->err, env->errlen, "protocol error: a post-copy switch %s",
			 x->pct ? "in a round that is not the last" : "without POSTCOPY");
		return -EPROTO;
	}
	x->pc_switch = (le_get32(b + 4) & ROUND_FLAG_POSTCOPY) != 0;
	if (le_get32(b + 4) & ROUND_FLAG_FINAL) {
		env->t_final = clock_now_ns();
		st->converged = (le_get32(b + 4) & ROUND_FLAG_CONVERGED) != 0;
	}
	x->rec = (struct stats_round){
		.round = x->round,
		.start_ms = clock_ms_since(env->t0),
		.bytes = in_bytes(env), /* start value; close_round subtracts */
	};
	x->in_round = true;
	x->pages_at_round = st->pages_normal + st->pages_zero;
	st->rounds++;
	return 0;
}

/* The source asks for data channels before round 0; they connect to the
 * listening socket and prove they belong to this migration with a token
 * only this connection has seen. */
static int on_channels(struct ram_sec *x, struct mig_tgt_env *env, uint32_t len)
{
	uint8_t b[CHANNELS_LEN];
	uint64_t token = 0;
	uint32_t want;
	int ret;

	ret = stream_recv_fixed(env->s, ST_CHANNELS, len, b, CHANNELS_LEN, env->err,
				env->errlen);
	if (ret)
		return ret;
	if (x->ct || x->in_round || env->file) {
		snprintf(env->err, env->errlen, "protocol error: CHANNELS after the rounds began");
		return -EPROTO;
	}
	want = le_get32(b);
	if (want > CHANNELS_MAX)
		want = CHANNELS_MAX;
	if (!env->lst || env->lst->fd < 0)
		want = 0;
	if (want && getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		snprintf(env->err, env->errlen, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	le_put32(b, want);
	le_put64(b + 4, token);
	ret = stream_send(env->s, ST_CHANNELS, b, CHANNELS_LEN, env->err, env->errlen);
	if (!ret && want) {
		struct chan_tgt_cfg cfg = {
			.vm = env->vm, .pf = x->pf, .have = x->have,
			.session = stream_mac_session(env->s),
			.integrity = stream_mac_integrity(env->s),
			.timeout_ms = MIG_IO_TIMEOUT_MS, .idle_ms = env->s->idle_ms > 0 ?
				env->s->idle_ms : MIG_IDLE_TIMEOUT_MS,
			.nice = env->nice, .live_bytes = &env->m->live_bytes,
		};

		ret = chan_tgt_accept(&x->ct, env->lst, want, token, &cfg, env->err, env->errlen);
	}
	if (!ret)
		env->m->st.channels = want;
	return ret;
}

/* Post-copy offered before round 0: accepted (uffd is checked at the
 * switch) with a token the return path presents. */
static int on_postcopy(struct ram_sec *x, struct mig_tgt_env *env, uint32_t len)
{
	uint8_t b[POSTCOPY_LEN];
	uint64_t token = 0;
	uint32_t offer, take = 0;
	bool ok;
	int ret;

	ret = stream_recv_fixed(env->s, ST_POSTCOPY, len, b, POSTCOPY_LEN, env->err, env->errlen);
	if (ret)
		return ret;
	if (x->pct || x->in_round || env->file) {
		snprintf(env->err, env->errlen, "protocol error: POSTCOPY after the rounds began");
		return -EPROTO;
	}
	ok = env->lst && env->lst->fd >= 0;
	if (ok && getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		snprintf(env->err, env->errlen, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	/* Bits it does not know are offers it does not take. */
	offer = le_get32(b);
	if (ok)
		take = POSTCOPY_ACCEPTED | (offer & POSTCOPY_DELTA);
	le_put32(b, take);
	le_put64(b + 4, token);
	ret = stream_send(env->s, ST_POSTCOPY, b, POSTCOPY_LEN, env->err, env->errlen);
	if (!ret && ok)
		ret = pc_tgt_create(&x->pct, env->vm, env->m, take & POSTCOPY_DELTA, env->err,
				    env->errlen);
	if (!ret && ok)
		ret = pc_tgt_accept_rp(x->pct, env->lst, token, env->err, env->errlen);
	return ret;
}

int ram_load_frame(void *sec, struct mig_tgt_env *env, const struct stream_hdr *h)
{
	struct ram_sec *x = sec;
	struct stats *st = &env->m->st;
	int ret;

	switch (h->type) {
	case ST_ROUND:
		return on_round(x, env, h->len);
	case ST_CHANNELS:
		return on_channels(x, env, h->len);
	case ST_POSTCOPY:
		return on_postcopy(x, env, h->len);
	case ST_MISSING:
		if (!x->pc_switch || !x->pct) {
			snprintf(env->err, env->errlen, "protocol error: MISSING outside a post-copy switch");
			return -EPROTO;
		}
		return pc_tgt_missing(x->pct, env->s, h->len, env->err, env->errlen);
	case ST_PAGES:
		if (!x->in_round) {
			snprintf(env->err, env->errlen, "protocol error: pages outside a round");
			return -EPROTO;
		}
		ret = ram_recv_pages(env->s, env->vm, x->pf, x->have, h->len, &st->pages_normal,
				     &st->pages_zero, env->err, env->errlen);
		x->rec.pages_sent = st->pages_normal + st->pages_zero - x->pages_at_round;
		return ret;
	default:
		snprintf(env->err, env->errlen, "protocol error: %s is not a RAM frame",
			 stream_type_name(h->type));
		return -EPROTO;
	}
}

/* A PING inside a round asks for the round's pages to be in (the
 * source's end-of-round drain). */
int ram_load_drain(void *sec, struct mig_tgt_env *env)
{
	struct ram_sec *x = sec;

	if (x->ct && x->in_round)
		return chan_tgt_wait(x->ct, x->round, env->err, env->errlen);
	return 0;
}

int ram_load_complete(void *sec, struct mig_tgt_env *env, const struct mig_end *end)
{
	struct ram_sec *x = sec;
	uint64_t got;
	int ret = 0;

	/* The final round's pages on the channels come before anything is
	 * checked or loaded. */
	if (!x->pc_switch) /* a switch's round has no pages: the channels are past SYNC */
		ret = ram_load_drain(sec, env);
	if (ret)
		return ret;
	close_round(x, env);
	if (x->pc_switch) {
		/* The guest will run before its pages are here: RAM goes under
		 * userfaultfd, and the digest is checked once they all are.
		 * No helper may populate a page from here on (a page made
		 * present by anyone but pc_place would stay wrong). */
		ram_prefault_stop(x->pf);
		x->pf = NULL;
		ret = pc_tgt_arm(x->pct, end->flags & END_FLAG_DIGEST, end->digest, env->err,
				 env->errlen);
		if (!ret) {
			env->m->pc = x->pct;
			x->pct = NULL;
		}
		return ret;
	}
	if (!(end->flags & END_FLAG_DIGEST))
		return 0;
	got = ram_digest(env->vm->ram, env->vm->ram_size / VM_PAGE_SIZE);
	if (got != end->digest) {
		snprintf(env->err, env->errlen, "RAM digest mismatch: source %016llx, target %016llx",
			 (unsigned long long)end->digest, (unsigned long long)got);
		return -EIO;
	}
	fprintf(stderr, "minivmm: RAM digest verified: %016llx\n", (unsigned long long)got);
	return 0;
}

void ram_load_cleanup(void *sec, struct mig_tgt_env *env)
{
	struct ram_sec *x = sec;

	if (x->ct) {
		fold_channels(x, env);
		chan_tgt_close(x->ct); /* before the prefault helpers they use */
		x->ct = NULL;
	}
	ram_prefault_stop(x->pf); /* before the VM (and its RAM) can go away */
	pc_tgt_destroy(x->pct); /* not switched: pre-copy only */
	x->pct = NULL;
	x->pf = NULL;
	free(x->have);
	x->have = NULL;
}
