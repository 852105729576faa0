/* Post-copy without KVM: the source's page server fed hostile page
 * requests over a socket pair (out of range, repeated, a flood: an
 * ERROR or nothing, never a crash, and the server goes on), the MISSING
 * bitmap both ways and against hostile slices, and the switch policy. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/mig.h"
#include "migrate/postcopy/pc_policy.h"
#include "migrate/postcopy/pc_source.h"
#include "migrate/postcopy/pc_source_int.h"
#include "migrate/postcopy/pc_wire.h"
#include "migrate/ram/bitmap.h"
#include "migrate/ram/xbzrle.h"
#include "migrate/section.h"
#include "migrate/transport/transport.h"
#include "vmm/core/vm.h"

#define NPAGES 200

struct fx {
	struct vm vm;
	struct mig *m;
	struct pc_src *pc;
	struct stream main, peer_rp, peer_main; /* the target's ends */
	struct mig_src_env env;
	uint64_t bm[(NPAGES + 63) / 64];
	char err[256];
};

static void pair(struct stream *a, struct transport_conn *b)
{
	struct transport_conn c;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	transport_wrap_fd(&c, sv[0], TRANSPORT_UNIX);
	stream_attach(a, &c, 2000);
	transport_wrap_fd(b, sv[1], TRANSPORT_UNIX);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct transport_conn c;

	assert_non_null(f);
	f->vm.ram_size = NPAGES * VM_PAGE_SIZE;
	f->vm.ram = aligned_alloc(VM_PAGE_SIZE, NPAGES * VM_PAGE_SIZE);
	assert_non_null(f->vm.ram);
	for (int i = 0; i < NPAGES; i++) /* page i holds i + 1 (page 7 is zero) */
		memset(f->vm.ram + i * VM_PAGE_SIZE, i == 7 ? 0 : i + 1, VM_PAGE_SIZE);
	f->m = mig_get(&f->vm);
	assert_non_null(f->m);
	assert_int_equal(pc_src_create(&f->pc, &f->vm, f->m, 42, f->err, sizeof(f->err)), 0);
	pair(&f->peer_rp, &c);
	pc_src_attach_rp(f->pc, &c);
	pair(&f->peer_main, &c);
	stream_attach(&f->main, &c, 2000);
	f->env = (struct mig_src_env){ .vm = &f->vm, .m = f->m, .s = &f->main, .err = f->err,
				       .errlen = sizeof(f->err) };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	pc_src_destroy(f->pc);
	stream_close(&f->main);
	stream_close(&f->peer_rp);
	stream_close(&f->peer_main);
	mig_destroy(&f->vm);
	free(f->vm.ram);
	free(f);
	return 0;
}

/* Missing: pages 0..149 (150..199 the target has). */
static void do_switch(struct fx *f)
{
	struct stream_hdr h;
	uint64_t got[(NPAGES + 63) / 64] = { 0 }, n = 0;

	bm_set_range(f->bm, 0, 150);
	assert_int_equal(pc_src_switch(f->pc, &f->env, f->bm), 0);
	/* The target's end reads it back as sent. */
	assert_int_equal(stream_recv_hdr(&f->peer_main, &h, f->err, sizeof(f->err)), 0);
	assert_int_equal(h.type, ST_MISSING);
	assert_int_equal(pc_missing_recv(&f->peer_main, h.len, got, NPAGES, &n, f->err,
					 sizeof(f->err)), 0);
	assert_int_equal(n, 150);
	assert_memory_equal(got, f->bm, sizeof(got));
}

static void request(struct fx *f, uint64_t first, uint32_t count)
{
	uint8_t b[PAGE_REQ_LEN];

	le_put64(b, first);
	le_put32(b + 8, count);
	assert_int_equal(stream_send(&f->peer_rp, ST_PAGE_REQ, b, sizeof(b), f->err,
				     sizeof(f->err)), 0);
}

/* The next frame on the return path: PAGES (its pages into *first, *n,
 * checked against RAM) or ERROR (returns 1). */
