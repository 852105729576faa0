/* The target's disk writer (--migrate-disk): the receive thread checks each
 * DISK_DATA frame and reads it into a slot, threads of their own write the
 * slots into the image, so the network and the disk work at once. */
#ifndef MINIVMM_MIGRATE_DISK_WRITER_H
#define MINIVMM_MIGRATE_DISK_WRITER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct blkdev;

#define DISK_WR_SLOTS 12u
#define DISK_WR_THREADS 2u
#define DISK_WR_ROOM 4096u /* in front of each slot's data: the frame header */

enum disk_wr_state { DISK_WR_FREE, DISK_WR_QUEUED, DISK_WR_WRITING, DISK_WR_DONE };

struct disk_wr_slot {
	uint8_t *buf;        /* DISK_WR_ROOM, then DISK_DATA_MAX of data */
	uint64_t off, len;
	bool zero;
	enum disk_wr_state state;
};

struct disk_writer {
	struct blkdev *bd;
	pthread_t th[DISK_WR_THREADS];
	unsigned nth;
	bool started, stop;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct disk_wr_slot slot[DISK_WR_SLOTS];
	unsigned head, count; /* slots head .. head + count - 1 are not free */
	int err;              /* the first failed write, -errno */
	uint64_t write_ns;    /* time in writes, summed over the threads */
	uint64_t data_bytes, zero_bytes; /* written */
};

int disk_writer_start(struct disk_writer *w, struct blkdev *bd);
/* The next free slot (blocking while all are taken), or NULL when a write
 * failed: *err says how. */
struct disk_wr_slot *disk_writer_slot(struct disk_writer *w, int *err);
/* The slot from disk_writer_slot, filled: written after every queued slot
 * it overlaps. */
void disk_writer_queue(struct disk_writer *w);
/* Every queued slot written: 0 or the first write's -errno. */
int disk_writer_drain(struct disk_writer *w);
void disk_writer_stop(struct disk_writer *w);

#endif
