/* Data channels, target side: one receiver thread per channel. After
 * SYNC(r) a receiver waits until every channel has passed SYNC(r) before it
 * reads on (chan.h: the ordering rule), and the main stream's ROUND(r+1)
 * waits for the same. Everything a channel carries is checked as on the
 * main stream (ram_recv_pages); any error ends the migration. */
#include "migrate/ram/chan.h"
#include "migrate/mig.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/proto/framemac.h"
#include "vmm/core/pool.h"

struct chan_r {
	struct chan_tgt *ct;
	uint32_t idx;
	struct stream s;
	/* under ct->mu */
	int64_t synced; /* last round ended here, -1: none */
	bool closed;    /* the receiver stopped (EOF or error) */
	uint64_t normal, zero, bytes;
};

struct chan_tgt {
	struct vm *vm;
	struct ram_prefault *pf;
	uint64_t *have;
	int timeout_ms;
	int nice;
	const uint8_t *session; /* keyed: the main stream's session secret */
	atomic_uint_fast64_t *live_bytes; /* NULL: none */
	int idle_ms;
	bool integrity;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool quit;
	int err_code;
	char err[512];
	uint32_t n;
	struct pool pool;
	struct chan_r ch[CHANNELS_MAX];
};

static int64_t min_synced(const struct chan_tgt *ct)
{
	int64_t m = INT64_MAX;

	for (uint32_t i = 0; i < ct->n; i++)
		if (ct->ch[i].synced < m)
			m = ct->ch[i].synced;
	return m;
}

/* Called with ct->mu held. */
static void fail_locked(struct chan_tgt *ct, int code, const char *why)
{
	if (!ct->err_code) {
		ct->err_code = code;
		snprintf(ct->err, sizeof(ct->err), "%s", why);
	}
	for (uint32_t i = 0; i < ct->n; i++)
		stream_shutdown(&ct->ch[i].s);
	pthread_cond_broadcast(&ct->cv);
}

static int on_sync(struct chan_r *ch, uint32_t len, char *err, size_t errlen)
{
	struct chan_tgt *ct = ch->ct;
	uint8_t b[SYNC_LEN];
	uint32_t r;
	int ret;

	ret = stream_recv_fixed(&ch->s, ST_SYNC, len, b, SYNC_LEN, err, errlen);
	if (ret)
		return ret;
	r = le_get32(b);
	pthread_mutex_lock(&ct->mu);
	if ((int64_t)r != ch->synced + 1) {
		pthread_mutex_unlock(&ct->mu);
		snprintf(err, errlen, "SYNC for round %u after round %lld", r,
			 (long long)ch->synced);
		return -EPROTO;
	}
	ch->synced = r;
	ch->bytes = ch->s.bytes_in;
	pthread_cond_broadcast(&ct->cv);
	while (!ct->quit && !ct->err_code && min_synced(ct) < (int64_t)r)
		pthread_cond_wait(&ct->cv, &ct->mu);
	ret = ct->quit || ct->err_code ? -ECANCELED : 0;
	pthread_mutex_unlock(&ct->mu);
	if (ret)
		snprintf(err, errlen, "stopped");
	return ret;
}

static int one_frame(struct chan_r *ch, char *err, size_t errlen)
{
	struct stream_hdr h;
	char text[TEXT_MAX_LEN + 1];
	uint64_t normal = 0, zero = 0;
	int ret = stream_recv_hdr(&ch->s, &h, err, errlen);

	if (ret)
		return ret;
	switch (h.type) {
	case ST_PAGES:
		ret = ram_recv_pages(&ch->s, ch->ct->vm, ch->ct->pf, ch->ct->have, h.len, &normal, &zero,
				     err, errlen);
		pthread_mutex_lock(&ch->ct->mu);
		ch->normal += normal;
		ch->zero += zero;
		ch->bytes = ch->s.bytes_in;
		pthread_mutex_unlock(&ch->ct->mu);
		return ret;
	case ST_SYNC:
		return on_sync(ch, h.len, err, errlen);
	case ST_ERROR:
		ret = stream_recv_text(&ch->s, h.len, text, sizeof(text), err, errlen);
		if (!ret)
			snprintf(err, errlen, "the source gave up: %.400s", text);
		return -ECONNABORTED;
	default:
		snprintf(err, errlen, "protocol error: unexpected %s on a data channel",
			 stream_type_name(h.type));
		return -EPROTO;
	}
}

static void *recv_main(void *arg)
{
	struct chan_r *ch = arg;
	struct chan_tgt *ct = ch->ct;
	char err[512];
	int ret;

	mig_thread_nice(ct->nice);
	do
		ret = one_frame(ch, err, sizeof(err));
	while (!ret);
	pthread_mutex_lock(&ct->mu);
	ch->closed = true;
	ch->bytes = ch->s.bytes_in;
	/* After quit this is only the way out; before, it ends the migration
	 * unless the source closed a channel it no longer needs: that shows
	 * in chan_tgt_wait as a channel that is closed short of a round. */
	if (!ct->quit && ret != -ECANCELED && ret != -ECONNRESET) {
		char why[512];

		snprintf(why, sizeof(why), "data channel %u: %.480s", ch->idx, err);
		fail_locked(ct, ret, why);
	}
	pthread_cond_broadcast(&ct->cv);
	pthread_mutex_unlock(&ct->mu);
	return NULL;
}

