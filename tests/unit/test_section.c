/* The migration-section interface without KVM: the section list and its
 * frame dispatch, and the load side of the RAM and machine-state sections
 * fed hostile frames over a socket pair. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/mig.h"
#include "migrate/ram/ram.h"
#include "migrate/section.h"
#include "migrate/transport/transport.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/vm.h"

#define NPAGES 16

static void h_put32_(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void h_put64_(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

struct fx {
	int peer;                /* the "source" end */
	struct stream s;
	struct mig m;
	struct vm vm;
	struct mig_sections ss;
	struct mig_tgt_env env;
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct transport_conn c;
	int sv[2];

	assert_non_null(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f->peer = sv[0];
	transport_wrap_fd(&c, sv[1], TRANSPORT_UNIX);
	stream_attach(&f->s, &c, 2000);
	pthread_mutex_init(&f->m.lock, NULL);
	f->vm.ram_size = NPAGES * VM_PAGE_SIZE;
	f->vm.ram = calloc(NPAGES, VM_PAGE_SIZE);
	assert_non_null(f->vm.ram);
	assert_int_equal(mig_sections_create(&f->ss, f->err, sizeof(f->err)), 0);
	f->env = (struct mig_tgt_env){ .vm = &f->vm, .m = &f->m, .s = &f->s,
				       .err = f->err, .errlen = sizeof(f->err) };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < f->ss.n; i++)
		if (f->ss.s[i].ops->load_cleanup)
			f->ss.s[i].ops->load_cleanup(f->ss.s[i].state, &f->env);
	mig_sections_destroy(&f->ss);
	stream_close(&f->s);
	close(f->peer);
	stats_free(&f->m.st);
	pthread_mutex_destroy(&f->m.lock);
	free(f->vm.ram);
	free(f);
	return 0;
}

/* Writes a payload the section will read after its header. */
static void peer_send(struct fx *f, const void *p, size_t n)
{
	assert_int_equal(write(f->peer, p, n), (ssize_t)n);
}

static int feed(struct fx *f, uint32_t type, const void *p, uint32_t len)
{
	struct stream_hdr h = { .type = type, .len = len };
	struct mig_section *sec = mig_sections_for_frame(&f->ss, type);

	assert_non_null(sec);
	if (len)
		peer_send(f, p, len);
	return sec->ops->load_frame(sec->state, &f->env, &h);
}

static void test_list_and_dispatch(void **state)
{
	struct fx *f = *state;

	/* RAM first, machine state last: the state must load after RAM
	 * and the disk. */
	assert_int_equal(f->ss.n, 3);
	assert_ptr_equal(f->ss.s[0].ops, &ram_section_ops);
	assert_ptr_equal(f->ss.s[1].ops, &disk_section_ops);
	assert_ptr_equal(mig_sections_for_frame(&f->ss, ST_DISK)->ops, &disk_section_ops);
	assert_ptr_equal(f->ss.s[f->ss.n - 1].ops, &state_section_ops);
	assert_ptr_equal(mig_sections_for_frame(&f->ss, ST_ROUND)->ops, &ram_section_ops);
	assert_ptr_equal(mig_sections_for_frame(&f->ss, ST_PAGES)->ops, &ram_section_ops);
	assert_ptr_equal(mig_sections_for_frame(&f->ss, ST_CHANNELS)->ops, &ram_section_ops);
	assert_ptr_equal(mig_sections_for_frame(&f->ss, ST_STATE)->ops, &state_section_ops);
	/* Control frames are the orchestrators', never a section's. */
	assert_null(mig_sections_for_frame(&f->ss, ST_PING));
	assert_null(mig_sections_for_frame(&f->ss, ST_END));
	assert_null(mig_sections_for_frame(&f->ss, ST_HELLO));
	assert_null(mig_sections_for_frame(&f->ss, 0));
}

/* DISK frames: the wrong length, unknown flags, twice; a VM without a
 * disk refuses one at END, and takes END without one. */
