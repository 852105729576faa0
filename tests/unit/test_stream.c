/* Stream framing, HELLO and PAGES decoding (round trips, malformed and
 * truncated input), bitmap helpers, and the I/O layer over a socketpair. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/ram/bitmap.h"
#include "migrate/proto/stream.h"

static char err[512];

static void test_preamble(void **state)
{
	uint8_t b[STREAM_PREAMBLE_LEN];

	(void)state;
	stream_preamble_encode(b);
	assert_int_equal(stream_preamble_decode(b, err, sizeof(err)), 0);
	le_put32(b + 8, 2);
	assert_int_equal(stream_preamble_decode(b, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "version 2"));
	b[0] = 'X';
	assert_int_equal(stream_preamble_decode(b, err, sizeof(err)), -EPROTO);
}

static void test_hdr(void **state)
{
	uint8_t b[STREAM_HDR_LEN];
	struct stream_hdr h;

	(void)state;
	stream_hdr_encode(b, ST_END, END_LEN);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), 0);
	assert_int_equal(h.type, ST_END);
	assert_int_equal(h.len, END_LEN);
	stream_hdr_encode(b, 0, 0);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, 99, 0);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_END, END_LEN + 1);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_STATE, STATE_MAX_LEN + 1);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_PAGES, 0xffffffffu);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_COMMIT, 1);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	/* Data-channel frames: exact small sizes, nothing bigger. */
	stream_hdr_encode(b, ST_SYNC, SYNC_LEN);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), 0);
	assert_string_equal(stream_type_name(h.type), "SYNC");
	stream_hdr_encode(b, ST_SYNC, SYNC_LEN + 1);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_CHANNEL, CHANNEL_LEN + 1);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
	stream_hdr_encode(b, ST_CHANNELS, CHANNELS_LEN);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), 0);
	stream_hdr_encode(b, ST_TYPE_MAX + 1, 0);
	assert_int_equal(stream_hdr_decode(b, &h, err, sizeof(err)), -EPROTO);
}

static struct hello sample_hello(const uint8_t *compat, uint32_t clen)
{
	struct hello h = { .version = STREAM_VERSION, .flags = HELLO_FLAG_VERIFY_RAM,
			   .mem_size = 256ULL << 20, .ncpus = 2, .pid = 1234,
			   .page_size = 4096, .compat = compat, .compat_len = clen };

	strcpy(h.name, "vm-1.a_b");
	return h;
}

static void test_hello_round_trip(void **state)
{
	uint8_t compat[72] = { 0 }, buf[HELLO_FIXED_LEN + 72];
	struct hello h = sample_hello(compat, sizeof(compat)), d;
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(compat); i++)
		compat[i] = (uint8_t)i;
	n = stream_hello_encode(&h, buf, sizeof(buf));
	assert_int_equal(n, HELLO_FIXED_LEN + 72);
	assert_int_equal(stream_hello_decode(buf, (size_t)n, &d, err, sizeof(err)), 0);
	assert_int_equal(d.mem_size, h.mem_size);
	assert_int_equal(d.ncpus, 2);
	assert_int_equal(d.pid, 1234);
	assert_int_equal(d.flags, HELLO_FLAG_VERIFY_RAM);
	assert_string_equal(d.name, "vm-1.a_b");
	assert_int_equal(d.compat_len, 72);
	assert_memory_equal(d.compat, compat, 72);
	assert_int_equal(stream_hello_encode(&h, buf, 10), -EINVAL);
}

