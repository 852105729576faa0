/* Internal to vmm/core/blkdev.c and blkmig.c: the image helpers both use. */
#ifndef MINIVMM_BLKDEV_INT_H
#define MINIVMM_BLKDEV_INT_H

#include <stddef.h>
#include <stdint.h>

struct blkdev;
struct disk_opts;

/* The image opened as o says (read-only, O_DIRECT); fd or -errno. */
int blkdev_open_image(const struct disk_opts *o, char *err, size_t errlen);
/* Its size, which must be whole sectors (at least one). */
int blkdev_image_size(int fd, const char *path, uint64_t *size, char *err, size_t errlen);
/* The OFD lock: -EAGAIN when another VM holds it. */
int blkdev_take_lock(struct blkdev *bd, char *err, size_t errlen);
void blkdev_drop_lock(struct blkdev *bd);
/* pread of all of [off, off + len). */
int blkdev_read(void *bd, uint64_t off, void *buf, size_t len);

#endif
