#include "migrate/auth/handshake.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "migrate/auth/hmac.h"
#include "migrate/auth/random.h"
#include "migrate/proto/framemac.h"
#include "vmm/core/clock.h"

#define AUTH_VERSION 1u
#define L_TARGET "minivmm v1 target proof"
#define L_SOURCE "minivmm v1 source proof"
#define L_SESSION "minivmm v1 session"

void auth_transcript_mac(const uint8_t key[AUTH_KEY_LEN], const char *label,
			 const uint8_t hash[SHA256_LEN], uint8_t out[SHA256_LEN])
{
	uint8_t msg[64];
	size_t n = strlen(label);

	memcpy(msg, label, n);
	memcpy(msg + n, hash, SHA256_LEN);
	hmac_sha256(key, AUTH_KEY_LEN, msg, n + SHA256_LEN, out);
}

/* The MAC over the transcript so far; t goes on. */
static void proof(const struct sha256 *t, const uint8_t key[AUTH_KEY_LEN], const char *label,
		  uint8_t out[SHA256_LEN])
{
	struct sha256 c = *t;
	uint8_t h[SHA256_LEN];

	sha256_final(&c, h);
	auth_transcript_mac(key, label, h, out);
}

static void frame_hash(struct sha256 *t, uint32_t type, const uint8_t *payload, uint32_t len)
{
	uint8_t hdr[STREAM_HDR_LEN];

	stream_hdr_encode(hdr, type, len);
	sha256_update(t, hdr, sizeof(hdr));
	sha256_update(t, payload, len);
}

static int keys_on(struct stream *s, const struct sha256 *t, const uint8_t key[AUTH_KEY_LEN],
		   bool source, bool integrity, char *err, size_t errlen)
{
	uint8_t session[SHA256_LEN];
	int ret;

	proof(t, key, L_SESSION, session);
	ret = stream_mac_enable(s, session, FRAME_CHAN_MAIN, source, integrity);
	auth_wipe(session, sizeof(session));
	if (ret)
		snprintf(err, errlen, "frame MAC state: out of memory");
	return ret;
}

int auth_source(struct stream *s, const struct auth_key *key, bool integrity, char *err,
		size_t errlen)
{
	uint8_t pre[STREAM_PREAMBLE_LEN], hello[AUTH_HELLO_LEN], ch[AUTH_CHALLENGE_LEN];
	uint8_t want[SHA256_LEN], mine[SHA256_LEN];
	uint32_t flags = integrity ? AUTH_FLAG_INTEGRITY : 0, len;
	struct sha256 t;
	int ret;

	stream_preamble_encode_flags(pre, key->set ? PREAMBLE_FLAG_AUTH : 0);
	ret = stream_write_all(s, pre, sizeof(pre), err, errlen);
	if (ret || !key->set)
		return ret;
	sha256_init(&t);
	sha256_update(&t, pre, sizeof(pre));
	le_put32(hello, AUTH_VERSION);
	le_put32(hello + 4, flags);
	ret = auth_random(hello + 8, AUTH_NONCE_LEN, err, errlen);
	if (!ret)
		ret = stream_send(s, ST_AUTH_HELLO, hello, sizeof(hello), err, errlen);
	if (!ret)
		ret = stream_recv_expect(s, ST_AUTH_CHALLENGE, ch, sizeof(ch), &len, "target",
					 err, errlen);
	if (ret)
		return ret;
	frame_hash(&t, ST_AUTH_HELLO, hello, sizeof(hello));
	if (len != sizeof(ch) || le_get32(ch) != AUTH_VERSION || le_get32(ch + 4) != flags) {
		snprintf(err, errlen, "the target's authentication reply is not valid");
		stream_send_text(s, ST_ERROR, "authentication failed: a bad AUTH_CHALLENGE");
		return -EPROTO;
	}
	/* The target's proof covers its own frame up to the proof. */
	{
		uint8_t hdr[STREAM_HDR_LEN];

		stream_hdr_encode(hdr, ST_AUTH_CHALLENGE, len);
		sha256_update(&t, hdr, sizeof(hdr));
		sha256_update(&t, ch, 8 + AUTH_NONCE_LEN);
	}
	proof(&t, key->k, L_TARGET, want);
	if (!auth_ct_equal(want, ch + 8 + AUTH_NONCE_LEN, AUTH_MAC_LEN)) {
		snprintf(err, errlen, "the target failed authentication: it does not hold this "
			 "migration key (%s); nothing was sent to it", key->path);
		stream_send_text(s, ST_ERROR, "authentication failed: the source does not accept "
				 "this target's proof (the keys differ)");
		return -EACCES;
	}
	sha256_update(&t, ch + 8 + AUTH_NONCE_LEN, AUTH_MAC_LEN);
	proof(&t, key->k, L_SOURCE, mine);
	ret = stream_send(s, ST_AUTH_PROOF, mine, sizeof(mine), err, errlen);
	if (ret)
		return ret;
	frame_hash(&t, ST_AUTH_PROOF, mine, sizeof(mine));
	return keys_on(s, &t, key->k, true, integrity, err, errlen);
}