static int reply(struct fx *f, uint64_t *first, uint64_t *n)
{
	struct page_run runs[PC_BATCH_PAGES];
	uint8_t *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	struct stream_hdr h;
	size_t off = 0;
	int nr;

	assert_non_null(buf);
	assert_int_equal(stream_recv_hdr(&f->peer_rp, &h, f->err, sizeof(f->err)), 0);
	if (h.type == ST_ERROR) {
		char text[TEXT_MAX_LEN + 1];

		assert_int_equal(stream_recv_text(&f->peer_rp, h.len, text, sizeof(text), f->err,
						  sizeof(f->err)), 0);
		assert_non_null(strstr(text, "out of range"));
		free(buf);
		return 1;
	}
	assert_int_equal(h.type, ST_PAGES);
	nr = pc_pages_recv(&f->peer_rp, h.len, NPAGES, runs, PC_BATCH_PAGES, buf, NULL, NULL, f->err,
			   sizeof(f->err));
	assert_true(nr > 0);
	*first = runs[0].first;
	*n = 0;
	for (int i = 0; i < nr; i++) {
		assert_int_equal(runs[i].first, *first + *n);
		for (uint64_t p = runs[i].first; p < runs[i].first + runs[i].count; p++) {
			if (runs[i].kind == PAGE_RUN_ZERO) {
				assert_int_equal(p, 7);
				continue;
			}
			assert_int_equal(buf[off], (uint8_t)(p + 1));
			off += VM_PAGE_SIZE;
		}
		*n += runs[i].count;
	}
	free(buf);
	return 0;
}

static void test_requests(void **state)
{
	struct fx *f = *state;
	uint64_t first, n;

	do_switch(f);
	/* Only the page asked for; the push goes on from the page after it
	 * (push_from is 1-based). */
	request(f, 0, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 0);
	assert_int_equal(n, 1);
	assert_int_equal(atomic_load(&f->pc->push_from), 1 + 1);
	/* Hostile: out of range, zero or too many pages, overflow. */
	request(f, NPAGES, 1);
	assert_int_equal(reply(f, &first, &n), 1);
	request(f, 10, 0);
	assert_int_equal(reply(f, &first, &n), 1);
	request(f, 10, PAGE_REQ_MAX_PAGES + 1);
	assert_int_equal(reply(f, &first, &n), 1);
	request(f, UINT64_MAX - 1, 4);
	assert_int_equal(reply(f, &first, &n), 1);
	request(f, NPAGES - 1, 2);
	assert_int_equal(reply(f, &first, &n), 1);
	request(f, 140, 3);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 140);
	assert_int_equal(n, 3);
	assert_int_equal(atomic_load(&f->pc->push_from), 143 + 1);
	request(f, 145, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 145);
	assert_int_equal(n, 1);
	/* Repeated: 145 went already, so a flood of repeats sends nothing;
	 * the next real request is still answered. */
	for (int i = 0; i < 5000; i++)
		request(f, 145, 1);
	/* A page the target has (not in MISSING) is never sent. */
	request(f, 160, 4);
	request(f, 20, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 20);
	assert_false(pc_src_lost(f->pc, f->err, sizeof(f->err)));
}

/* A page the push already took (its copy may wait behind megabytes in the
 * main socket) goes again on the return path when the target asks for
 * it, once: repeats cost nothing. */
static void test_asked_page_resent_once(void **state)
{
	struct fx *f = *state;
	uint64_t first, n;

	do_switch(f);
	for (uint64_t i = 100; i < 120; i++) /* as the push would */
		assert_true(pc_bm_take(f->pc->to_send, i));
	request(f, 105, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 105);
	assert_int_equal(n, 1);
	for (int i = 0; i < 100; i++)
		request(f, 105, 1);
	request(f, 30, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 30);
	assert_int_equal(n, 1);
	assert_false(pc_src_lost(f->pc, f->err, sizeof(f->err)));
}

struct runner {
	struct fx *f;
	int ret;
};

static void *run_source(void *arg)
{
	struct runner *r = arg;

	r->ret = pc_src_run(r->f->pc, &r->f->env);
	return NULL;
}

/* The push starts after the pages the last request asked for and wraps
 * around: a guest walking its memory finds the next pages coming. */
