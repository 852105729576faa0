#include "vmm/core/blkdev.h"
#include "vmm/core/blkdev_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

/* ---- the image ------------------------------------------------------- */

int blkdev_open_image(const struct disk_opts *o, char *err, size_t errlen)
{
	int flags = (o->readonly && !o->copy_target ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    (o->cache == DISK_CACHE_NONE ? O_DIRECT : 0);
	int fd = open(o->path, flags);

	if (fd < 0) {
		int e = errno;

		if (e == EINVAL && o->cache == DISK_CACHE_NONE)
			snprintf(err, errlen, "--disk %s: cache=none: the file system has no O_DIRECT",
				 o->path);
		else
			snprintf(err, errlen, "--disk %s: %s", o->path, strerror(e));
		return -e;
	}
	return fd;
}

int blkdev_image_size(int fd, const char *path, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "--disk %s: fstat: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "--disk %s: not a regular file or block device", path);
		return -EINVAL;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		st.st_size = end < 0 ? 0 : end;
	}
	if (st.st_size < (off_t)VIRTIO_BLK_SECTOR || st.st_size % VIRTIO_BLK_SECTOR) {
		snprintf(err, errlen, "--disk %s: %lld bytes is not a whole number of 512-byte "
			 "sectors (a raw image, at least one sector)", path, (long long)st.st_size);
		return -EINVAL;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

/* O_DIRECT's alignment as the file system states it (statx DIOALIGN),
 * else the page size, which every file system accepts. */
static uint32_t dio_align(int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align >= VIRTIO_BLK_SECTOR &&
	    sx.stx_dio_offset_align <= 4096 && sx.stx_dio_mem_align <= 4096)
		return sx.stx_dio_offset_align;
	return 4096;
}

/* One writer (write lock) or any number of readers (read locks) per
 * image, across processes and hosts that share the file (OFD locks go
 * with the open file, not the process, so two opens in one process
 * conflict too). */
int blkdev_take_lock(struct blkdev *bd, char *err, size_t errlen)
{
	struct flock fl = { .l_type = bd->o.readonly && !bd->o.copy_target ? F_RDLCK : F_WRLCK,
			    .l_whence = SEEK_SET };

	if (fcntl(bd->fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno;

		if (e == EAGAIN || e == EACCES)
			snprintf(err, errlen, "--disk %s: the image is in use by another VM (it holds "
				 "its lock%s)", bd->o.path, bd->o.readonly ? " for writing" : "");
		else
			snprintf(err, errlen, "--disk %s: F_OFD_SETLK: %s", bd->o.path, strerror(e));
		return -(e == EACCES ? EAGAIN : e);
	}
	bd->locked = true;
	return 0;
}

void blkdev_drop_lock(struct blkdev *bd)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	if (bd->locked && fcntl(bd->fd, F_OFD_SETLK, &fl) == 0)
		bd->locked = false;
}

int blkdev_probe(const struct disk_opts *o, uint64_t *size, char *err, size_t errlen)
{
	int fd = blkdev_open_image(o, err, errlen), ret;

	if (fd < 0)
		return fd;
	ret = blkdev_image_size(fd, o->path, size, err, errlen);
	close(fd);
	return ret;
}

/* ---- the device's back-end (its I/O thread, under the device lock) ---- */

/* After the write is done: a migration that harvests the bit first and
 * reads the block then sees the new data, or the bit again next round. */
static void mark_dirty(struct blkdev *bd, uint64_t off, uint64_t len)
{
	uint64_t *d = bd->dirty;

	if (!d || !len)
		return;
	for (uint64_t b = off / BLKDEV_DIRTY_BLOCK; b <= (off + len - 1) / BLKDEV_DIRTY_BLOCK &&
	     b < bd->dirty_bits; b++)
		__atomic_fetch_or(&d[b / 64], 1ULL << (b % 64), __ATOMIC_RELEASE);
}

int blkdev_read(void *opaque, uint64_t off, void *buf, size_t len)
{
	struct blkdev *bd = opaque;

	for (size_t done = 0; done < len;) {
		ssize_t n = pread(bd->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO; /* the image shrank under us */
		done += (size_t)n;
	}
	return 0;
}

static int be_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
	struct blkdev *bd = opaque;

	if (!bd->active)
		return -EROFS;
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(bd->fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	mark_dirty(bd, off, len);
	return 0;
}

static int be_flush(void *opaque)
{
	struct blkdev *bd = opaque;

	if (bd->o.readonly)
		return 0;
	return fdatasync(bd->fd) < 0 ? -errno : 0;
}

static int be_discard(void *opaque, uint64_t off, uint64_t len, bool zeroes)
{
	struct blkdev *bd = opaque;
	int mode = zeroes ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

	if (!bd->active)
		return -EROFS;
	if (fallocate(bd->fd, mode, (off_t)off, (off_t)len) == 0) {
		mark_dirty(bd, off, len);
		return 0;
	}
	/* A discard is advice; zeroes must be there, so write them. */
	if (!zeroes)
		return 0;
	if (fallocate(bd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0) {
		mark_dirty(bd, off, len);
		return 0;
	}
	{
		uint8_t *z = NULL;
		int ret = 0;

		if (posix_memalign((void **)&z, 4096, 65536))
			return -ENOMEM;
		memset(z, 0, 65536);
		for (uint64_t done = 0; done < len && !ret; done += 65536)
			ret = be_write(bd, off + done, z, len - done < 65536 ? len - done : 65536);
		free(z);
		return ret;
	}
}

static void be_wake(void *opaque, int q)
{
	vio_wake(&((struct blkdev *)opaque)->io, q);
}

/* The failed hand-over's other half: the target lets go of the lock when
 * it exits, which may be a moment after the source gave up. */
static void take_back(struct blkdev *bd)
{
	uint64_t end = clock_now_ns() + 30000000000ULL;
	char err[PATH_MAX + 128];
	int ret;

	do {
		ret = blkdev_activate(bd, 100, err, sizeof(err));
	} while (ret == -EAGAIN && !vio_stopping(&bd->io) && clock_now_ns() < end);
	__atomic_store_n(&bd->reactivate, false, __ATOMIC_RELEASE);
	if (ret)
		fprintf(stderr, "minivmm: the disk could not be taken back after the failed "
			"migration: %s; the guest's writes fail\n", err);
}

static void *io_thread(void *arg)
{
	struct blkdev *bd = arg;
	int fds[4];

	while (!vio_stopping(&bd->io)) {
		bool more;

		if (vio_wait(&bd->io, fds, 4) < 0)
			break;
		if (__atomic_load_n(&bd->reactivate, __ATOMIC_ACQUIRE))
			take_back(bd);
		/* Let the lock go between batches so vCPU exits are not starved. */
		do {
			device_list_lock(&bd->vm->devices);
			more = virtio_blk_process(bd->blk);
			device_list_unlock(&bd->vm->devices);
		} while (more && !vio_stopping(&bd->io));
	}
	return NULL;
}

int blkdev_create(struct vm *vm, const struct disk_opts *o, struct blkdev **out,
		  char *err, size_t errlen)
{
	struct blkdev *bd = calloc(1, sizeof(*bd));
	struct virtio_blk_conf conf;
	const char *base;
	int ret;

	*out = NULL;
	if (!bd) {
		snprintf(err, errlen, "blkdev_create: out of memory");
		return -ENOMEM;
	}
	bd->vm = vm;
	bd->o = *o;
	bd->fd = -1;
	ret = vio_init(&bd->io, vm, 1, err, errlen);
	if (ret)
		goto fail;
	ret = bd->fd = blkdev_open_image(o, err, errlen);
	if (ret < 0)
		goto fail;
	ret = blkdev_image_size(bd->fd, o->path, &bd->size, err, errlen);
	if (ret)
		goto fail;
	bd->align = o->cache == DISK_CACHE_NONE ? dio_align(bd->fd) : VIRTIO_BLK_SECTOR;
	if (bd->size % bd->align) {
		snprintf(err, errlen, "--disk %s: cache=none needs the size to be a multiple of %u",
			 o->path, bd->align);
		ret = -EINVAL;
		goto fail;
	}
	if (!o->defer_lock) {
		ret = blkdev_take_lock(bd, err, errlen);
		if (ret)
			goto fail;
		bd->active = !o->readonly;
	}

	memset(&conf, 0, sizeof(conf));
	conf.capacity = bd->size;
	conf.blk_size = bd->align;
	conf.readonly = o->readonly;
	conf.writeback = true;
	base = strrchr(o->path, '/');
	snprintf(conf.serial, sizeof(conf.serial), "%.20s", base ? base + 1 : o->path);
	conf.mem = vio_mem(vm);
	conf.be = (struct virtio_blk_backend){ blkdev_read, be_write, be_flush, be_discard,
					       be_wake, bd };
	conf.irq = vio_irq;
	conf.irq_opaque = &bd->io;
	conf.notify_map = vio_notify_map;
	conf.notify_opaque = &bd->io;
	ret = virtio_blk_create(&vm->devices, vm->pci, &conf, &bd->blk, err, errlen);
	if (ret)
		goto fail;
	ret = vio_setup_irqfd(&bd->io, bd->blk->vp.pci.irq_num, err, errlen);
	if (!ret)
		ret = vio_start(&bd->io, io_thread, bd, "disk", err, errlen);
	if (ret)
		goto fail;
	*out = bd;
	return 0;
fail:
	blkdev_destroy(bd);
	return ret < 0 ? ret : -EINVAL;
}

void blkdev_stop(struct blkdev *bd)
{
	if (bd)
		vio_stop(&bd->io);
}

void blkdev_destroy(struct blkdev *bd)
{
	if (!bd)
		return;
	vio_fini(&bd->io);
	free(bd->dirty);
	if (bd->fd >= 0)
		close(bd->fd); /* the OFD lock goes with it */
	free(bd);
}
