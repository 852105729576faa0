/* The keyed handshake and the frame MACs over socketpairs: both ends
 * derive one session (fresh per handshake), a wrong key fails on both
 * sides with its reason, keyed/keyless mismatches are refused; a frame
 * with one flipped byte, a repeated frame, a frame reflected back and a
 * frame moved to another channel are refused; integrity off leaves PAGES
 * untagged and everything else tagged; key files are checked. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/auth/handshake.h"
#include "migrate/proto/framemac.h"

static char err[512];

static void pair(struct stream *a, struct stream *b)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	stream_reset(a);
	stream_reset(b);
	transport_wrap_fd(&a->conn, sv[0], TRANSPORT_UNIX);
	transport_wrap_fd(&b->conn, sv[1], TRANSPORT_UNIX);
	a->timeout_ms = b->timeout_ms = 2000;
}

static void key_of(struct auth_key *k, uint8_t v)
{
	memset(k, 0, sizeof(*k));
	k->set = v != 0;
	memset(k->k, v, sizeof(k->k));
	snprintf(k->path, sizeof(k->path), "key-%u", v);
}

struct src_run {
	struct stream *s;
	struct auth_key key;
	bool integrity;
	int ret;
	char err[512];
};

static void *src_main(void *arg)
{
	struct src_run *r = arg;

	r->ret = auth_source(r->s, &r->key, r->integrity, r->err, sizeof(r->err));
	return NULL;
}

/* auth_source in a thread against auth_target here; returns the target's
 * result, the source's in *sr. */
static int handshake(struct stream *a, struct stream *b, uint8_t ks, uint8_t kt,
		     bool integrity, struct src_run *sr)
{
	struct auth_key kk;
	uint8_t pre[STREAM_PREAMBLE_LEN];
	pthread_t th;
	int ret;

	pair(a, b);
	*sr = (struct src_run){ .s = a, .integrity = integrity };
	key_of(&sr->key, ks);
	key_of(&kk, kt);
	assert_int_equal(pthread_create(&th, NULL, src_main, sr), 0);
	ret = stream_read_all(b, pre, sizeof(pre), err, sizeof(err));
	if (!ret)
		ret = auth_target(b, pre, &kk, err, sizeof(err));
	if (ret)
		stream_shutdown(b); /* the source may wait for more */
	pthread_join(th, NULL);
	return ret;
}

static void test_handshake_same_key(void **state)
{
	struct stream a, b, c, d;
	struct src_run sr, sr2;
	uint8_t s1[SHA256_LEN];

	(void)state;
	assert_int_equal(handshake(&a, &b, 7, 7, true, &sr), 0);
	assert_int_equal(sr.ret, 0);
	assert_non_null(stream_mac_session(&a));
	assert_memory_equal(stream_mac_session(&a), stream_mac_session(&b), SHA256_LEN);
	assert_true(stream_mac_integrity(&b));
	memcpy(s1, stream_mac_session(&a), SHA256_LEN);
	/* a frame each way under the session's keys */
	assert_int_equal(stream_send(&a, ST_PING, "12345678", 8, err, sizeof(err)), 0);
	{
		uint8_t tok[8];
		uint32_t len;

		assert_int_equal(stream_recv_expect(&b, ST_PING, tok, 8, &len, "source", err,
						    sizeof(err)), 0);
		assert_int_equal(stream_send(&b, ST_PONG, tok, 8, err, sizeof(err)), 0);
		assert_int_equal(stream_recv_expect(&a, ST_PONG, tok, 8, &len, "target", err,
						    sizeof(err)), 0);
		assert_memory_equal(tok, "12345678", 8);
	}
	/* fresh nonces: the next session is another one */
	assert_int_equal(handshake(&c, &d, 7, 7, false, &sr2), 0);
	assert_memory_not_equal(s1, stream_mac_session(&c), SHA256_LEN);
	assert_false(stream_mac_integrity(&d));
	stream_close(&a);
	stream_close(&b);
	stream_close(&c);
	stream_close(&d);
}

