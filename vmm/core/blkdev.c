#include "vmm/core/blkdev.h"

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

#define DIGEST_SAMPLES 64
#define DIGEST_BLOCK 4096

/* ---- the image ------------------------------------------------------- */

static int open_image(const struct disk_opts *o, char *err, size_t errlen)
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

static int image_size(int fd, const char *path, uint64_t *size, char *err, size_t errlen)
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
static int take_lock(struct blkdev *bd, char *err, size_t errlen)
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

static void drop_lock(struct blkdev *bd)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	if (bd->locked && fcntl(bd->fd, F_OFD_SETLK, &fl) == 0)
		bd->locked = false;
}

int blkdev_probe(const struct disk_opts *o, uint64_t *size, char *err, size_t errlen)
{
	int fd = open_image(o, err, errlen), ret;

	if (fd < 0)
		return fd;
	ret = image_size(fd, o->path, size, err, errlen);
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

static int be_read(void *opaque, uint64_t off, void *buf, size_t len)
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
	ret = bd->fd = open_image(o, err, errlen);
	if (ret < 0)
		goto fail;
	ret = image_size(bd->fd, o->path, &bd->size, err, errlen);
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
		ret = take_lock(bd, err, errlen);
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
	conf.be = (struct virtio_blk_backend){ be_read, be_write, be_flush, be_discard,
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

/* ---- migration's hand-over ------------------------------------------- */

int blkdev_inactivate(struct blkdev *bd, char *err, size_t errlen)
{
	/* Requests run whole under the device lock and the devices are
	 * quiesced: nothing is in flight, so the flush covers every write
	 * the guest was told is done. */
	if (!bd->o.readonly && fdatasync(bd->fd) < 0) {
		snprintf(err, errlen, "--disk %s: fdatasync: %s", bd->o.path, strerror(errno));
		return -errno;
	}
	bd->active = false;
	drop_lock(bd);
	return 0;
}

int blkdev_activate(struct blkdev *bd, int wait_ms, char *err, size_t errlen)
{
	uint64_t end = clock_now_ns() + (uint64_t)wait_ms * 1000000u, size;
	int fd, ret;

	/* A fresh open: on NFS, close-to-open consistency revalidates what
	 * the peer wrote; locally the page cache is the peer's own. */
	fd = open_image(&bd->o, err, errlen);
	if (fd < 0)
		return fd;
	ret = image_size(fd, bd->o.path, &size, err, errlen);
	if (!ret && size != bd->size) {
		snprintf(err, errlen, "--disk %s: the image is %llu bytes now, %llu before",
			 bd->o.path, (unsigned long long)size, (unsigned long long)bd->size);
		ret = -EINVAL;
	}
	if (ret) {
		close(fd);
		return ret;
	}
	if (bd->locked)
		drop_lock(bd);
	close(bd->fd);
	bd->fd = fd;
	for (;;) {
		ret = take_lock(bd, err, errlen);
		if (ret != -EAGAIN || clock_now_ns() >= end)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000L }, NULL);
	}
	if (ret)
		return ret;
	if (bd->o.cache != DISK_CACHE_NONE)
		posix_fadvise(bd->fd, 0, 0, POSIX_FADV_DONTNEED);
	bd->active = !bd->o.readonly;
	return 0;
}

