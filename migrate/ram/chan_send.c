/* Data channels, source side: one thread per channel. A round is shared
 * out in CHAN_CHUNK_PAGES chunks taken in address order from one counter,
 * so a channel that is slowed down simply takes fewer of them. */
#include "migrate/ram/chan.h"
#include "migrate/mig.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/proto/framemac.h"
#include "vmm/core/clock.h"
#include "vmm/core/pool.h"

struct chan_s {
	struct chan_src *cs;
	uint32_t idx;
	struct stream s;
	struct ram_sender rs;
};

struct chan_src {
	struct chan_src_cfg cfg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t rate_mu;
	uint32_t n;
	uint32_t round;
	uint64_t gen;            /* bumped when a round starts */
	uint32_t running;        /* channels still in the current round */
	bool quit;
	atomic_bool failed;
	atomic_uint_fast64_t next; /* next chunk's first page */
	int err_code;
	char err[512];
	struct pool pool;
	struct chan_s ch[CHANNELS_MAX];
};

/* The first failure wins; the other channels are cut off so that none
 * waits on a peer that will never read again. */
static void fail(struct chan_src *cs, int code, const char *why)
{
	pthread_mutex_lock(&cs->mu);
	if (!cs->err_code) {
		cs->err_code = code;
		snprintf(cs->err, sizeof(cs->err), "%s", why);
	}
	pthread_mutex_unlock(&cs->mu);
	atomic_store(&cs->failed, true);
	for (uint32_t i = 0; i < cs->n; i++)
		stream_shutdown(&cs->ch[i].s);
}

static int do_round(struct chan_s *ch, uint32_t round, char *err, size_t errlen)
{
	struct chan_src *cs = ch->cs;
	uint64_t npages = ch->rs.npages;
	uint8_t b[SYNC_LEN];
	int ret;

	for (;;) {
		uint64_t base = atomic_fetch_add(&cs->next, CHAN_CHUNK_PAGES), n;

		if (base >= npages || atomic_load(&cs->failed) || (cs->cfg.stop && *cs->cfg.stop))
			break;
		n = npages - base < CHAN_CHUNK_PAGES ? npages - base : CHAN_CHUNK_PAGES;
		ret = round == 0 ? ram_send_all_range(&ch->rs, cs->cfg.d, base, n, err, errlen) :
		      ram_send_dirty_range(&ch->rs, cs->cfg.d, base, n, err, errlen);
		if (ret)
			return ret;
	}
	ret = ram_send_flush(&ch->rs, err, errlen);
	if (ret)
		return ret;
	le_put32(b, round);
	return stream_send(&ch->s, ST_SYNC, b, SYNC_LEN, err, errlen);
}

static void *chan_main(void *arg)
{
	struct chan_s *ch = arg;
	struct chan_src *cs = ch->cs;
	uint64_t seen = 0;

	mig_thread_nice(cs->cfg.nice);
	for (;;) {
		char err[512];
		uint32_t round;
		int ret;

		pthread_mutex_lock(&cs->mu);
		while (!cs->quit && cs->gen == seen)
			pthread_cond_wait(&cs->cv, &cs->mu);
		if (cs->quit) {
			pthread_mutex_unlock(&cs->mu);
			return NULL;
		}
		seen = cs->gen;
		round = cs->round;
		pthread_mutex_unlock(&cs->mu);

		ret = do_round(ch, round, err, sizeof(err));
		if (ret) {
			char why[512];

			snprintf(why, sizeof(why), "data channel %u: %.480s", ch->idx, err);
			fail(cs, ret, why);
		}
		pthread_mutex_lock(&cs->mu);
		if (--cs->running == 0)
			pthread_cond_broadcast(&cs->cv);
		pthread_mutex_unlock(&cs->mu);
	}
}

static int connect_one(struct chan_src *cs, struct chan_s *ch,
		       const struct transport_addr *a, uint64_t token, char *err,
		       size_t errlen)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], b[CHANNEL_LEN];
	struct transport_conn conn;
	int ret;

	ret = transport_connect(a, cs->cfg.timeout_ms, &conn, err, errlen);
	if (ret)
		return ret;
	stream_attach(&ch->s, &conn, cs->cfg.timeout_ms);
	ch->s.cancel_fd = cs->cfg.cancel_fd;
	stream_preamble_encode_flags(pre, cs->cfg.session ? PREAMBLE_FLAG_AUTH : 0);
	le_put32(b, ch->idx);
	le_put64(b + 4, token);
	ret = stream_write_all(&ch->s, pre, sizeof(pre), err, errlen);
	/* Keyed: every frame here, CHANNEL first, carries this channel's MAC. */
	if (!ret && cs->cfg.session &&
	    stream_mac_enable(&ch->s, cs->cfg.session, FRAME_CHAN_MAIN + 1 + ch->idx, true,
			      cs->cfg.integrity) < 0) {
		snprintf(err, errlen, "frame MAC state: out of memory");
		ret = -ENOMEM;
	}
	if (!ret)
		ret = stream_send(&ch->s, ST_CHANNEL, b, CHANNEL_LEN, err, errlen);
	if (ret)
		return ret;
	ram_send_init(&ch->rs, cs->cfg.vm, &ch->s, cs->cfg.cancel, cs->cfg.rate);
	ch->rs.rate_lock = &cs->rate_mu;
	ch->rs.sent_bm = cs->cfg.sent_bm;
	ch->rs.stop = cs->cfg.stop;
	ch->rs.live_bytes = cs->cfg.live_bytes;
	/* One cache for all channels: a page may go over any of them. */
	if (cs->cfg.xbz)
		return ram_send_set_xbz(&ch->rs, cs->cfg.xbz, err, errlen);
	return 0;
}