static void test_handshake_mismatch(void **state)
{
	struct stream a, b;
	struct src_run sr;
	int ret;

	(void)state;
	ret = handshake(&a, &b, 7, 8, true, &sr);        /* wrong key */
	assert_int_equal(sr.ret, -EACCES);
	assert_non_null(strstr(sr.err, "the target failed authentication"));
	assert_int_equal(ret, -ECONNABORTED);
	assert_non_null(strstr(err, "authentication failed"));
	assert_null(stream_mac_session(&a));
	stream_close(&a);
	stream_close(&b);

	ret = handshake(&a, &b, 0, 8, true, &sr);        /* keyless source, keyed target */
	assert_int_equal(ret, -EACCES);
	assert_non_null(strstr(err, "without a migration key"));
	assert_int_equal(sr.ret, 0); /* it only wrote a preamble; the REJECT waits for it */
	stream_close(&a);
	stream_close(&b);

	ret = handshake(&a, &b, 7, 0, true, &sr);        /* keyed source, keyless target */
	assert_int_equal(ret, -EACCES);
	assert_non_null(strstr(err, "this target has none"));
	assert_int_equal(sr.ret, -ECONNABORTED);
	assert_non_null(strstr(sr.err, "this target has no migration key"));
	stream_close(&a);
	stream_close(&b);

	assert_int_equal(handshake(&a, &b, 0, 0, true, &sr), 0); /* keyless both: as before */
	assert_null(stream_mac_session(&b));
	stream_close(&a);
	stream_close(&b);
}

/* The proofs bind the whole transcript: any byte changes them. */
static void test_transcript_mac(void **state)
{
	uint8_t key[AUTH_KEY_LEN] = { 1 }, h[SHA256_LEN] = { 2 }, a[SHA256_LEN], b[SHA256_LEN];

	(void)state;
	auth_transcript_mac(key, "minivmm v1 target proof", h, a);
	auth_transcript_mac(key, "minivmm v1 target proof", h, b);
	assert_memory_equal(a, b, sizeof(a));
	h[31] ^= 1;
	auth_transcript_mac(key, "minivmm v1 target proof", h, b);
	assert_memory_not_equal(a, b, sizeof(a));
	h[31] ^= 1;
	auth_transcript_mac(key, "minivmm v1 source proof", h, b); /* no reflection */
	assert_memory_not_equal(a, b, sizeof(a));
	key[5] = 9;
	auth_transcript_mac(key, "minivmm v1 target proof", h, b);
	assert_memory_not_equal(a, b, sizeof(a));
}

/* Frames written by a keyed source end, captured raw. */
static size_t capture(struct stream *src, int raw_fd, uint8_t *buf, size_t cap,
		      uint32_t type, const void *payload, uint32_t len)
{
	ssize_t n;

	assert_int_equal(stream_send(src, type, payload, len, err, sizeof(err)), 0);
	n = read(raw_fd, buf, cap);
	assert_true(n > 0);
	return (size_t)n;
}

/* A receiver end (target side, channel chan) fed bytes by hand. */
static void receiver(struct stream *r, int *feed_fd, const uint8_t *session, uint32_t chan,
		     bool integrity)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	stream_reset(r);
	transport_wrap_fd(&r->conn, sv[1], TRANSPORT_UNIX);
	r->timeout_ms = 1000;
	*feed_fd = sv[0];
	assert_int_equal(stream_mac_enable(r, session, chan, false, integrity), 0);
}

static int recv_frame(struct stream *r, uint8_t *buf, size_t cap)
{
	struct stream_hdr h;
	int ret = stream_recv_hdr(r, &h, err, sizeof(err));

	if (!ret && h.len > cap)
		return -E2BIG;
	return ret ? ret : stream_read_all(r, buf, h.len, err, sizeof(err));
}

