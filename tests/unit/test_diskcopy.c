/* The disk copy's threads without a migration: the target's writer keeps
 * overlapping writes in the order they came and reports a failed write;
 * the source's reader walks an image with holes, data and zero blocks. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/disk/reader.h"
#include "migrate/disk/writer.h"
#include "vmm/core/blkdev.h"

#define IMG (8u << 20)

static int tmp_image(char *path, size_t n)
{
	int fd;

	snprintf(path, n, "/tmp/test_diskcopy_%d.img", (int)getpid());
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG), 0);
	return fd;
}

static void put(struct disk_writer *w, uint64_t off, uint64_t len, int byte)
{
	struct disk_wr_slot *s;
	int err;

	s = disk_writer_slot(w, &err);
	assert_non_null(s);
	s->off = off;
	s->len = len;
	s->zero = byte < 0;
	if (byte >= 0)
		memset(s->buf + DISK_WR_ROOM, byte, len);
	disk_writer_queue(w);
}

/* Many rounds of a 1 MiB run and then a 4 KiB block inside it (a dirty
 * block re-sent after its bulk copy) and a zero run over part of it: the
 * last one queued wins each time, whatever thread wrote what. */
static void test_writer_order(void **state)
{
	struct blkdev bd = { .size = IMG };
	struct disk_writer w;
	char path[64];
	uint8_t got[4096];

	(void)state;
	bd.fd = tmp_image(path, sizeof(path));
	snprintf(bd.o.path, sizeof(bd.o.path), "%s", path);
	assert_int_equal(disk_writer_start(&w, &bd), 0);
	for (int r = 0; r < 40; r++) {
		uint64_t base = (uint64_t)(r % 6) << 20;

		put(&w, base, 1 << 20, 0x10 + r);
		put(&w, base + 8192, 4096, 0x80 + r);
		put(&w, base + (1 << 20) - 8192, 8192, -1);
	}
	assert_int_equal(disk_writer_drain(&w), 0);
	for (int r = 34; r < 40; r++) {
		uint64_t base = (uint64_t)(r % 6) << 20;

		assert_int_equal(pread(bd.fd, got, 4096, (off_t)base), 4096);
		assert_int_equal(got[0], 0x10 + r);
		assert_int_equal(pread(bd.fd, got, 4096, (off_t)(base + 8192)), 4096);
		assert_int_equal(got[0], 0x80 + r);
		assert_int_equal(got[4095], 0x80 + r);
		assert_int_equal(pread(bd.fd, got, 4096, (off_t)(base + (1 << 20) - 4096)), 4096);
		assert_int_equal(got[0] | got[4095], 0);
	}
	disk_writer_stop(&w);
	close(bd.fd);
	unlink(path);
}

/* A write that fails (the image read-only under the writer): the drain
 * and the next slot say so, nothing hangs. */
static void test_writer_error(void **state)
{
	struct blkdev bd = { .size = IMG };
	struct disk_writer w;
	char path[64];
	int fd, err = 0;

	(void)state;
	fd = tmp_image(path, sizeof(path));
	close(fd);
	bd.fd = open(path, O_RDONLY);
	snprintf(bd.o.path, sizeof(bd.o.path), "%s", path);
	assert_true(bd.fd >= 0);
	assert_int_equal(disk_writer_start(&w, &bd), 0);
	put(&w, 0, 4096, 1);
	assert_int_equal(disk_writer_drain(&w), -EBADF);
	assert_null(disk_writer_slot(&w, &err));
	assert_int_equal(err, -EBADF);
	disk_writer_stop(&w);
	close(bd.fd);
	unlink(path);
}

/* An image of a hole, 1.5 MiB of data with a zero block in it, a hole to
 * the end: the reader's pieces cover it in order, the data as read, the
 * zero block marked. */
static void test_reader_walk(void **state)
{
	static uint8_t data[3 << 19];
	struct disk_reader r;
	struct disk_rd_slot *s;
	uint64_t pos = 0, got_data = 0;
	char path[64];
	int fd, err = 1;

	(void)state;
	fd = tmp_image(path, sizeof(path));
	memset(data, 0x5a, sizeof(data));
	memset(data + 4 * 4096, 0, 4096);
	assert_int_equal(pwrite(fd, data, sizeof(data), 2 << 20), (ssize_t)sizeof(data));
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(disk_reader_start(&r, fd, IMG), 0);
	while ((s = disk_reader_next(&r, &err))) {
		assert_int_equal(s->off, pos);
		assert_true(s->len > 0 && s->len <= (s->hole ? DISK_HOLE_MAX : DISK_DATA_MAX));
		if (!s->hole && s->off >= (2u << 20) && s->off < (2u << 20) + sizeof(data)) {
			assert_memory_equal(s->buf + DISK_RD_ROOM, data + (s->off - (2u << 20)),
					    s->len);
			/* the zero block at 2 MiB + 16 KiB is marked, its neighbours not */
			if (s->off == 2u << 20) {
				assert_int_equal(s->zmap[0] & 0x1f, 1u << 4);
			}
			got_data += s->len;
		}
		pos += s->len;
		disk_reader_release(&r);
	}
	assert_int_equal(err, 0);
	assert_int_equal(pos, IMG);
	assert_int_equal(got_data, sizeof(data));
	disk_reader_stop(&r);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_order),
		cmocka_unit_test(test_writer_error),
		cmocka_unit_test(test_reader_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