static void test_push_follows_request(void **state)
{
	struct fx *f = *state;
	struct page_run runs[PC_BATCH_PAGES];
	uint8_t *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	struct runner r = { .f = f, .ret = -1 };
	uint64_t first, n, next = 41, got = 0;
	pthread_t t;

	assert_non_null(buf);
	do_switch(f);
	request(f, 40, 1);
	assert_int_equal(reply(f, &first, &n), 0);
	assert_int_equal(first, 40);
	assert_int_equal(n, 1);
	assert_int_equal(pthread_create(&t, NULL, run_source, &r), 0);
	/* 41..149, then 0..39: every missing page not yet sent, once, in order. */
	while (got < 150 - 1) {
		struct stream_hdr h;
		int nr;

		assert_int_equal(stream_recv_hdr(&f->peer_main, &h, f->err, sizeof(f->err)), 0);
		assert_int_equal(h.type, ST_PAGES);
		nr = pc_pages_recv(&f->peer_main, h.len, NPAGES, runs, PC_BATCH_PAGES, buf, NULL, NULL, f->err,
				   sizeof(f->err));
		assert_true(nr > 0);
		for (int i = 0; i < nr; i++) {
			assert_int_equal(runs[i].first, next);
			next += runs[i].count;
			got += runs[i].count;
			if (next == 150)
				next = 0;
		}
	}
	assert_int_equal(next, 40);
	assert_int_equal(stream_send(&f->peer_main, ST_PC_DONE, NULL, 0, f->err, sizeof(f->err)),
			 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.ret, 0);
	free(buf);
}

/* Deltas: the source caches pages 10..29 as the target got them, then
 * they change (a few bytes in 10..24, the whole page in 25..29). The
 * target keeps stale copies of 10..19 only (PC_KEPT). The push sends
 * 10..19 as deltas that rebuild the new pages from the old ones, every
 * other page whole. */