static void test_frame_mac(void **state)
{
	uint8_t session[SHA256_LEN], f[600], pages[8 + 16 + 4096], got[8 + 16 + 4096];
	struct stream s, raw, r;
	size_t n, np;
	int feed;

	(void)state;
	memset(session, 0x42, sizeof(session));
	pair(&s, &raw);
	assert_int_equal(stream_mac_enable(&s, session, FRAME_CHAN_MAIN, true, true), 0);
	memset(pages, 0, sizeof(pages));
	le_put32(pages, 1);
	le_put64(pages + 8, 3);
	le_put32(pages + 16, 1);
	memset(pages + 24, 0xab, 4096);

	/* intact: accepted, and the tag is 16 bytes after the frame */
	n = capture(&s, raw.conn.fd, f, sizeof(f), ST_ROUND, "\0\0\0\0\0\0\0\0", 8);
	assert_int_equal(n, 8 + 8 + FRAME_TAG_LEN);
	receiver(&r, &feed, session, FRAME_CHAN_MAIN, true);
	assert_int_equal(write(feed, f, n), (ssize_t)n);
	assert_int_equal(recv_frame(&r, got, sizeof(got)), 0);
	/* the same frame again (a replay): its sequence number is past */
	assert_int_equal(write(feed, f, n), (ssize_t)n);
	assert_int_equal(recv_frame(&r, got, sizeof(got)), -EBADMSG);
	assert_non_null(strstr(err, "integrity check"));
	stream_close(&r);
	close(feed);

	/* one flipped byte anywhere in a PAGES frame: refused */
	{
		uint8_t big[sizeof(pages) + 64];

		assert_int_equal(stream_send(&s, ST_PAGES, pages, sizeof(pages), err, sizeof(err)), 0);
		np = 0;
		while (np < 8 + sizeof(pages) + FRAME_TAG_LEN) {
			ssize_t k = read(raw.conn.fd, big + np, sizeof(big) - np);

			assert_true(k > 0);
			np += (size_t)k;
		}
		assert_int_equal(np, 8 + sizeof(pages) + FRAME_TAG_LEN);
		for (size_t at = 100; at < np; at += 1500) {
			receiver(&r, &feed, session, FRAME_CHAN_MAIN, true);
			r.mac->rx_seq = 1; /* the second frame the source sent */
			big[at] ^= 0x04;
			assert_int_equal(write(feed, big, np), (ssize_t)np);
			assert_int_equal(recv_frame(&r, got, sizeof(got)), -EBADMSG);
			big[at] ^= 0x04;
			stream_close(&r);
			close(feed);
		}
		/* unflipped, it passes; on another channel's key it does not */
		receiver(&r, &feed, session, FRAME_CHAN_MAIN, true);
		r.mac->rx_seq = 1;
		assert_int_equal(write(feed, big, np), (ssize_t)np);
		assert_int_equal(recv_frame(&r, got, sizeof(got)), 0);
		assert_memory_equal(got, pages, sizeof(pages));
		stream_close(&r);
		close(feed);
		receiver(&r, &feed, session, FRAME_CHAN_MAIN + 1, true);
		r.mac->rx_seq = 1;
		assert_int_equal(write(feed, big, np), (ssize_t)np);
		assert_int_equal(recv_frame(&r, got, sizeof(got)), -EBADMSG);
		stream_close(&r);
		close(feed);
	}
	/* reflected: the source's own frame fed back to a source end */
	n = capture(&s, raw.conn.fd, f, sizeof(f), ST_READY, NULL, 0);
	{
		int sv[2];
		struct stream back;

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		stream_reset(&back);
		transport_wrap_fd(&back.conn, sv[1], TRANSPORT_UNIX);
		back.timeout_ms = 1000;
		assert_int_equal(stream_mac_enable(&back, session, FRAME_CHAN_MAIN, true, true), 0);
		back.mac->rx_seq = 2;
		assert_int_equal(write(sv[0], f, n), (ssize_t)n);
		assert_int_equal(recv_frame(&back, got, sizeof(got)), -EBADMSG);
		stream_close(&back);
		close(sv[0]);
	}
	stream_close(&s);
	stream_close(&raw);
}

