/* The source's disk reader for the bulk pass (--migrate-disk): a thread of
 * its own walks the image in order (holes found with SEEK_DATA/SEEK_HOLE,
 * data read in DISK_DATA_MAX pieces and its zero blocks marked) into a ring
 * of slots the migration thread sends from, so reading and sending overlap. */
#ifndef MINIVMM_MIGRATE_DISK_READER_H
#define MINIVMM_MIGRATE_DISK_READER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/proto/stream.h"
#include "vmm/core/blkdev.h"

#define DISK_RD_SLOTS 8u
#define DISK_RD_ROOM 4096u /* in front of each slot's data: frame headers */
#define DISK_ZMAP_WORDS (DISK_DATA_MAX / BLKDEV_DIRTY_BLOCK / 64)
#define DISK_HOLE_MAX (1ULL << 30)

struct disk_rd_slot {
	uint8_t *buf;        /* DISK_RD_ROOM, then DISK_DATA_MAX of data */
	uint64_t off, len;
	bool hole;           /* len bytes of hole: nothing read */
	uint64_t zmap[DISK_ZMAP_WORDS]; /* a bit per zero BLKDEV_DIRTY_BLOCK of data */
};

struct disk_reader {
	int fd;
	uint64_t size;
	pthread_t th;
	bool started, stop, eof;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct disk_rd_slot slot[DISK_RD_SLOTS];
	unsigned head, count; /* slots head .. head + count - 1 are ready */
	int err;              /* the read that failed, -errno */
	uint64_t read_ns;     /* time in reads and zero scans */
};

/* A bit per zero block of data[0, len). */
void disk_zero_map(const uint8_t *data, uint64_t len, uint64_t *zmap);

int disk_reader_start(struct disk_reader *r, int fd, uint64_t size);
/* The next piece in order, or NULL: *err 0 at the end of the image, else
 * the read's -errno. */
struct disk_rd_slot *disk_reader_next(struct disk_reader *r, int *err);
/* The piece from disk_reader_next is sent: its slot is free again. */
void disk_reader_release(struct disk_reader *r);
void disk_reader_stop(struct disk_reader *r);

#endif