/* How long one connection may take to present its CHANNEL frame: a
 * stray one that says nothing costs this much of the accept deadline,
 * not the migration. */
#define CHAN_HELLO_MS 2000

/* Keyed: CHANNEL is the channel's first frame, its MAC made with the key
 * of the index it names; from here on the stream checks every frame. */
static int check_channel_mac(struct chan_tgt *ct, struct stream *s, const uint8_t b[CHANNEL_LEN],
			     char *err, size_t errlen)
{
	uint8_t f[STREAM_HDR_LEN + CHANNEL_LEN], tag[FRAME_TAG_LEN], want[FRAME_TAG_LEN];
	uint32_t chan = FRAME_CHAN_MAIN + 1 + le_get32(b);
	int ret = stream_read_all(s, tag, sizeof(tag), err, errlen);

	if (ret)
		return ret;
	stream_hdr_encode(f, ST_CHANNEL, CHANNEL_LEN);
	memcpy(f + STREAM_HDR_LEN, b, CHANNEL_LEN);
	framemac_tag_once(ct->session, chan, true, 0, f, sizeof(f), want);
	if (!auth_ct_equal(want, tag, sizeof(tag))) {
		snprintf(err, errlen, "a connection that does not prove the session (CHANNEL MAC)");
		return -EACCES;
	}
	if (stream_mac_enable(s, ct->session, chan, false, ct->integrity) < 0) {
		snprintf(err, errlen, "frame MAC state: out of memory");
		return -ENOMEM;
	}
	s->mac->rx_seq = 1;
	return 0;
}

/* One connection: preamble, then CHANNEL(index, token), by deadline_ns.
 * -EAGAIN: it was not a channel of this migration (why in err). */
static int accept_one(struct chan_tgt *ct, struct transport_listener *l, uint64_t token,
		      uint64_t deadline_ns, char *err, size_t errlen)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], b[CHANNEL_LEN];
	struct transport_conn conn;
	struct stream s;
	uint32_t len, idx;
	uint64_t now = clock_now_ns();
	int left = now >= deadline_ns ? 0 : (int)((deadline_ns - now) / 1000000), ret;

	if (left <= 0)
		return -ETIMEDOUT;
	ret = transport_accept(l, left, ct->timeout_ms, &conn, err, errlen);
	if (ret)
		return ret;
	stream_attach(&s, &conn, ct->timeout_ms);
	s.deadline_ns = now + (uint64_t)CHAN_HELLO_MS * 1000000u;
	if (s.deadline_ns > deadline_ns)
		s.deadline_ns = deadline_ns;
	ret = stream_read_all(&s, pre, sizeof(pre), err, errlen);
	if (!ret)
		ret = stream_preamble_decode(pre, err, errlen);
	if (!ret && !(stream_preamble_flags(pre) & PREAMBLE_FLAG_AUTH) != !ct->session) {
		snprintf(err, errlen, ct->session ? "a connection without the migration's key" :
			 "a keyed connection to a keyless migration");
		ret = -EACCES;
	}
	if (!ret)
		ret = stream_recv_expect(&s, ST_CHANNEL, b, sizeof(b), &len, "source", err, errlen);
	if (!ret && len != CHANNEL_LEN) {
		snprintf(err, errlen, "bad CHANNEL: %u bytes", len);
		ret = -EPROTO;
	}
	if (!ret && ct->session)
		ret = check_channel_mac(ct, &s, b, err, errlen);
	if (ret)
		goto fail;
	idx = le_get32(b);
	if (le_get64(b + 4) != token) {
		snprintf(err, errlen, "a connection presented the wrong token");
		goto fail;
	}
	if (idx >= ct->n || stream_is_open(&ct->ch[idx].s)) {
		snprintf(err, errlen, "bad CHANNEL: index %u (of %u, or a repeat)", idx, ct->n);
		goto fail;
	}
	s.deadline_ns = 0; /* from here its frames have their own deadlines */
	stream_set_frame_ms(&s, ct->timeout_ms);
	/* Quiet between frames for as long as a pass of the other sections
	 * lasts (a disk's bulk pass on the main stream). */
	s.idle_ms = ct->idle_ms;
	s.idle_live = ct->live_bytes;
	ct->ch[idx].s = s;
	return 0;
fail:
	stream_close(&s);
	return -EAGAIN;
}

/* Connections until all n channels are in or the deadline passes; those
 * that are not channels of this migration (a stray connection, a second
 * source, a wrong token, a repeated index) are dropped, one line each. */
