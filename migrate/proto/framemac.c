#include "migrate/proto/framemac.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/proto/stream.h"

static void derive(struct hmac_key *k, const uint8_t session[SHA256_LEN], uint32_t chan,
		   bool from_source)
{
	static const char label[] = "minivmm v1 frame key";
	uint8_t msg[sizeof(label) + 5], key[SHA256_LEN];

	memcpy(msg, label, sizeof(label));
	msg[sizeof(label)] = from_source ? 'S' : 'T';
	le_put32(msg + sizeof(label) + 1, chan);
	hmac_sha256(session, SHA256_LEN, msg, sizeof(msg), key);
	hmac_key_init(k, key, sizeof(key));
	auth_wipe(key, sizeof(key));
}

struct stream_mac *framemac_new(const uint8_t session[SHA256_LEN], uint32_t chan, bool source,
				bool integrity)
{
	struct stream_mac *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	derive(&m->tx, session, chan, source);
	derive(&m->rx, session, chan, !source);
	memcpy(m->session, session, SHA256_LEN);
	m->source = source;
	m->integrity = integrity;
	return m;
}

void framemac_free(struct stream_mac *m)
{
	if (!m)
		return;
	free(m->bounce);
	auth_wipe(m, sizeof(*m));
	free(m);
}

static void start(struct hmac *h, const struct hmac_key *k, uint64_t seq)
{
	uint8_t s[8];

	le_put64(s, seq);
	hmac_start(h, k);
	hmac_update(h, s, sizeof(s));
}

static void finish(struct hmac *h, uint8_t tag[FRAME_TAG_LEN])
{
	uint8_t full[SHA256_LEN];

	hmac_final(h, full);
	memcpy(tag, full, FRAME_TAG_LEN);
}

void framemac_tag_once(const uint8_t session[SHA256_LEN], uint32_t chan, bool from_source,
		       uint64_t seq, const void *frame, size_t len, uint8_t tag[FRAME_TAG_LEN])
{
	struct hmac_key k;
	struct hmac h;

	derive(&k, session, chan, from_source);
	start(&h, &k, seq);
	hmac_update(&h, frame, len);
	finish(&h, tag);
	auth_wipe(&k, sizeof(k));
}

static bool is_tagged(const struct stream_mac *m, uint32_t type)
{
	return m->integrity || type != ST_PAGES;
}

int framemac_tx(struct stream_mac *m, const struct iovec *iov, int iovcnt, struct iovec *out,
		char *err, size_t errlen)
{
	uint8_t hdr[STREAM_HDR_LEN];
	size_t total = 0, got = 0;
	struct hmac h;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	for (int i = 0; i < iovcnt && got < sizeof(hdr); i++) {
		size_t k = iov[i].iov_len < sizeof(hdr) - got ? iov[i].iov_len : sizeof(hdr) - got;

		if (k)
			memcpy(hdr + got, iov[i].iov_base, k);
		got += k;
	}
	if (got < sizeof(hdr) || total != sizeof(hdr) + le_get32(hdr + 4)) {
		snprintf(err, errlen, "internal: a write with a frame MAC is not one whole frame");
		return -EINVAL;
	}
	if (!is_tagged(m, le_get32(hdr))) {
		m->tx_seq++;
		return 1;
	}
	if (m->bounce_cap < total + FRAME_TAG_LEN) {
		uint8_t *b = realloc(m->bounce, total + FRAME_TAG_LEN);

		if (!b) {
			snprintf(err, errlen, "frame MAC buffer: out of memory");
			return -ENOMEM;
		}
		m->bounce = b;
		m->bounce_cap = total + FRAME_TAG_LEN;
	}
	got = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(m->bounce + got, iov[i].iov_base, iov[i].iov_len);
		got += iov[i].iov_len;
	}
	start(&h, &m->tx, m->tx_seq++);
	hmac_update(&h, m->bounce, total);
	finish(&h, m->bounce + total);
	*out = (struct iovec){ .iov_base = m->bounce, .iov_len = total + FRAME_TAG_LEN };
	return 0;
}

void framemac_rx_feed(struct stream_mac *m, const struct iovec *iov, int iovcnt, size_t n)
{
	for (int i = 0; i < iovcnt && n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len < n ? iov[i].iov_len : n;

		n -= len;
		while (len) {
			size_t k;

			if (m->hdr_have < sizeof(m->hdr)) {
				if (m->hdr_have == 0)
					start(&m->h, &m->rx, m->rx_seq);
				k = sizeof(m->hdr) - m->hdr_have;
				if (k > len)
					k = len;
				memcpy(m->hdr + m->hdr_have, p, k);
				hmac_update(&m->h, p, k);
				m->hdr_have += (uint32_t)k;
				if (m->hdr_have == sizeof(m->hdr)) {
					m->remain = le_get32(m->hdr + 4);
					m->tagged = is_tagged(m, le_get32(m->hdr));
				}
			} else {
				k = len < m->remain ? len : m->remain;
				if (k == 0) {
					m->overrun = true;
					return;
				}
				if (m->tagged)
					hmac_update(&m->h, p, k);
				m->remain -= (uint32_t)k;
			}
			p += k;
			len -= k;
		}
	}
}

bool framemac_rx_done(const struct stream_mac *m)
{
	return m->overrun || (m->hdr_have == sizeof(m->hdr) && m->remain == 0);
}

bool framemac_rx_tagged(const struct stream_mac *m)
{
	return !m->overrun && m->tagged;
}

int framemac_rx_check(struct stream_mac *m, const uint8_t *tag, char *err, size_t errlen)
{
	uint8_t want[FRAME_TAG_LEN];
	uint32_t type = le_get32(m->hdr);
	bool ok = true;

	if (m->overrun) {
		snprintf(err, errlen, "internal: a read with a frame MAC crossed a frame's end");
		return -EINVAL;
	}
	if (m->tagged) {
		finish(&m->h, want);
		ok = tag && auth_ct_equal(want, tag, FRAME_TAG_LEN);
	}
	m->hdr_have = 0;
	m->rx_seq++;
	if (!ok) {
		snprintf(err, errlen, "frame %llu (%s) failed its integrity check (MAC): modified "
			 "or injected on the way, refused", (unsigned long long)(m->rx_seq - 1),
			 stream_type_name(type));
		return -EBADMSG;
	}
	return 0;
}
