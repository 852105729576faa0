/* The source's disk reader: a ring of slots between this thread (producer)
 * and the migration thread (consumer). The image's page cache is told the
 * reads are sequential, so read-ahead runs ahead of the reader. A block the
 * guest writes while it runs is in the dirty bitmap (set after the write
 * completes) whatever this read saw: the next round sends it again.
 * docs/storage.md. */
#include "migrate/disk/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/core/clock.h"

void disk_zero_map(const uint8_t *data, uint64_t len, uint64_t *zmap)
{
	memset(zmap, 0, DISK_ZMAP_WORDS * sizeof(uint64_t));
	for (uint64_t at = 0, i = 0; at < len; at += BLKDEV_DIRTY_BLOCK, i++) {
		uint64_t b = len - at < BLKDEV_DIRTY_BLOCK ? len - at : BLKDEV_DIRTY_BLOCK;
		const uint64_t *w = (const uint64_t *)(data + at);
		uint64_t acc = 0;

		/* Whole sectors, so whole words: no early exit, the loop
		 * vectorises. */
		for (uint64_t j = 0; j < b / 8; j++)
			acc |= w[j];
		if (!acc)
			zmap[i / 64] |= 1ULL << (i % 64);
	}
}

/* The next piece at pos: a hole run or up to DISK_DATA_MAX of data. */
static int read_piece(struct disk_reader *r, uint64_t pos, struct disk_rd_slot *s)
{
	off_t d = lseek(r->fd, (off_t)pos, SEEK_DATA), h;
	uint64_t n;

	/* ENXIO: nothing but hole to the end; another error: the file
	 * system cannot tell, so it is all data. */
	if (d < 0)
		d = errno == ENXIO ? (off_t)r->size : (off_t)pos;
	if ((uint64_t)d > r->size)
		d = (off_t)r->size;
	/* Extents are file-system blocks: whole sectors. */
	d = d / 512 * 512;
	s->off = pos;
	if ((uint64_t)d > pos) {
		n = (uint64_t)d - pos;
		s->len = n < DISK_HOLE_MAX ? n : DISK_HOLE_MAX;
		s->hole = true;
		return 0;
	}
	h = lseek(r->fd, (off_t)pos, SEEK_HOLE);
	if (h < 0 || (uint64_t)h > r->size)
		h = (off_t)r->size;
	h = (h + 511) / 512 * 512;
	if ((uint64_t)h <= pos)
		h = (off_t)(pos + 512);
	n = (uint64_t)h - pos;
	s->len = n < DISK_DATA_MAX ? n : DISK_DATA_MAX;
	s->hole = false;
	for (uint64_t done = 0; done < s->len;) {
		ssize_t k = pread(r->fd, s->buf + DISK_RD_ROOM + done, s->len - done,
				  (off_t)(pos + done));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		done += (uint64_t)k;
	}
	disk_zero_map(s->buf + DISK_RD_ROOM, s->len, s->zmap);
	return 0;
}

static void *reader_main(void *arg)
{
	struct disk_reader *r = arg;
	uint64_t pos = 0;

	pthread_mutex_lock(&r->lock);
	while (!r->stop && pos < r->size) {
		struct disk_rd_slot *s;
		uint64_t t;
		int ret;

		if (r->count == DISK_RD_SLOTS) {
			pthread_cond_wait(&r->cv, &r->lock);
			continue;
		}
		s = &r->slot[(r->head + r->count) % DISK_RD_SLOTS];
		pthread_mutex_unlock(&r->lock);
		t = clock_now_ns();
		ret = read_piece(r, pos, s);
		pthread_mutex_lock(&r->lock);
		r->read_ns += clock_now_ns() - t;
		if (ret) {
			r->err = ret;
			break;
		}
		pos += s->len;
		r->count++;
		pthread_cond_broadcast(&r->cv);
	}
	r->eof = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int disk_reader_start(struct disk_reader *r, int fd, uint64_t size)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->size = size;
	for (unsigned i = 0; i < DISK_RD_SLOTS; i++) {
		void *p = NULL;

		if (posix_memalign(&p, 4096, DISK_RD_ROOM + DISK_DATA_MAX)) {
			ret = -ENOMEM;
			goto fail;
		}
		r->slot[i].buf = p;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cv, NULL);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	ret = -pthread_create(&r->th, NULL, reader_main, r);
	if (ret) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->lock);
		goto fail;
	}
	r->started = true;
	return 0;
fail:
	for (unsigned i = 0; i < DISK_RD_SLOTS; i++)
		free(r->slot[i].buf);
	memset(r, 0, sizeof(*r));
	return ret;
}

struct disk_rd_slot *disk_reader_next(struct disk_reader *r, int *err)
{
	struct disk_rd_slot *s = NULL;

	pthread_mutex_lock(&r->lock);
	while (!r->count && !r->eof)
		pthread_cond_wait(&r->cv, &r->lock);
	*err = 0;
	if (r->count)
		s = &r->slot[r->head];
	else
		*err = r->err;
	pthread_mutex_unlock(&r->lock);
	return s;
}

void disk_reader_release(struct disk_reader *r)
{
	pthread_mutex_lock(&r->lock);
	r->head = (r->head + 1) % DISK_RD_SLOTS;
	r->count--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
}

void disk_reader_stop(struct disk_reader *r)
{
	if (!r->started)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->th, NULL);
	posix_fadvise(r->fd, 0, 0, POSIX_FADV_NORMAL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->lock);
	for (unsigned i = 0; i < DISK_RD_SLOTS; i++)
		free(r->slot[i].buf);
	memset(r, 0, sizeof(*r));
}