static void test_push_deltas(void **state)
{
	struct fx *f = *state;
	struct page_run runs[PC_BATCH_PAGES];
	uint8_t *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	uint8_t *area = malloc(PC_BATCH_PAGES * VM_PAGE_SIZE), *old = malloc(20 * VM_PAGE_SIZE);
	uint64_t kept[(NPAGES + 63) / 64] = { 0 }, got = 0, deltas = 0;
	struct runner r = { .f = f, .ret = -1 };
	struct xbz_cache *c;
	pthread_t t;
	int miss;

	assert_non_null(buf);
	assert_non_null(area);
	assert_non_null(old);
	assert_int_equal(xbz_cache_create(&c, NPAGES * VM_PAGE_SIZE, f->err, sizeof(f->err)), 0);
	for (int i = 10; i < 30; i++) {
		uint8_t *p = f->vm.ram + i * VM_PAGE_SIZE;

		(void)xbz_cache_put(c, (uint64_t)i, p, area, &miss);
		memcpy(old + (i - 10) * VM_PAGE_SIZE, p, VM_PAGE_SIZE);
		if (i < 25)
			memset(p + 100, 0xee, 16);
		else
			for (int k = 0; k < (int)VM_PAGE_SIZE; k++)
				p[k] = (uint8_t)(k * 7 + i);
	}
	f->pc->xbz = c;
	f->pc->kept = calloc((NPAGES + 63) / 64, 8);
	f->pc->enc = malloc(PC_DELTA_AREA);
	assert_non_null(f->pc->kept);
	assert_non_null(f->pc->enc);
	do_switch(f);
	bm_set_range(kept, 10, 10);
	assert_true(pc_bitmap_send(&f->peer_rp, ST_PC_KEPT, kept, NPAGES, f->err,
				   sizeof(f->err)) == 1);
	for (int i = 0; i < 200 && !bm_test((uint64_t *)f->pc->kept, 19); i++)
		usleep(5000);
	assert_true(bm_test((uint64_t *)f->pc->kept, 10) && bm_test((uint64_t *)f->pc->kept, 19));
	assert_int_equal(pthread_create(&t, NULL, run_source, &r), 0);
	while (got < 150) {
		struct stream_hdr h;
		uint32_t alen = 0;
		uint64_t pos = 0;
		size_t off = 0;
		int nr;

		assert_int_equal(stream_recv_hdr(&f->peer_main, &h, f->err, sizeof(f->err)), 0);
		assert_int_equal(h.type, ST_PAGES);
		nr = pc_pages_recv(&f->peer_main, h.len, NPAGES, runs, PC_BATCH_PAGES, buf, area,
				   &alen, f->err, sizeof(f->err));
		assert_true(nr > 0);
		for (int i = 0; i < nr; i++)
			for (uint64_t p = runs[i].first; p < runs[i].first + runs[i].count; p++) {
				const uint8_t *want = f->vm.ram + p * VM_PAGE_SIZE, *enc;
				uint32_t len;

				got++;
				if (runs[i].kind == PAGE_RUN_ZERO) {
					assert_int_equal(p, 7);
					continue;
				}
				if (runs[i].kind == PAGE_RUN_NORMAL) {
					assert_false(p >= 10 && p < 20);
					assert_memory_equal(buf + off, want, VM_PAGE_SIZE);
					off += VM_PAGE_SIZE;
					continue;
				}
				assert_int_equal(runs[i].kind, PAGE_RUN_DELTA);
				assert_true(p >= 10 && p < 20);
				assert_int_equal(xbzrle_entry_next(area, alen, &pos, &enc, &len, f->err,
								sizeof(f->err)), 0);
				assert_true(len <= PC_DELTA_CAP);
				memcpy(buf + PC_BATCH_PAGES * VM_PAGE_SIZE - VM_PAGE_SIZE,
				       old + (p - 10) * VM_PAGE_SIZE, VM_PAGE_SIZE);
				assert_int_equal(xbzrle_decode(enc, len, buf + (PC_BATCH_PAGES - 1) *
							       VM_PAGE_SIZE, f->err, sizeof(f->err)), 0);
				assert_memory_equal(buf + (PC_BATCH_PAGES - 1) * VM_PAGE_SIZE, want,
						    VM_PAGE_SIZE);
				deltas++;
			}
		assert_int_equal(pos, alen);
	}
	assert_int_equal(deltas, 10);
	assert_int_equal(stream_send(&f->peer_main, ST_PC_DONE, NULL, 0, f->err, sizeof(f->err)),
			 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.ret, 0);
	assert_int_equal(f->m->st.pc_pages_delta, 10);
	assert_true(f->m->st.pc_delta_bytes_saved >= 10 * (VM_PAGE_SIZE - 64));
	f->pc->xbz = NULL;
	xbz_cache_destroy(c);
	free(buf);
	free(area);
	free(old);
}

/* Delta entries a hostile source might send: cut off, longer than the
 * codec allows, past the area; and delta runs where none are allowed. */
static void test_delta_entries_hostile(void **state)
{
	struct fx *f = *state;
	uint8_t area[8], *buf = aligned_alloc(VM_PAGE_SIZE, PC_BATCH_PAGES * VM_PAGE_SIZE);
	uint8_t frame[PAGES_HDR_LEN + PAGE_RUN_LEN + 4];
	struct page_run runs[PC_BATCH_PAGES], rr = { .first = 3, .count = 1, .kind = PAGE_RUN_DELTA };
	struct stream_hdr h;
	const uint8_t *enc;
	uint64_t pos = 0;
	uint32_t len;

	assert_non_null(buf);
	assert_int_equal(xbzrle_entry_next(area, 1, &pos, &enc, &len, f->err, sizeof(f->err)),
			 -EPROTO);
	le_put16(area, 7); /* 7 bytes, 6 left */
	pos = 0;
	assert_int_equal(xbzrle_entry_next(area, 8, &pos, &enc, &len, f->err, sizeof(f->err)),
			 -EPROTO);
	le_put16(area, XBZ_MAX_ENC + 1);
	pos = 0;
	assert_int_equal(xbzrle_entry_next(area, 8, &pos, &enc, &len, f->err, sizeof(f->err)),
			 -EPROTO);
	le_put16(area, 6);
	pos = 0;
	assert_int_equal(xbzrle_entry_next(area, 8, &pos, &enc, &len, f->err, sizeof(f->err)), 0);
	assert_int_equal(len, 6);
	assert_int_equal(pos, 8);
	pos = 9;
	assert_int_equal(xbzrle_entry_next(area, 8, &pos, &enc, &len, f->err, sizeof(f->err)),
			 -EPROTO);
	/* A delta run on a connection that takes none (the return path). */
	le_put32(frame, 1);
	le_put32(frame + 4, 0);
	stream_run_encode(frame + PAGES_HDR_LEN, &rr);
	le_put16(frame + PAGES_HDR_LEN + PAGE_RUN_LEN, 2);
	assert_int_equal(stream_send(&f->main, ST_PAGES, frame, sizeof(frame), f->err,
				     sizeof(f->err)), 0);
	assert_int_equal(stream_recv_hdr(&f->peer_main, &h, f->err, sizeof(f->err)), 0);
	assert_true(pc_pages_recv(&f->peer_main, h.len, NPAGES, runs, PC_BATCH_PAGES, buf, NULL,
				  NULL, f->err, sizeof(f->err)) < 0);
	assert_non_null(strstr(f->err, "delta"));
	free(buf);
}