static void test_disk_hostile(void **state)
{
	struct fx *f = *state;
	struct mig_section *d = mig_sections_for_frame(&f->ss, ST_DISK);
	struct mig_end end = { 0 };
	uint8_t b[DISK_LEN] = { 0 };

	assert_int_equal(d->ops->load_complete(d->state, &f->env, &end), 0);
	assert_int_not_equal(feed(f, ST_DISK, b, DISK_LEN - 1), 0);
	b[16] = 0x81; /* unknown flags */
	assert_int_equal(feed(f, ST_DISK, b, DISK_LEN), -EPROTO);
	b[16] = DISK_FLAG_FLUSHED;
	assert_int_equal(feed(f, ST_DISK, b, DISK_LEN), -EPROTO); /* already had one */
	assert_non_null(strstr(f->err, "second DISK"));
	assert_int_equal(d->ops->load_complete(d->state, &f->env, &end), -EPROTO);
	assert_non_null(strstr(f->err, "has not"));
}

/* DISK_DATA into an image (a file) of 64 KiB: good runs land, hostile ones
 * (past the end, overflowing, not whole sectors, a frame length that
 * disagrees, unknown flags, for a shared disk) are refused unwritten. */
static void test_disk_data_hostile(void **state)
{
	struct fx *f = *state;
	char path[64];
	struct mig_section *dd = mig_sections_for_frame(&f->ss, ST_DISK_DATA);
	struct blkdev bd = { .size = 65536 };
	uint8_t fr[16 + 1024], got[1024];
	int fd;

	snprintf(path, sizeof(path), "/tmp/test_section_%d.img", (int)getpid());
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 65536), 0);
	bd.fd = fd;
	bd.o.copy_target = true;
	f->vm.blkdev = &bd;
	memset(fr + 16, 0xab, 1024);
#define HDR(off, len, fl) (h_put64_(fr, off), h_put32_(fr + 8, len), h_put32_(fr + 12, fl))
	HDR(4096, 1024, 0);
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), 0);
	/* The writer thread has it on the disk by the drain (a PING's). */
	assert_int_equal(dd->ops->load_drain(dd->state, &f->env), 0);
	assert_int_equal(pread(fd, got, 1024, 4096), 1024);
	assert_memory_equal(got, fr + 16, 1024);
	HDR(4096, 1024, DISK_DATA_ZERO); /* a zero run: only the header */
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16), 0);
	assert_int_equal(dd->ops->load_drain(dd->state, &f->env), 0);
	assert_int_equal(pread(fd, got, 1024, 4096), 1024);
	assert_int_equal(got[0] | got[1023], 0);
	HDR(65536 - 512, 1024, 0); /* past the end */
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), -EPROTO);
	HDR(UINT64_MAX - 511, 1024, 0); /* offset + length wraps */
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), -EPROTO);
	HDR(100, 1024, 0); /* not a sector */
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), -EPROTO);
	HDR(0, 1000, 0);
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1000), -EPROTO);
	HDR(0, 1024, 0); /* the frame says 512 bytes of data, the header 1024 */
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 512), -EPROTO);
	HDR(0, 1024, 0x80);
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), -EPROTO);
	HDR(0, 0, DISK_DATA_ZERO);
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16), -EPROTO);
	assert_int_equal(dd->ops->load_drain(dd->state, &f->env), 0);
	assert_int_equal(pread(fd, got, 1024, 0), 1024);
	assert_int_equal(got[0] | got[1023], 0); /* nothing refused was written */
	bd.o.copy_target = false; /* a shared disk takes no data */
	HDR(0, 1024, 0);
	assert_int_equal(feed(f, ST_DISK_DATA, fr, 16 + 1024), -EPROTO);
#undef HDR
	f->vm.blkdev = NULL;
	close(fd);
	unlink(path);
}

static void test_state_hostile(void **state)
{
	struct fx *f = *state;
	struct mig_section *st = mig_sections_for_frame(&f->ss, ST_STATE);
	struct mig_end end = { 0 };
	uint8_t junk[3] = { 1, 2, 3 };

	/* END before any STATE is a protocol error, not a crash. */
	assert_int_equal(st->ops->load_complete(st->state, &f->env, &end), -EPROTO);
	assert_non_null(strstr(f->err, "END before the machine state"));
	assert_int_equal(feed(f, ST_STATE, junk, sizeof(junk)), 0);
	assert_int_equal(feed(f, ST_STATE, junk, sizeof(junk)), -EPROTO);
	assert_non_null(strstr(f->err, "sent twice"));
}