/* After a refusal: what the peer already sent is read and dropped (a
 * close with unread data resets the connection, and the peer would never
 * see the refusal), for at most 300 ms and 64 KiB. */
static void linger(struct stream *s)
{
	uint64_t end = clock_now_ns() + 300u * 1000000u;
	uint8_t buf[2048];
	size_t total = 0;

	if (!s->conn.is_stream_socket)
		return;
	shutdown(s->conn.fd, SHUT_WR);
	while (total < 65536) {
		uint64_t now = clock_now_ns();
		struct pollfd p = { .fd = s->conn.fd, .events = POLLIN };
		ssize_t n;

		if (now >= end || poll(&p, 1, (int)((end - now) / 1000000u) + 1) <= 0)
			break;
		n = recv(s->conn.fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		total += (size_t)n;
	}
}

static int refuse(struct stream *s, int code, const char *to_peer, const char *why, char *err,
		  size_t errlen)
{
	stream_send_text(s, ST_REJECT, to_peer);
	linger(s);
	snprintf(err, errlen, "%s", why);
	return code;
}

int auth_target(struct stream *s, const uint8_t pre[STREAM_PREAMBLE_LEN],
		const struct auth_key *key, char *err, size_t errlen)
{
	uint8_t hello[AUTH_HELLO_LEN], ch[AUTH_CHALLENGE_LEN], theirs[AUTH_PROOF_LEN];
	uint8_t want[SHA256_LEN];
	bool keyed = stream_preamble_flags(pre) & PREAMBLE_FLAG_AUTH;
	uint32_t len, flags;
	struct sha256 t;
	int ret;

	if (keyed && !key->set)
		return refuse(s, -EACCES, "this target has no migration key: start it with "
			      "--migrate-key FILE (the source has one)",
			      "a source with a migration key: this target has none (--migrate-key)",
			      err, errlen);
	if (!keyed && key->set)
		return refuse(s, -EACCES, "this target requires an authenticated migration: "
			      "give the source --migrate-key FILE",
			      "a source without a migration key (this target requires one)",
			      err, errlen);
	if (!keyed)
		return 0;
	sha256_init(&t);
	sha256_update(&t, pre, STREAM_PREAMBLE_LEN);
	ret = stream_recv_expect(s, ST_AUTH_HELLO, hello, sizeof(hello), &len, "source",
				 err, errlen);
	if (ret)
		return ret;
	if (len != sizeof(hello) || le_get32(hello) != AUTH_VERSION ||
	    (le_get32(hello + 4) & ~AUTH_FLAG_INTEGRITY))
		return refuse(s, -EPROTO, "authentication failed: a bad AUTH_HELLO",
			      "a bad AUTH_HELLO", err, errlen);
	flags = le_get32(hello + 4);
	frame_hash(&t, ST_AUTH_HELLO, hello, sizeof(hello));
	le_put32(ch, AUTH_VERSION);
	le_put32(ch + 4, flags);
	ret = auth_random(ch + 8, AUTH_NONCE_LEN, err, errlen);
	if (ret)
		return ret;
	{
		uint8_t hdr[STREAM_HDR_LEN];

		stream_hdr_encode(hdr, ST_AUTH_CHALLENGE, sizeof(ch));
		sha256_update(&t, hdr, sizeof(hdr));
		sha256_update(&t, ch, 8 + AUTH_NONCE_LEN);
	}
	proof(&t, key->k, L_TARGET, ch + 8 + AUTH_NONCE_LEN);
	sha256_update(&t, ch + 8 + AUTH_NONCE_LEN, AUTH_MAC_LEN);
	ret = stream_send(s, ST_AUTH_CHALLENGE, ch, sizeof(ch), err, errlen);
	if (!ret)
		ret = stream_recv_expect(s, ST_AUTH_PROOF, theirs, sizeof(theirs), &len, "source",
					 err, errlen);
	if (ret)
		return ret;
	proof(&t, key->k, L_SOURCE, want);
	if (len != sizeof(theirs) || !auth_ct_equal(want, theirs, AUTH_MAC_LEN))
		return refuse(s, -EACCES, "authentication failed",
			      "authentication failed: the source's proof is wrong (another key, "
			      "or a replayed handshake)", err, errlen);
	frame_hash(&t, ST_AUTH_PROOF, theirs, sizeof(theirs));
	return keys_on(s, &t, key->k, false, flags & AUTH_FLAG_INTEGRITY, err, errlen);
}
