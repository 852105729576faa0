/* The disk back-end's side of a migration (docs/storage.md): the hand-over
 * of a shared image (flush, lock, digest), dirty-block tracking and the
 * target's writes when the disk is streamed. */
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

#include "vmm/core/blkdev_int.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

#define DIGEST_SAMPLES 64
#define DIGEST_BLOCK 4096
#define COPY_WB_BEHIND (1ULL << 30)

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
	blkdev_drop_lock(bd);
	return 0;
}

int blkdev_activate(struct blkdev *bd, int wait_ms, char *err, size_t errlen)
{
	uint64_t end = clock_now_ns() + (uint64_t)wait_ms * 1000000u, size;
	int fd, ret;

	/* A fresh open: on NFS, close-to-open consistency revalidates what
	 * the peer wrote; locally the page cache is the peer's own. */
	fd = blkdev_open_image(&bd->o, err, errlen);
	if (fd < 0)
		return fd;
	ret = blkdev_image_size(fd, bd->o.path, &size, err, errlen);
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
		blkdev_drop_lock(bd);
	close(bd->fd);
	bd->fd = fd;
	for (;;) {
		ret = blkdev_take_lock(bd, err, errlen);
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

		ret = blkdev_read(bd, blk * DIGEST_BLOCK, buf, DIGEST_BLOCK);
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

/* Start writing [off, off + len) back now, so the disk works while the
 * network does, and wait for what was written COPY_WB_BEHIND before: the
 * receive goes no faster than the disk, and the flush at the end of a pass
 * (before the PONG the source waits for) has at most that much left,
 * however big the disk. */
static void copy_writeback(struct blkdev *bd, uint64_t off, uint64_t len)
{
	sync_file_range(bd->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
	if (off >= COPY_WB_BEHIND)
		sync_file_range(bd->fd, (off_t)(off - COPY_WB_BEHIND), (off_t)len,
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER);
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
	copy_writeback(bd, off, len);
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
	fd = blkdev_open_image(o, err, errlen);
	if (fd < 0)
		return fd;
	ret = blkdev_image_size(fd, o->path, &have, err, errlen);
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