static void put_round(uint8_t *b, uint32_t round, uint32_t flags)
{
	le_put32(b, round);
	le_put32(b + 4, flags);
}

static void test_ram_hostile(void **state)
{
	struct fx *f = *state;
	uint8_t b[PAGES_HDR_LEN + PAGE_RUN_LEN], r[ROUND_LEN];
	struct page_run run = { .first = NPAGES - 1, .count = 2, .kind = PAGE_RUN_ZERO };
	struct mig_section *ram;
	struct mig_end end = { .flags = END_FLAG_DIGEST, .digest = 1 };

	/* Pages before any ROUND. */
	memset(b, 0, sizeof(b));
	le_put32(b, 1);
	stream_run_encode(b + PAGES_HDR_LEN, &run);
	assert_int_equal(feed(f, ST_PAGES, b, sizeof(b)), -EPROTO);
	assert_non_null(strstr(f->err, "outside a round"));
	/* A ROUND of the wrong size. */
	assert_int_equal(feed(f, ST_ROUND, r, 4), -EPROTO);

	/* A proper round; then a run that ends past the last page of RAM. */
	teardown(state);
	setup(state);
	f = *state;
	ram = mig_sections_for_frame(&f->ss, ST_PAGES);
	put_round(r, 0, 0);
	assert_int_equal(feed(f, ST_ROUND, r, ROUND_LEN), 0);
	assert_int_equal(f->m.st.rounds, 1);
	assert_int_equal(feed(f, ST_PAGES, b, sizeof(b)), -ERANGE);
	assert_non_null(strstr(f->err, "outside guest RAM"));

	/* CHANNELS once the rounds began. */
	memset(b, 0, CHANNELS_LEN);
	assert_int_equal(feed(f, ST_CHANNELS, b, CHANNELS_LEN), -EPROTO);

	/* A final round sets the pause time and converged flag; a digest
	 * that does not match this RAM is refused. */
	put_round(r, 1, ROUND_FLAG_FINAL | ROUND_FLAG_CONVERGED);
	assert_int_equal(feed(f, ST_ROUND, r, ROUND_LEN), 0);
	assert_true(f->env.t_final > 0);
	assert_true(f->m.st.converged);
	assert_int_equal(ram->ops->load_complete(ram->state, &f->env, &end), -EIO);
	assert_non_null(strstr(f->err, "digest mismatch"));
	end.digest = ram_digest(f->vm.ram, NPAGES);
	assert_int_equal(ram->ops->load_complete(ram->state, &f->env, &end), 0);
	assert_int_equal(f->m.st.nrec, 2);
}

/* ---- delta runs (xbzrle-cache) on the target's PAGES path ------------- */

/* One PAGES frame: a run of `kind` for page `page`, then body. */
static int feed_one(struct fx *f, uint64_t page, uint32_t kind, const uint8_t *body,
		    uint32_t blen)
{
	uint8_t b[PAGES_HDR_LEN + PAGE_RUN_LEN + 2 * 4096];
	struct page_run run = { .first = page, .count = 1, .kind = kind };

	memset(b, 0, PAGES_HDR_LEN);
	le_put32(b, 1);
	stream_run_encode(b + PAGES_HDR_LEN, &run);
	if (blen)
		memcpy(b + PAGES_HDR_LEN + PAGE_RUN_LEN, body, blen);
	return feed(f, ST_PAGES, b, PAGES_HDR_LEN + PAGE_RUN_LEN + blen);
}

/* A fresh target in round 0 that holds page 2 (all 0x11). */
static struct fx *delta_target(void **state)
{
	struct fx *f;
	struct mig_section *ram;
	uint8_t r[ROUND_LEN], pg[4096];

	teardown(state);
	setup(state);
	f = *state;
	ram = mig_sections_for_frame(&f->ss, ST_PAGES);
	assert_int_equal(ram->ops->load_setup(ram->state, &f->env), 0);
	put_round(r, 0, 0);
	assert_int_equal(feed(f, ST_ROUND, r, ROUND_LEN), 0);
	memset(pg, 0x11, sizeof(pg));
	assert_int_equal(feed_one(f, 2, PAGE_RUN_NORMAL, pg, sizeof(pg)), 0);
	return f;
}