static void test_hello_malformed(void **state)
{
	uint8_t buf[HELLO_FIXED_LEN + 8];
	struct hello h = sample_hello(NULL, 0), d;
	int n;

	(void)state;
	n = stream_hello_encode(&h, buf, sizeof(buf));
	/* truncated */
	for (int cut = 0; cut < n; cut += 7)
		assert_true(stream_hello_decode(buf, (size_t)cut, &d, err, sizeof(err)) < 0);
	/* wrong version, page size, sizes, counts, name, compat length */
	struct { size_t off; uint32_t v; const char *msg; } bad[] = {
		{ 0, 2, "version" }, { 24, 8192, "page size" }, { 16, 0, "vCPUs" },
		{ 16, 100000, "vCPUs" }, { 92, 5, "CPU description" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t c[sizeof(buf)];

		memcpy(c, buf, sizeof(c));
		le_put32(c + bad[i].off, bad[i].v);
		assert_true(stream_hello_decode(c, (size_t)n, &d, err, sizeof(err)) < 0);
		assert_non_null(strstr(err, bad[i].msg));
	}
	uint8_t c[sizeof(buf)];

	memcpy(c, buf, sizeof(c));
	le_put64(c + 8, 12345); /* RAM not a page multiple */
	assert_true(stream_hello_decode(c, (size_t)n, &d, err, sizeof(err)) < 0);
	le_put64(c + 8, 1ULL << 50);
	assert_true(stream_hello_decode(c, (size_t)n, &d, err, sizeof(err)) < 0);
	memcpy(c, buf, sizeof(c));
	memset(c + 28, 'a', HELLO_NAME_LEN); /* no NUL */
	assert_true(stream_hello_decode(c, (size_t)n, &d, err, sizeof(err)) < 0);
	memcpy(c, buf, sizeof(c));
	c[28] = '/';
	assert_true(stream_hello_decode(c, (size_t)n, &d, err, sizeof(err)) < 0);
}

static size_t pages_frame(uint8_t *b, const struct page_run *r, uint32_t n, uint64_t data)
{
	le_put32(b, n);
	le_put32(b + 4, 0);
	for (uint32_t i = 0; i < n; i++)
		stream_run_encode(b + PAGES_HDR_LEN + i * PAGE_RUN_LEN, &r[i]);
	return PAGES_HDR_LEN + n * PAGE_RUN_LEN + data * 4096;
}

static void test_pages_decode(void **state)
{
	static struct page_run out[PAGES_MAX_RUNS];
	uint8_t b[PAGES_HDR_LEN + 4 * PAGE_RUN_LEN];
	struct page_run r[3] = { { 0, 3, PAGE_RUN_NORMAL }, { 10, 100, PAGE_RUN_ZERO },
				 { 1023, 1, PAGE_RUN_NORMAL } };
	uint64_t data;
	size_t len = pages_frame(b, r, 3, 4);

	(void)state;
	assert_int_equal(stream_pages_decode(b, len, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), 3);
	assert_int_equal(data, 4);
	assert_int_equal(out[1].first, 10);
	assert_int_equal(out[1].count, 100);
	assert_int_equal(out[1].kind, PAGE_RUN_ZERO);
	/* length must match the runs exactly */
	assert_int_equal(stream_pages_decode(b, len - 1, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -EPROTO);
	assert_int_equal(stream_pages_decode(b, len + 4096, 1024, out, PAGES_MAX_RUNS, &data, NULL,
					     err, sizeof(err)), -EPROTO);
	/* a run past the end of RAM, an overflowing run, an empty run */
	struct page_run past[1] = { { 1023, 2, PAGE_RUN_NORMAL } };
	len = pages_frame(b, past, 1, 2);
	assert_int_equal(stream_pages_decode(b, len, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -ERANGE);
	struct page_run wrap[1] = { { UINT64_MAX - 1, 4, PAGE_RUN_ZERO } };
	len = pages_frame(b, wrap, 1, 0);
	assert_int_equal(stream_pages_decode(b, len, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -ERANGE);
	struct page_run empty[1] = { { 5, 0, PAGE_RUN_ZERO } };
	len = pages_frame(b, empty, 1, 0);
	assert_int_equal(stream_pages_decode(b, len, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -ERANGE);
	struct page_run kind[1] = { { 5, 1, 7 } };
	len = pages_frame(b, kind, 1, 0);
	assert_int_equal(stream_pages_decode(b, len, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -EPROTO);
	/* too many runs, zero runs, too much data */
	le_put32(b, PAGES_MAX_RUNS + 1);
	assert_int_equal(stream_pages_decode(b, sizeof(b), 1024, out, PAGES_MAX_RUNS, &data, NULL,
					     err, sizeof(err)), -EPROTO);
	le_put32(b, 0);
	assert_int_equal(stream_pages_decode(b, sizeof(b), 1024, out, PAGES_MAX_RUNS, &data, NULL,
					     err, sizeof(err)), -EPROTO);
	struct page_run big[1] = { { 0, PAGES_MAX_DATA_PAGES + 1, PAGE_RUN_NORMAL } };
	len = pages_frame(b, big, 1, PAGES_MAX_DATA_PAGES + 1);
	assert_int_equal(stream_pages_decode(b, len, 1ULL << 20, out, PAGES_MAX_RUNS, &data, NULL,
					     err, sizeof(err)), -EPROTO);
	assert_int_equal(stream_pages_decode(b, 4, 1024, out, PAGES_MAX_RUNS, &data, NULL, err,
					     sizeof(err)), -EPROTO);
}

static void test_io_socketpair(void **state)
{
	int sv[2];
	struct stream a = { .cancel_fd = -1, .intr_fd = -1 }, b = { .cancel_fd = -1, .intr_fd = -1 };
	uint8_t page[3][4096], got[3][4096], tok[8];
	struct iovec iov[3], riov[3];
	uint32_t len;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	transport_wrap_fd(&a.conn, sv[0], TRANSPORT_UNIX);
	transport_wrap_fd(&b.conn, sv[1], TRANSPORT_UNIX);
	a.timeout_ms = b.timeout_ms = 1000;
	for (int i = 0; i < 3; i++) {
		memset(page[i], 'a' + i, 4096);
		iov[i] = (struct iovec){ page[i], 4096 };
		riov[i] = (struct iovec){ got[i], 4096 };
	}
	assert_int_equal(stream_send(&a, ST_PING, "12345678", 8, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_expect(&b, ST_PING, tok, 8, &len, "peer", err,
					    sizeof(err)), 0);
	assert_memory_equal(tok, "12345678", 8);
	assert_int_equal(stream_writev_all(&a, iov, 3, err, sizeof(err)), 0);
	assert_int_equal(stream_readv_all(&b, riov, 3, err, sizeof(err)), 0);
	assert_memory_equal(got, page, sizeof(got));
	assert_int_equal(a.bytes_out, 16 + 3 * 4096);
	/* the peer's ERROR frame becomes our error text */
	assert_int_equal(stream_send_text(&a, ST_ERROR, "disk on fire\n"), 0);
	assert_int_equal(stream_recv_expect(&b, ST_READY, NULL, 0, NULL, "target", err,
					    sizeof(err)), -ECONNABORTED);
	assert_non_null(strstr(err, "target failed: disk on fire?"));
	/* wrong type, then truncation */
	assert_int_equal(stream_send(&a, ST_PONG, "x", 0, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_expect(&b, ST_READY, NULL, 0, NULL, "target", err,
					    sizeof(err)), -EPROTO);
	assert_int_equal(write(sv[0], "\x0a\x00", 2), 2);
	close(sv[0]);
	assert_int_equal(stream_recv_expect(&b, ST_READY, NULL, 0, NULL, "target", err,
					    sizeof(err)), -ECONNRESET);
	close(sv[1]);
}

/* A frame begun must end within frame_ms; once the bound is lifted (the
 * target's return path and main connection into post-copy), a frame read
 * long after the last bounded one is no longer held to that one's
 * deadline (it was: every post-copy switched 10 s after the start
 * failed on its first reply). */
static void test_frame_deadline(void **state)
{
	int sv[2];
	struct stream a = { .cancel_fd = -1, .intr_fd = -1 }, b = { .cancel_fd = -1, .intr_fd = -1 };
	struct stream_hdr h;
	uint8_t buf[8];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	transport_wrap_fd(&a.conn, sv[0], TRANSPORT_UNIX);
	transport_wrap_fd(&b.conn, sv[1], TRANSPORT_UNIX);
	a.timeout_ms = b.timeout_ms = 5000;
	stream_set_frame_ms(&b, 50);
	/* a header whose payload never comes: too slow, within the bound */
	assert_int_equal(stream_send(&a, ST_PING, "1234", 4, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_hdr(&b, &h, err, sizeof(err)), 0);
	assert_int_equal(stream_read_all(&b, buf, 8, err, sizeof(err)), -ETIMEDOUT);
	assert_non_null(strstr(err, "too slow"));
	assert_int_equal(stream_read_all(&b, buf, 4, err, sizeof(err)), -ETIMEDOUT);
	/* lifted by the setter: a later frame reads whole */
	stream_set_frame_ms(&b, 0);
	usleep(100 * 1000);
	assert_int_equal(stream_send(&a, ST_PING, "abcd", 4, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_hdr(&b, &h, err, sizeof(err)), 0);
	assert_int_equal(stream_read_all(&b, buf, 4, err, sizeof(err)), 0);
	assert_memory_equal(buf, "abcd", 4);
	/* bounded again, then lifted by hand: the next header clears it */
	stream_set_frame_ms(&b, 50);
	assert_int_equal(stream_send(&a, ST_PING, "", 0, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_hdr(&b, &h, err, sizeof(err)), 0);
	b.frame_ms = 0;
	usleep(100 * 1000);
	assert_int_equal(stream_send(&a, ST_PING, "wxyz", 4, err, sizeof(err)), 0);
	assert_int_equal(stream_recv_hdr(&b, &h, err, sizeof(err)), 0);
	assert_int_equal(h.len, 4);
	assert_int_equal(stream_read_all(&b, buf, 4, err, sizeof(err)), 0);
	assert_memory_equal(buf, "wxyz", 4);
	close(sv[0]);
	close(sv[1]);
}

static void test_bitmap(void **state)
{
	uint64_t bm[4] = { 0 };

	(void)state;
	assert_int_equal(bm_words(0), 0);
	assert_int_equal(bm_words(65), 2);
	bm_set_range(bm, 3, 130);
	assert_int_equal(bm_count(bm, 256), 130);
	assert_int_equal(bm_count(bm, 100), 97);
	assert_true(bm_test(bm, 3) && bm_test(bm, 132) && !bm_test(bm, 133) && !bm_test(bm, 2));
	assert_int_equal(bm_next_set(bm, 256, 0), 3);
	assert_int_equal(bm_next_clear(bm, 256, 3), 133);
	assert_int_equal(bm_next_set(bm, 256, 133), 256);
	assert_int_equal(bm_next_set(bm, 100, 99), 99);
	assert_int_equal(bm_next_clear(bm, 100, 50), 100);
	bm_clear_range(bm, 60, 10);
	assert_int_equal(bm_next_clear(bm, 256, 3), 60);
	assert_int_equal(bm_next_set(bm, 256, 60), 70);
	assert_int_equal(bm_count(bm, 256), 120);
	bm_clear(bm, 70);
	assert_false(bm_test(bm, 70));
	bm_set(bm, 255);
	assert_int_equal(bm_next_set(bm, 256, 133), 255);
	/* The atomic range set gives the same bits as the plain one. */
	{
		uint64_t a[4] = { 0 }, b[4] = { 0 };

		for (uint64_t f = 0; f < 70; f += 7)
			for (uint64_t n = 0; n + f <= 256; n += 61) {
				bm_set_range(a, f, n);
				bm_set_range_atomic(b, f, n);
				assert_memory_equal(a, b, sizeof(a));
			}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_preamble),
		cmocka_unit_test(test_hdr),
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_malformed),
		cmocka_unit_test(test_pages_decode),
		cmocka_unit_test(test_io_socketpair),
		cmocka_unit_test(test_frame_deadline),
		cmocka_unit_test(test_bitmap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