void blkdev_request_activate(struct blkdev *bd)
{
	__atomic_store_n(&bd->reactivate, true, __ATOMIC_RELEASE);
	vio_wake(&bd->io, -1);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

int blkdev_digest(struct blkdev *bd, uint64_t *out, char *err, size_t errlen)
{
	uint64_t nblk = bd->size / DIGEST_BLOCK, h = 14695981039346656037ULL;
	uint8_t *buf = NULL;
	uint8_t sz[8];
	int ret = 0;

	if (posix_memalign((void **)&buf, 4096, DIGEST_BLOCK)) {
		snprintf(err, errlen, "blkdev_digest: out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < 8; i++)
		sz[i] = (uint8_t)(bd->size >> (8 * i));
	h = fnv(h, sz, 8);
	/* Spread over the image, the first and the last block included. */
	for (uint64_t i = 0; i < DIGEST_SAMPLES && nblk && !ret; i++) {
		uint64_t blk = nblk > 1 ? i * (nblk - 1) / (DIGEST_SAMPLES - 1) : 0;

		ret = be_read(bd, blk * DIGEST_BLOCK, buf, DIGEST_BLOCK);
		h = fnv(h, buf, DIGEST_BLOCK);
	}
	free(buf);
	if (ret) {
		snprintf(err, errlen, "--disk %s: reading it for the digest: %s", bd->o.path,
			 strerror(-ret));
		return ret;
	}
	*out = h;
	return 0;
}

/* ---- a migration that streams the disk ------------------------------ */

int blkdev_dirty_start(struct blkdev *bd, char *err, size_t errlen)
{
	uint64_t bits = (bd->size + BLKDEV_DIRTY_BLOCK - 1) / BLKDEV_DIRTY_BLOCK;
	uint64_t *d = calloc((bits + 63) / 64, sizeof(uint64_t));

	if (!d) {
		snprintf(err, errlen, "disk dirty bitmap: out of memory");
		return -ENOMEM;
	}
	device_list_lock(&bd->vm->devices);
	bd->dirty_bits = bits;
	bd->dirty = d;
	device_list_unlock(&bd->vm->devices);
	return 0;
}

void blkdev_dirty_stop(struct blkdev *bd)
{
	uint64_t *d;

	/* Writes mark under the device lock: none is using it after this. */
	device_list_lock(&bd->vm->devices);
	d = bd->dirty;
	bd->dirty = NULL;
	device_list_unlock(&bd->vm->devices);
	free(d);
}

uint64_t blkdev_dirty_count(struct blkdev *bd)
{
	uint64_t n = 0;

	for (uint64_t i = 0; bd->dirty && i < (bd->dirty_bits + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&bd->dirty[i], __ATOMIC_ACQUIRE));
	return n;
}

void blkdev_dirty_harvest(struct blkdev *bd, uint64_t *out)
{
	for (uint64_t i = 0; bd->dirty && i < (bd->dirty_bits + 63) / 64; i++)
		out[i] = __atomic_exchange_n(&bd->dirty[i], 0, __ATOMIC_ACQ_REL);
}

int blkdev_copy_write(struct blkdev *bd, uint64_t off, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(bd->fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

int blkdev_copy_zero(struct blkdev *bd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[65536] __attribute__((aligned(4096)));
	int ret = 0;

	if (fallocate(bd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	for (uint64_t done = 0; done < len && !ret; done += sizeof(zero))
		ret = blkdev_copy_write(bd, off + done, zero,
					len - done < sizeof(zero) ? len - done : sizeof(zero));
	return ret;
}

int blkdev_prepare_copy(struct disk_opts *o, uint64_t size, char *err, size_t errlen)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	uint64_t have;
	int fd, ret;

	o->fresh = false;
	fd = open(o->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		/* Reserve it all now: a full file system refuses here, before
		 * any RAM moves, not half-way through the copy. */
		ret = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
		if (!ret)
			ret = -posix_fallocate(fd, 0, (off_t)size);
		if (ret == -EOPNOTSUPP || ret == -EINVAL)
			ret = 0; /* the file system cannot reserve: sparse, as it is */
		if (ret) {
			snprintf(err, errlen, "--disk %s: no room for the VM's %llu-byte disk: %s",
				 o->path, (unsigned long long)size, strerror(-ret));
			close(fd);
			unlink(o->path);
			return ret;
		}
		/* Reserved blocks read as zeros but count as data for
		 * SEEK_DATA; drop them again so the file stays sparse where
		 * the source's is. */
		fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
		close(fd);
		o->fresh = true;
		return 0;
	}
	if (errno != EEXIST) {
		snprintf(err, errlen, "--disk %s: %s", o->path, strerror(errno));
		return -errno;
	}
	fd = open_image(o, err, errlen);
	if (fd < 0)
		return fd;
	ret = image_size(fd, o->path, &have, err, errlen);
	if (!ret && have != size) {
		snprintf(err, errlen, "--disk %s exists with %llu bytes, the VM's disk has %llu",
			 o->path, (unsigned long long)have, (unsigned long long)size);
		ret = -EINVAL;
	}
	if (!ret && fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		snprintf(err, errlen, "--disk %s: the image is in use by another VM (it holds its "
			 "lock)", o->path);
		ret = -EAGAIN;
	}
	close(fd);
	return ret;
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
