/* The disk streamed with the VM (--migrate-disk; docs/storage.md): a bulk
 * pass over the whole image in round 0 (holes found with SEEK_DATA /
 * SEEK_HOLE are sent as zero runs without being read, zero blocks inside
 * data too), then in each later round the blocks the guest wrote since the
 * last one (the back-end's dirty bitmap), the last of them in the pause.
 * The target writes each run where it belongs, after checking it lies
 * inside the image. */
#include "migrate/disk/disk_int.h"
#include "migrate/disk/reader.h"
#include "migrate/disk/writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/policy/estimator.h"
#include "migrate/section.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/clock.h"


int disk_copy_setup(struct disk_copy *dc, struct blkdev *bd, bool track, char *err,
		    size_t errlen)
{
	void *buf = NULL;
	int ret;

	memset(dc, 0, sizeof(*dc));
	dc->bd = bd;
	if (posix_memalign(&buf, 4096, DISK_RD_ROOM + DISK_DATA_MAX)) {
		snprintf(err, errlen, "disk copy: out of memory");
		return -ENOMEM;
	}
	dc->buf = buf;
	if (!track)
		return 0;
	dc->harvest = calloc((bd->size / BLKDEV_DIRTY_BLOCK + 64) / 64, sizeof(uint64_t));
	if (!dc->harvest) {
		snprintf(err, errlen, "disk copy: out of memory");
		return -ENOMEM;
	}
	ret = blkdev_dirty_start(bd, err, errlen);
	if (ret)
		return ret;
	dc->tracking = true;
	dc->last_ns = clock_now_ns();
	return 0;
}

void disk_copy_cleanup(struct disk_copy *dc)
{
	if (dc->tracking)
		blkdev_dirty_stop(dc->bd);
	dc->tracking = false;
	free(dc->buf);
	free(dc->harvest);
	dc->buf = NULL;
	dc->harvest = NULL;
}

static int pace(struct mig_src_env *env, uint64_t bytes)
{
	uint64_t ns;

	if (env->m->cancel) {
		snprintf(env->err, env->errlen, "cancelled");
		return -ECANCELED;
	}
	if (!env->rate)
		return 0;
	ns = est_rate_account(env->rate, bytes, clock_now_ns());
	if (ns)
		clock_sleep_ns(ns);
	return 0;
}

/* One frame; data (when not a zero run) is at hdr + DISK_DATA_HDR. */
static int send_frame(struct disk_copy *dc, struct mig_src_env *env, uint8_t *hdr,
		      uint64_t off, uint64_t len, uint32_t flags)
{
	uint32_t plen = DISK_DATA_HDR + (flags & DISK_DATA_ZERO ? 0 : (uint32_t)len);
	int ret;

	le_put64(hdr, off);
	le_put32(hdr + 8, (uint32_t)len);
	le_put32(hdr + 12, flags);
	ret = stream_send(env->s, ST_DISK_DATA, hdr, plen, env->err, env->errlen);
	if (!ret)
		ret = pace(env, plen + STREAM_HDR_LEN);
	if (flags & DISK_DATA_ZERO)
		dc->zero_bytes += len;
	else
		dc->data_bytes += len;
	return ret;
}

/* [off, off + len) from data (DISK_RD_ROOM of room in front of it), its
 * zero blocks (zmap) as zero runs; len at most DISK_DATA_MAX. Each frame's
 * header goes just before its data, over bytes already sent. */
static int send_runs(struct disk_copy *dc, struct mig_src_env *env, uint8_t *data, uint64_t off,
		     uint64_t len, const uint64_t *zmap, uint32_t flags)
{
	uint64_t run = 0;
	bool zero = false;

	for (uint64_t at = 0, i = 0; at < len; i++) {
		uint64_t b = len - at < BLKDEV_DIRTY_BLOCK ? len - at : BLKDEV_DIRTY_BLOCK;
		bool z = zmap[i / 64] >> (i % 64) & 1;
		int ret;

		if (run && z != zero) {
			ret = send_frame(dc, env, data + at - run - DISK_DATA_HDR, off + at - run, run,
					 flags | (zero ? DISK_DATA_ZERO : 0));
			if (ret)
				return ret;
			run = 0;
		}
		zero = z;
		run += b;
		at += b;
	}
	return send_frame(dc, env, data + len - run - DISK_DATA_HDR, off + len - run, run,
			  flags | (zero ? DISK_DATA_ZERO : 0));
}

/* A dirty run: read here (the rounds after the bulk pass are small). */
static int send_data(struct disk_copy *dc, struct mig_src_env *env, uint64_t off, uint64_t len)
{
	uint8_t *data = dc->buf + DISK_RD_ROOM;
	uint64_t zmap[DISK_ZMAP_WORDS];
	ssize_t n;

	for (uint64_t done = 0; done < len;) {
		n = pread(dc->bd->fd, data + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(env->err, env->errlen, "--disk %s: reading it for the copy: %s",
				 dc->bd->o.path, n < 0 ? strerror(errno) : "short read");
			return n < 0 ? -errno : -EIO;
		}
		done += (uint64_t)n;
	}
	disk_zero_map(data, len, zmap);
	return send_runs(dc, env, data, off, len, zmap, 0);
}

static int send_hole(struct disk_copy *dc, struct mig_src_env *env, uint64_t off, uint64_t len)
{
	int ret = send_frame(dc, env, dc->buf + DISK_RD_ROOM - DISK_DATA_HDR, off, len,
			     DISK_DATA_ZERO | DISK_DATA_BULK);

	if (!ret)
		dc->hole_bytes += len;
	return ret;
}