/* integrity off: PAGES go untagged (a flip is not seen), ROUND keeps its tag. */
static void test_integrity_off(void **state)
{
	uint8_t session[SHA256_LEN], pages[8 + 16 + 4096], big[8 + sizeof(pages) + 64], got[sizeof(pages)];
	uint8_t f[64];
	struct stream s, raw, r;
	size_t np = 0, n;
	int feed;

	(void)state;
	memset(session, 0x17, sizeof(session));
	memset(pages, 0, sizeof(pages));
	pair(&s, &raw);
	assert_int_equal(stream_mac_enable(&s, session, FRAME_CHAN_MAIN, true, false), 0);
	assert_int_equal(stream_send(&s, ST_PAGES, pages, sizeof(pages), err, sizeof(err)), 0);
	while (np < 8 + sizeof(pages)) {
		ssize_t k = read(raw.conn.fd, big + np, sizeof(big) - np);

		assert_true(k > 0);
		np += (size_t)k;
	}
	assert_int_equal(np, 8 + sizeof(pages));
	n = capture(&s, raw.conn.fd, f, sizeof(f), ST_ROUND, "\1\0\0\0\0\0\0\0", 8);
	assert_int_equal(n, 16 + FRAME_TAG_LEN);
	receiver(&r, &feed, session, FRAME_CHAN_MAIN, false);
	big[500] ^= 1;
	f[9] ^= 1;
	assert_int_equal(write(feed, big, np), (ssize_t)np);
	assert_int_equal(write(feed, f, n), (ssize_t)n);
	assert_int_equal(recv_frame(&r, got, sizeof(got)), 0);
	assert_int_equal(recv_frame(&r, got, sizeof(got)), -EBADMSG);
	stream_close(&r);
	close(feed);
	stream_close(&s);
	stream_close(&raw);
}

static void test_key_files(void **state)
{
	char dir[] = "/tmp/test_auth_XXXXXX", path[300];
	struct auth_key k;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k", dir);
	assert_int_equal(auth_key_generate(path, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, AUTH_KEY_LEN);
	assert_int_equal(auth_key_generate(path, err, sizeof(err)), -EEXIST);
	assert_int_equal(auth_key_load(path, &k, err, sizeof(err)), 0);
	assert_true(k.set);
	chmod(path, 0640);
	assert_int_equal(auth_key_load(path, &k, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	chmod(path, 0600);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(auth_key_load(path, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exactly 32"));
	{
		char link[300];

		snprintf(link, sizeof(link), "%s/l", dir);
		snprintf(path, sizeof(path), "%s/k", dir);
		assert_int_equal(symlink(path, link), 0);
		assert_int_equal(auth_key_load(link, &k, err, sizeof(err)), -ELOOP);
		assert_non_null(strstr(err, "symbolic link"));
		unlink(link);
	}
	/* the default path follows MINIVMM_KEY_DIR, and is used only when there */
	setenv("MINIVMM_KEY_DIR", dir, 1);
	assert_int_equal(auth_key_resolve("", &k, err, sizeof(err)), 0);
	assert_false(k.set);
	snprintf(path, sizeof(path), "%s/migrate.key", dir);
	assert_int_equal(auth_key_generate(path, err, sizeof(err)), 0);
	assert_int_equal(auth_key_resolve("", &k, err, sizeof(err)), 0);
	assert_true(k.set);
	assert_string_equal(k.path, path);
	unsetenv("MINIVMM_KEY_DIR");
	unlink(path);
	snprintf(path, sizeof(path), "%s/k", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_same_key),
		cmocka_unit_test(test_handshake_mismatch),
		cmocka_unit_test(test_transcript_mac),
		cmocka_unit_test(test_frame_mac),
		cmocka_unit_test(test_integrity_off),
		cmocka_unit_test(test_key_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