/* A delta entry: u16 length, then enc. */
static int feed_delta(struct fx *f, uint64_t page, const uint8_t *enc, uint32_t n,
		      uint32_t declared)
{
	uint8_t e[4096 + 2];

	le_put16(e, (uint16_t)declared);
	if (n)
		memcpy(e + 2, enc, n);
	return feed_one(f, page, PAGE_RUN_DELTA, e, n + 2);
}

static void test_ram_delta(void **state)
{
	struct fx *f = delta_target(state);
	uint8_t big[4096];
	uint8_t *p2 = f->vm.ram + 2 * VM_PAGE_SIZE;

	/* A good one lands on what page 2 held: bytes 8, 9 and 4095 changed
	 * (the second unchanged run is 4085 bytes: 0xf5 0x1f). */
	{
		const uint8_t g2[] = { 8, 2, 0x11 ^ 0xaa, 0x11 ^ 0xbb, 0xf5, 0x1f, 1, 0x11 ^ 0xcc };

		assert_int_equal(feed_delta(f, 2, g2, sizeof(g2), sizeof(g2)), 0);
		assert_int_equal(p2[7], 0x11);
		assert_int_equal(p2[8], 0xaa);
		assert_int_equal(p2[9], 0xbb);
		assert_int_equal(p2[10], 0x11);
		assert_int_equal(p2[4095], 0xcc);
		assert_int_equal(f->m.st.pages_normal, 2);
	}
	/* An empty entry: unchanged. */
	assert_int_equal(feed_delta(f, 2, NULL, 0, 0), 0);
	assert_int_equal(p2[8], 0xaa);

	/* A delta for a page never sent. */
	assert_int_equal(feed_delta(f, 3, (const uint8_t[]){ 0, 1, 5 }, 3, 3), -EPROTO);
	assert_non_null(strstr(f->err, "never sent"));

	/* Runs past the page. */
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0xff, 0x1f, 2, 1, 1 }, 5, 5),
			 -EPROTO);
	assert_non_null(strstr(f->err, "past the page"));
	assert_int_equal(f->vm.ram[2 * VM_PAGE_SIZE + 4095], 0x11); /* untouched */

	/* A zero-length changed run; a zero-length unchanged run after the first. */
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 4, 0 }, 2, 2), -EPROTO);
	assert_non_null(strstr(f->err, "zero-length"));
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 4, 1, 9, 0, 1, 9 }, 6, 6), -EPROTO);
	assert_non_null(strstr(f->err, "zero-length"));

	/* Overlong lengths: a needless second byte, three bytes, above a page. */
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0x84, 0x00, 1, 9 }, 4, 4), -EPROTO);
	assert_non_null(strstr(f->err, "overlong"));
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0x84, 0x80, 0x01, 1, 9 }, 5, 5),
			 -EPROTO);
	assert_non_null(strstr(f->err, "longer than 2 bytes"));
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0x81, 0x20, 1, 9 }, 4, 4), -EPROTO);
	assert_non_null(strstr(f->err, "> page"));

	/* Changed bytes cut off by the entry's end. */
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0, 5, 1, 2 }, 4, 4), -EPROTO);
	assert_non_null(strstr(f->err, "left"));

	/* An entry longer than allowed, or than the frame; bytes left over. */
	f = delta_target(state);
	memset(big, 0, sizeof(big));
	assert_int_equal(feed_delta(f, 2, big, 4095, 4095), -EPROTO);
	assert_non_null(strstr(f->err, "its runs need"));
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0, 1, 9 }, 3, 9), -EPROTO);
	assert_non_null(strstr(f->err, "left"));
	f = delta_target(state);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0, 1, 9, 7 }, 4, 3), -EPROTO);
	assert_non_null(strstr(f->err, "after the last delta entry"));

	/* A zero run makes the page "never sent" again. */
	f = delta_target(state);
	assert_int_equal(feed_one(f, 2, PAGE_RUN_ZERO, NULL, 0), 0);
	assert_int_equal(feed_delta(f, 2, (const uint8_t[]){ 0, 1, 9 }, 3, 3), -EPROTO);
	assert_non_null(strstr(f->err, "never sent"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_list_and_dispatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_data_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_delta, setup, teardown),
	};
	return cmocka_run_group_tests_name("section", tests, NULL, NULL);
}