static void test_wrong_frame_stops_server(void **state)
{
	struct fx *f = *state;
	uint8_t b[8] = { 0 };

	do_switch(f);
	assert_int_equal(stream_send(&f->peer_rp, ST_PING, b, 8, f->err, sizeof(f->err)), 0);
	for (int i = 0; i < 200 && !pc_src_lost(f->pc, f->err, sizeof(f->err)); i++)
		usleep(10000);
	assert_true(pc_src_lost(f->pc, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "PING on the return path"));
}

/* MISSING slices a hostile source might send a target. */
static void test_missing_hostile(void **state)
{
	struct fx *f = *state;
	uint8_t b[MISSING_HDR_LEN + 16];
	uint64_t bm[(NPAGES + 63) / 64] = { 0 }, n = 0;
	struct stream_hdr h;
	const struct { uint64_t first; uint32_t words, len; uint64_t w0; } bad[] = {
		{ 1, 1, MISSING_HDR_LEN + 8, 1 },      /* not a multiple of 64 */
		{ 0, 0, MISSING_HDR_LEN + 8, 1 },      /* no words */
		{ 0, 2, MISSING_HDR_LEN + 8, 1 },      /* words and length disagree */
		{ 192, 2, MISSING_HDR_LEN + 16, 1 },   /* past the end */
		{ 192, 1, MISSING_HDR_LEN + 8, 1ULL << 8 }, /* a bit past the last page */
		{ UINT64_MAX - 63, 1, MISSING_HDR_LEN + 8, 1 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		le_put64(b, bad[i].first);
		le_put32(b + 8, bad[i].words);
		le_put32(b + 12, 0);
		le_put64(b + 16, bad[i].w0);
		le_put64(b + 24, 0);
		assert_int_equal(stream_send(&f->main, ST_MISSING, b, bad[i].len, f->err,
					     sizeof(f->err)), 0);
		assert_int_equal(stream_recv_hdr(&f->peer_main, &h, f->err, sizeof(f->err)), 0);
		assert_int_equal(pc_missing_recv(&f->peer_main, h.len, bm, NPAGES, &n, f->err,
						 sizeof(f->err)), -EPROTO);
		assert_non_null(strstr(f->err, "bad MISSING"));
		/* Resynchronise: drop what the refused frame left unread. */
		stream_close(&f->main);
		stream_close(&f->peer_main);
		{
			struct transport_conn c;

			pair(&f->peer_main, &c);
			stream_attach(&f->main, &c, 2000);
		}
	}
	assert_int_equal(n, 0);
}

/* The push's queue bound: 4 x BDP + 16 KiB, four segments at least,
 * 4 MiB at most. */
static void test_push_queue(void **state)
{
	(void)state;
	/* 100 MiB/s, 30 us, Ethernet segments: 12 582 + 16 384 */
	assert_int_equal(pc_policy_push_queue(104857600.0, 30, 1448), 28966);
	/* loopback: 64 KiB segments, four of them */
	assert_int_equal(pc_policy_push_queue(2e9, 10, 65483), 4 * 65483);
	/* 10 Gbit/s over 500 us */
	assert_int_equal(pc_policy_push_queue(1.25e9, 500, 1448), 2500000 + 16384);
	assert_int_equal(pc_policy_push_queue(1e10, 1000, 1448), PC_PUSH_QUEUE_MAX);
	assert_int_equal(pc_policy_push_queue(0, 0, 0), PC_PUSH_QUEUE_MIN);
}

/* The push's gate: one BDP + 8 KiB, four segments at least, 4 MiB at
 * most; its sleeps: until the excess drained, 10 us to 2 ms. */
static void test_push_gate(void **state)
{
	(void)state;
	/* 100 MiB/s, 30 us, Ethernet segments: 3 145 + 8 192 */
	assert_int_equal(pc_policy_push_gate(104857600.0, 30, 1448), 11337);
	/* the estimate unknown: the slack alone */
	assert_int_equal(pc_policy_push_gate(0, 30, 1448), PC_PUSH_GATE_SLACK);
	/* loopback: 64 KiB segments, four of them */
	assert_int_equal(pc_policy_push_gate(2e9, 10, 65483), 4 * 65483);
	/* 10 Gbit/s over 500 us */
	assert_int_equal(pc_policy_push_gate(1.25e9, 500, 1448), 625000 + 8192);
	assert_int_equal(pc_policy_push_gate(1e10, 1000, 1448), PC_PUSH_QUEUE_MAX);
	/* 8 KiB over the gate at 100 MB/s: 82 us */
	assert_int_equal(pc_policy_push_sleep_ns(8191, 1e8), 81920);
	assert_int_equal(pc_policy_push_sleep_ns(0, 1e8), PC_PUSH_SLEEP_MIN_NS);
	assert_int_equal(pc_policy_push_sleep_ns(1 << 20, 1e5), PC_PUSH_SLEEP_MAX_NS);
	/* rate unknown: as if 100 MB/s */
	assert_int_equal(pc_policy_push_sleep_ns(8191, 0), 81920);
	/* pieces: a quarter of the gate, 2 to 64 pages */
	assert_int_equal(pc_policy_push_piece(11337), PC_PUSH_PIECE_PAGES);
	assert_int_equal(pc_policy_push_piece(4 * 65483), 15);
	assert_int_equal(pc_policy_push_piece(PC_PUSH_QUEUE_MAX), PC_BATCH_PAGES);
}

static void test_policy(void **state)
{
	struct mig_tunables t;

	(void)state;
	mig_tunables_default(&t);
	assert_false(pc_policy_due(&t, true, EST_CONTINUE, 1, 100, 0)); /* not allowed */
	t.postcopy = true;
	assert_true(pc_policy_due(&t, true, EST_CONTINUE, 1, 100, 0));   /* asked */
	/* Asked, it switches even if pre-copy would converge now. */
	assert_true(pc_policy_due(&t, true, EST_CONVERGED, 1, 100, 0));
	assert_false(pc_policy_due(&t, false, EST_CONVERGED, 1, 100, 0));
	assert_false(pc_policy_due(&t, false, EST_CONTINUE, 2, 50, 100)); /* throttle policy */
	t.nonconvergence = MIG_NONCONV_POSTCOPY;
	assert_false(pc_policy_due(&t, false, EST_CONTINUE, 1, 100, 0)); /* nothing before */
	assert_true(pc_policy_due(&t, false, EST_CONTINUE, 1, 95, 100)); /* round 0 all dirty */
	assert_false(pc_policy_due(&t, false, EST_CONTINUE, 2, 80, 100)); /* shrinking */
	assert_true(pc_policy_due(&t, false, EST_CONTINUE, 2, 95, 100));  /* not shrinking */
	assert_true(pc_policy_due(&t, false, EST_STOP_ROUNDS, 30, 10, 100));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_asked_page_resent_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_follows_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_deltas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delta_entries_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_frame_stops_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_hostile, setup, teardown),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_push_queue),
		cmocka_unit_test(test_push_gate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