static int accept_all(struct chan_tgt *ct, struct transport_listener *l, uint64_t token,
		      char *err, size_t errlen)
{
	uint64_t deadline = clock_now_ns() + (uint64_t)ct->timeout_ms * 1000000u;
	char last[256] = "";
	uint32_t got = 0;

	while (got < ct->n) {
		int ret = accept_one(ct, l, token, deadline, err, errlen);

		if (ret == -EAGAIN) {
			fprintf(stderr, "minivmm: dropped a connection on the migration port: %s\n",
				err);
			snprintf(last, sizeof(last), "%s", err);
			continue;
		}
		if (ret == -ETIMEDOUT) {
			snprintf(err, errlen, "%u of %u data channels connected within %d ms%s%s%s",
				 got, ct->n, ct->timeout_ms, last[0] ? " (last refused: " : "",
				 last, last[0] ? ")" : "");
			return ret;
		}
		if (ret)
			return ret;
		got++;
	}
	return 0;
}

int chan_tgt_accept(struct chan_tgt **out, struct transport_listener *l, uint32_t n,
		    uint64_t token, const struct chan_tgt_cfg *cfg, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	struct chan_tgt *ct;
	int ret = 0;

	*out = NULL;
	if (n == 0 || n > CHANNELS_MAX) {
		snprintf(err, errlen, "%u data channels: 1..%u allowed", n, CHANNELS_MAX);
		return -EINVAL;
	}
	ct = calloc(1, sizeof(*ct));
	if (!ct) {
		snprintf(err, errlen, "calloc(channels): out of memory");
		return -ENOMEM;
	}
	ct->vm = cfg->vm;
	ct->pf = cfg->pf;
	ct->have = cfg->have;
	ct->n = n;
	ct->timeout_ms = cfg->timeout_ms;
	ct->idle_ms = cfg->idle_ms;
	ct->nice = cfg->nice;
	ct->session = cfg->session;
	ct->live_bytes = cfg->live_bytes;
	ct->integrity = cfg->integrity;
	pthread_mutex_init(&ct->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* chan_tgt_wait's deadline */
	pthread_cond_init(&ct->cv, &ca);
	pthread_condattr_destroy(&ca);
	for (uint32_t i = 0; i < n; i++) {
		ct->ch[i] = (struct chan_r){ .ct = ct, .idx = i, .synced = -1 };
		stream_reset(&ct->ch[i].s);
	}
	ret = accept_all(ct, l, token, err, errlen);
	if (!ret)
		ret = pool_start(&ct->pool, (int)n, recv_main, ct->ch, sizeof(ct->ch[0]),
				 "data channel", err, errlen);
	if (ret) {
		chan_tgt_close(ct);
		return ret;
	}
	*out = ct;
	return 0;
}

int chan_tgt_wait(struct chan_tgt *ct, uint32_t round, char *err, size_t errlen)
{
	struct timespec dl = clock_deadline(ct->timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&ct->mu);
	while (!ct->err_code && min_synced(ct) < (int64_t)round) {
		for (uint32_t i = 0; i < ct->n; i++) {
			if (ct->ch[i].closed && ct->ch[i].synced < (int64_t)round) {
				snprintf(err, errlen, "data channel %u closed before round %u ended",
					 i, round);
				ret = -EPIPE;
				goto out;
			}
		}
		if (pthread_cond_timedwait(&ct->cv, &ct->mu, &dl) == ETIMEDOUT &&
		    min_synced(ct) < (int64_t)round) {
			snprintf(err, errlen, "data channels: round %u did not end within %d ms",
				 round, ct->timeout_ms);
			ret = -ETIMEDOUT;
			goto out;
		}
	}
	if (ct->err_code) {
		snprintf(err, errlen, "%s", ct->err);
		ret = ct->err_code;
	}
out:
	pthread_mutex_unlock(&ct->mu);
	return ret;
}

void chan_tgt_totals(struct chan_tgt *ct, struct chan_totals *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&ct->mu);
	for (uint32_t i = 0; i < ct->n; i++) {
		t->bytes += ct->ch[i].bytes;
		t->normal += ct->ch[i].normal;
		t->zero += ct->ch[i].zero;
	}
	pthread_mutex_unlock(&ct->mu);
}

void chan_tgt_close(struct chan_tgt *ct)
{
	if (!ct)
		return;
	pthread_mutex_lock(&ct->mu);
	ct->quit = true;
	for (uint32_t i = 0; i < ct->n; i++)
		stream_shutdown(&ct->ch[i].s);
	pthread_cond_broadcast(&ct->cv);
	pthread_mutex_unlock(&ct->mu);
	pool_join(&ct->pool);
	for (uint32_t i = 0; i < ct->n; i++)
		stream_close(&ct->ch[i].s);
	pthread_cond_destroy(&ct->cv);
	pthread_mutex_destroy(&ct->mu);
	free(ct);
}
