/* The target's disk writer: a ring of slots between the receive thread
 * (producer) and this thread (consumer). One thread keeps the writes in the
 * order the frames came: a dirty block re-sent after the bulk pass lands
 * after its older copy. docs/storage.md. */
#include "migrate/disk/writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/proto/stream.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/clock.h"

static void *writer_main(void *arg)
{
	struct disk_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct disk_wr_slot *s;
		uint64_t t;
		int ret;

		while (!w->stop && (!w->count || w->err))
			pthread_cond_wait(&w->cv, &w->lock);
		if (w->stop)
			break;
		s = &w->slot[w->head];
		pthread_mutex_unlock(&w->lock);
		t = clock_now_ns();
		ret = s->zero ? blkdev_copy_zero(w->bd, s->off, s->len) :
		      blkdev_copy_write(w->bd, s->off, s->buf + DISK_WR_ROOM, s->len);
		pthread_mutex_lock(&w->lock);
		w->write_ns += clock_now_ns() - t;
		if (ret)
			w->err = ret;
		w->head = (w->head + 1) % DISK_WR_SLOTS;
		w->count--;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int disk_writer_start(struct disk_writer *w, struct blkdev *bd)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->bd = bd;
	for (unsigned i = 0; i < DISK_WR_SLOTS; i++) {
		void *p = NULL;

		if (posix_memalign(&p, 4096, DISK_WR_ROOM + DISK_DATA_MAX)) {
			ret = -ENOMEM;
			goto fail;
		}
		w->slot[i].buf = p;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cv, NULL);
	ret = -pthread_create(&w->th, NULL, writer_main, w);
	if (ret) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->lock);
		goto fail;
	}
	w->started = true;
	return 0;
fail:
	for (unsigned i = 0; i < DISK_WR_SLOTS; i++)
		free(w->slot[i].buf);
	memset(w, 0, sizeof(*w));
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
	pthread_join(w->th, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	for (unsigned i = 0; i < DISK_WR_SLOTS; i++)
		free(w->slot[i].buf);
	memset(w, 0, sizeof(*w));
}