/* A round's ticks are timed waits: on the monotonic clock. */
static void cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

int chan_src_open(struct chan_src **out, const struct transport_addr *a, uint32_t n,
		  uint64_t token,
		  const struct chan_src_cfg *cfg, char *err, size_t errlen)
{
	struct chan_src *cs;
	int ret = 0;

	*out = NULL;
	if (n == 0 || n > CHANNELS_MAX) {
		snprintf(err, errlen, "%u data channels: 1..%u allowed", n, CHANNELS_MAX);
		return -EINVAL;
	}
	cs = calloc(1, sizeof(*cs));
	if (!cs) {
		snprintf(err, errlen, "calloc(channels): out of memory");
		return -ENOMEM;
	}
	cs->cfg = *cfg;
	cs->n = n;
	pthread_mutex_init(&cs->mu, NULL);
	cond_init_monotonic(&cs->cv);
	pthread_mutex_init(&cs->rate_mu, NULL);
	for (uint32_t i = 0; i < n; i++) {
		stream_reset(&cs->ch[i].s);
		cs->ch[i].cs = cs;
		cs->ch[i].idx = i;
	}
	for (uint32_t i = 0; i < n && !ret; i++) {
		char why[512];

		ret = connect_one(cs, &cs->ch[i], a, token, why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "data channel %u: %.400s", i, why);
	}
	/* The threads wait for a round: starting them last changes nothing. */
	if (!ret)
		ret = pool_start(&cs->pool, (int)n, chan_main, cs->ch, sizeof(cs->ch[0]),
				 "data channel", err, errlen);
	if (ret) {
		chan_src_close(cs);
		return ret;
	}
	*out = cs;
	return 0;
}

int chan_src_round(struct chan_src *cs, uint32_t round, void (*tick)(void *), void *arg,
		   uint32_t tick_ms, char *err, size_t errlen)
{
	int ret;

	if (tick && !tick_ms) {
		snprintf(err, errlen, "chan_src_round: a tick needs an interval");
		return -EINVAL;
	}
	pthread_mutex_lock(&cs->mu);
	if (cs->err_code) {
		ret = cs->err_code;
		goto out;
	}
	cs->round = round;
	atomic_store(&cs->next, 0);
	cs->running = cs->n;
	cs->gen++;
	pthread_cond_broadcast(&cs->cv);
	while (cs->running > 0) {
		struct timespec ts;

		if (!tick) {
			pthread_cond_wait(&cs->cv, &cs->mu);
			continue;
		}
		ts = clock_deadline((int)tick_ms);
		if (pthread_cond_timedwait(&cs->cv, &cs->mu, &ts) == ETIMEDOUT &&
		    cs->running > 0) {
			pthread_mutex_unlock(&cs->mu);
			tick(arg);
			pthread_mutex_lock(&cs->mu);
		}
	}
	ret = cs->err_code;
out:
	if (ret)
		snprintf(err, errlen, "%s", cs->err);
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

/* Between rounds only: the channel threads are idle then. */
void chan_src_totals(struct chan_src *cs, struct chan_totals *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&cs->mu);
	for (uint32_t i = 0; i < cs->n; i++) {
		const struct chan_s *ch = &cs->ch[i];

		t->bytes += ch->s.bytes_out;
		t->normal += ch->rs.pages_normal;
		t->zero += ch->rs.pages_zero;
		t->skipped += ch->rs.pages_skipped;
		t->xbz_pages += ch->rs.xbz_pages;
		t->xbz_saved += ch->rs.xbz_saved;
		t->xbz_misses += ch->rs.xbz_misses;
		t->xbz_ns += ch->rs.xbz_ns;
	}
	pthread_mutex_unlock(&cs->mu);
}

void chan_src_close(struct chan_src *cs)
{
	if (!cs)
		return;
	pthread_mutex_lock(&cs->mu);
	cs->quit = true;
	pthread_cond_broadcast(&cs->cv);
	pthread_mutex_unlock(&cs->mu);
	/* A sender blocked on a hung target would hold the join for its
	 * whole I/O timeout; every round the target took is complete by now. */
	for (uint32_t i = 0; i < cs->n; i++)
		if (stream_is_open(&cs->ch[i].s))
			stream_shutdown(&cs->ch[i].s);
	pool_join(&cs->pool);
	for (uint32_t i = 0; i < cs->n; i++) {
		stream_close(&cs->ch[i].s);
		ram_send_fini(&cs->ch[i].rs);
	}
	pthread_mutex_destroy(&cs->rate_mu);
	pthread_cond_destroy(&cs->cv);
	pthread_mutex_destroy(&cs->mu);
	free(cs);
}
