/* The VM's disk: a virtio-blk device model on a raw image file, its
 * requests run by an I/O thread of its own (vmm/core/vio.h: ioeventfd,
 * irqfd), never on a vCPU. cache=none opens the image O_DIRECT (the
 * device then asks the guest for I/O in the file system's direct-I/O
 * block, and moves data through its aligned bounce buffer). The image
 * carries an OFD lock (F_OFD_SETLK; write lock, or read lock when
 * read-only) for as long as this VM may write it: a second VM is refused.
 * Migration hands the image over with inactivate (source: flushed, lock
 * released) and activate (target: lock taken, nothing cached from before
 * read), and checks both ends see the same bytes with blkdev_digest. */
#ifndef MINIVMM_BLKDEV_H
#define MINIVMM_BLKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/core/diskopt.h"
#include "vmm/core/vio.h"

struct vm;
struct virtio_blk;

struct blkdev {
	struct vio io;
	struct vm *vm;
	struct virtio_blk *blk; /* on the device list, which owns it */
	struct disk_opts o;
	int fd;
	uint64_t size;
	uint32_t align; /* what I/O must be aligned to (512, or O_DIRECT's) */
	bool locked;
	bool active;    /* this VM may do I/O on the image */
	bool reactivate; /* the I/O thread must take the image back first */
	/* Migration with the disk streamed: a bit per BLKDEV_DIRTY_BLOCK the
	 * guest wrote (set after the write is done, under the device lock),
	 * harvested by the migration thread; NULL when not tracking. */
	uint64_t *dirty;
	uint64_t dirty_bits;
};

#define BLKDEV_DIRTY_BLOCK 4096u

/* Opens the image (size a multiple of 512, at least one sector), locks it
 * unless o->defer_lock, creates the device on vm's device list and PCI
 * bus and starts the I/O thread. */
int blkdev_create(struct vm *vm, const struct disk_opts *o, struct blkdev **out,
		  char *err, size_t errlen);
/* The image's size and whether it can be opened as o asks, without
 * locking it (a migration target's first look). */
int blkdev_probe(const struct disk_opts *o, uint64_t *size, char *err, size_t errlen);
/* Source, guest paused and devices quiesced: fdatasync, lock released. */
int blkdev_inactivate(struct blkdev *bd, char *err, size_t errlen);
/* Takes the lock (retrying for up to wait_ms while a peer lets go), then
 * reopens the image and drops its cached pages, so nothing read before
 * the peer's flush is used. */
int blkdev_activate(struct blkdev *bd, int wait_ms, char *err, size_t errlen);
/* Source, after a failed hand-over: the I/O thread takes the lock back
 * (retrying while the target still holds it, up to 30 s) before it runs
 * another request; until then requests wait in the ring. */
void blkdev_request_activate(struct blkdev *bd);
/* A digest of the size and of sampled 4 KiB blocks, read from the image
 * as it is now (after a flush on the source, after activate on the
 * target): the two ends compare it before the target says READY. */
int blkdev_digest(struct blkdev *bd, uint64_t *out, char *err, size_t errlen);
/* Dirty-block tracking for a migration that streams the disk. */
int blkdev_dirty_start(struct blkdev *bd, char *err, size_t errlen);
void blkdev_dirty_stop(struct blkdev *bd);
uint64_t blkdev_dirty_count(struct blkdev *bd);
/* Moves the set bits into out (dirty_bits bits, zeroed by the caller's
 * use), clearing them: a write that lands meanwhile sets its bit again. */
void blkdev_dirty_harvest(struct blkdev *bd, uint64_t *out);
/* A migration target's side (copy_target): image bytes as they came. */
int blkdev_copy_write(struct blkdev *bd, uint64_t off, const void *buf, size_t len);
int blkdev_copy_zero(struct blkdev *bd, uint64_t off, uint64_t len);
/* The target's first look at an image the disk is streamed into: created
 * at size when missing (space reserved: a file system without room is
 * refused), else it must have that size and no other VM's lock; o->fresh
 * set when created. */
int blkdev_prepare_copy(struct disk_opts *o, uint64_t size, char *err, size_t errlen);
/* Stops the I/O thread (idempotent; before a fork). */
void blkdev_stop(struct blkdev *bd);
void blkdev_destroy(struct blkdev *bd);

#endif