/* The reader thread reads ahead while this one sends. */
int disk_copy_bulk(struct disk_copy *dc, struct mig_src_env *env)
{
	struct disk_reader *r = &dc->rd;
	struct disk_rd_slot *sl;
	uint64_t t = clock_now_ns();
	int ret = disk_reader_start(r, dc->bd->fd, dc->bd->size), err = 0;

	if (ret) {
		snprintf(env->err, env->errlen, "disk copy: the reader thread: %s", strerror(-ret));
		return ret;
	}
	while (!ret && (sl = disk_reader_next(r, &err))) {
		ret = sl->hole ? send_hole(dc, env, sl->off, sl->len) :
		      send_runs(dc, env, sl->buf + DISK_RD_ROOM, sl->off, sl->len, sl->zmap,
				DISK_DATA_BULK);
		disk_reader_release(r);
	}
	if (!ret && err) {
		snprintf(env->err, env->errlen, "--disk %s: reading it for the copy: %s",
			 dc->bd->o.path, strerror(-err));
		ret = err;
	}
	dc->read_ns = r->read_ns;
	disk_reader_stop(r);
	dc->bulk_ns = clock_now_ns() - t;
	return ret;
}

int disk_copy_dirty(struct disk_copy *dc, struct mig_src_env *env)
{
	uint64_t bits = dc->bd->dirty_bits, size = dc->bd->size, max = DISK_DATA_MAX /
							  BLKDEV_DIRTY_BLOCK;
	int ret = 0;

	if (!dc->tracking)
		return 0;
	memset(dc->harvest, 0, (bits + 63) / 64 * sizeof(uint64_t));
	blkdev_dirty_harvest(dc->bd, dc->harvest);
	dc->last_ns = clock_now_ns();
	dc->dirty_rounds++;
	for (uint64_t b = 0; b < bits && !ret;) {
		uint64_t n = 0, off, len;

		if (!(dc->harvest[b / 64] >> (b % 64) & 1)) {
			b++;
			continue;
		}
		while (b + n < bits && n < max && (dc->harvest[(b + n) / 64] >> ((b + n) % 64) & 1))
			n++;
		off = b * BLKDEV_DIRTY_BLOCK;
		len = n * BLKDEV_DIRTY_BLOCK;
		if (len > size - off)
			len = size - off;
		dc->dirty_blocks += n;
		ret = send_data(dc, env, off, len);
		b += n;
	}
	return ret;
}

void disk_copy_pending(struct disk_copy *dc, struct mig_pending *out)
{
	uint64_t n, bytes;
	double s;

	if (!dc->tracking)
		return;
	n = blkdev_dirty_count(dc->bd);
	bytes = n * (BLKDEV_DIRTY_BLOCK + DISK_DATA_HDR + STREAM_HDR_LEN);
	s = (double)(clock_now_ns() - dc->last_ns) / 1e9;
	out->bytes += bytes;
	if (s > 0)
		out->rate_Bps += (double)bytes / s;
}

int disk_copy_load(struct disk_writer *w, struct blkdev *bd, struct mig_tgt_env *env,
		   const struct stream_hdr *h)
{
	uint8_t hdr[DISK_DATA_HDR];
	struct disk_wr_slot *slot;
	uint64_t off, len;
	uint32_t flags;
	int ret;

	if (h->len < DISK_DATA_HDR) {
		snprintf(env->err, env->errlen, "bad DISK_DATA: %u bytes", h->len);
		return -EPROTO;
	}
	ret = stream_read_all(env->s, hdr, DISK_DATA_HDR, env->err, env->errlen);
	if (ret)
		return ret;
	off = le_get64(hdr);
	len = le_get32(hdr + 8);
	flags = le_get32(hdr + 12);
	if ((flags & ~(DISK_DATA_ZERO | DISK_DATA_BULK)) || len == 0 || off % 512 || len % 512 ||
	    off > bd->size || len > bd->size - off ||
	    h->len != DISK_DATA_HDR + (flags & DISK_DATA_ZERO ? 0 : len) ||
	    (!(flags & DISK_DATA_ZERO) && len > DISK_DATA_MAX)) {
		snprintf(env->err, env->errlen, "bad DISK_DATA: %llu bytes at %llu (flags 0x%x, frame "
			 "%u bytes) for a %llu-byte disk", (unsigned long long)len,
			 (unsigned long long)off, flags, h->len, (unsigned long long)bd->size);
		return -EPROTO;
	}
	/* A new image reads as zeros already. */
	if ((flags & DISK_DATA_ZERO) && (flags & DISK_DATA_BULK) && bd->o.fresh)
		return 0;
	/* The writer writes it while the next frame comes in; a failed
	 * write shows here at a later frame, or at the drain. */
	slot = disk_writer_slot(w, &ret);
	if (!slot)
		goto fail;
	slot->off = off;
	slot->len = len;
	slot->zero = flags & DISK_DATA_ZERO;
	if (!slot->zero) {
		ret = stream_read_all(env->s, slot->buf + DISK_WR_ROOM, len, env->err, env->errlen);
		if (ret)
			return ret;
	}
	disk_writer_queue(w);
	return 0;
fail:
	snprintf(env->err, env->errlen, "--disk %s: writing the VM's disk: %s", bd->o.path,
		 strerror(-ret));
	return ret;
}
