/* The target's disk writer: a ring of slots between the receive thread
 * (producer) and DISK_WR_THREADS writer threads (consumers): one copies a
 * slot into the page cache while the other starts a writeback. Writes of
 * one slot each: joining consecutive slots into 4 MiB writes made the
 * writers slower (docs/storage.md). A slot is written only when no
 * older slot it overlaps is still queued or being written, so a block
 * re-sent by a dirty round lands after its older copy. docs/storage.md. */
#include "migrate/disk/writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/proto/stream.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/clock.h"

static bool overlap(const struct disk_wr_slot *a, const struct disk_wr_slot *b)
{
	return a->off < b->off + b->len && b->off < a->off + a->len;
}

/* The slot i places after the head: an older slot not yet written
 * overlaps it. */
static bool blocked(const struct disk_writer *w, unsigned i)
{
	const struct disk_wr_slot *s = &w->slot[(w->head + i) % DISK_WR_SLOTS];

	for (unsigned j = 0; j < i; j++) {
		const struct disk_wr_slot *o = &w->slot[(w->head + j) % DISK_WR_SLOTS];

		if (o->state != DISK_WR_DONE && overlap(s, o))
			return true;
	}
	return false;
}

/* The oldest queued slot free of older overlaps, or NULL. */
static struct disk_wr_slot *next_slot(struct disk_writer *w)
{
	for (unsigned i = 0; i < w->count; i++) {
		struct disk_wr_slot *s = &w->slot[(w->head + i) % DISK_WR_SLOTS];

		if (s->state == DISK_WR_QUEUED && !blocked(w, i))
			return s;
	}
	return NULL;
}

static void *writer_main(void *arg)
{
	struct disk_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct disk_wr_slot *s = NULL;
		uint64_t t;
		int ret;

		while (!w->stop && (w->err || !(s = next_slot(w))))
			pthread_cond_wait(&w->cv, &w->lock);
		if (w->stop)
			break;
		s->state = DISK_WR_WRITING;
		pthread_mutex_unlock(&w->lock);
		t = clock_now_ns();
		ret = s->zero ? blkdev_copy_zero(w->bd, s->off, s->len) :
		      blkdev_copy_write(w->bd, s->off, s->buf + DISK_WR_ROOM, s->len);
		pthread_mutex_lock(&w->lock);
		w->write_ns += clock_now_ns() - t;
		if (s->zero)
			w->zero_bytes += s->len;
		else
			w->data_bytes += s->len;
		if (ret && !w->err)
			w->err = ret;
		s->state = DISK_WR_DONE;
		while (w->count && w->slot[w->head].state == DISK_WR_DONE) {
			w->slot[w->head].state = DISK_WR_FREE;
			w->head = (w->head + 1) % DISK_WR_SLOTS;
			w->count--;
		}
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void free_slots(struct disk_writer *w)
{
	for (unsigned i = 0; i < DISK_WR_SLOTS; i++)
		free(w->slot[i].buf);
	memset(w, 0, sizeof(*w));
}

int disk_writer_start(struct disk_writer *w, struct blkdev *bd)
{
	int ret = 0;

	memset(w, 0, sizeof(*w));
	w->bd = bd;
	for (unsigned i = 0; i < DISK_WR_SLOTS; i++) {
		void *p = NULL;

		if (posix_memalign(&p, 4096, DISK_WR_ROOM + DISK_DATA_MAX)) {
			free_slots(w);
			return -ENOMEM;
		}
		w->slot[i].buf = p;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->started = true;
	for (; w->nth < DISK_WR_THREADS; w->nth++) {
		ret = -pthread_create(&w->th[w->nth], NULL, writer_main, w);
		if (ret)
			break;
	}
	if (w->nth)
		return 0;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	free_slots(w);
	return ret;
}

struct disk_wr_slot *disk_writer_slot(struct disk_writer *w, int *err)
{
	struct disk_wr_slot *s = NULL;

	pthread_mutex_lock(&w->lock);
	while (!w->err && w->count == DISK_WR_SLOTS)
		pthread_cond_wait(&w->cv, &w->lock);
	*err = w->err;
	if (!w->err)
		s = &w->slot[(w->head + w->count) % DISK_WR_SLOTS];
	pthread_mutex_unlock(&w->lock);
	return s;
}

void disk_writer_queue(struct disk_writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->slot[(w->head + w->count) % DISK_WR_SLOTS].state = DISK_WR_QUEUED;
	w->count++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
}

int disk_writer_drain(struct disk_writer *w)
{
	int ret;

	if (!w->started)
		return 0;
	pthread_mutex_lock(&w->lock);
	while (!w->err && w->count)
		pthread_cond_wait(&w->cv, &w->lock);
	ret = w->err;
	pthread_mutex_unlock(&w->lock);
	return ret;
}

void disk_writer_stop(struct disk_writer *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->nth; i++)
		pthread_join(w->th[i], NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	free_slots(w);
}
