/* The disk section. Streamed (--migrate-disk, copy.c): the image's bytes
 * move in the passes, and in the pause the source sends DISK with the
 * digest the target checks after its fdatasync. On shared storage (both
 * hosts see one image) nothing moves but the hand-over. In the pause the source has no request in
 * flight (the devices are quiesced), fdatasyncs, releases the image's lock
 * and sends DISK: the image's size and a digest of sampled blocks read
 * after the flush. On END the target takes the lock, reopens the image and
 * drops its cached pages, reads the same blocks and compares before it
 * says READY: an image that is not the one the source flushed fails the
 * migration. Until COMMIT any failure gives the lock back to the source
 * (its disk's I/O thread takes it again before the guest's next request;
 * the target lets go of it when it exits). After COMMIT without RUNNING
 * the source keeps its hands off: the guest may run on the target.
 * docs/storage.md. */
#include "migrate/mig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/disk/disk_int.h"
#include "migrate/disk/writer.h"
#include "migrate/section.h"
#include "vmm/core/blkdev.h"
#include "vmm/core/clock.h"
#include "vmm/core/vm.h"

struct disk_sec {
	bool handed_over; /* source: flushed and unlocked in this migration */
	bool got;         /* target: DISK received */
	uint64_t size, digest;
	uint32_t flags;
	double cost_ms;   /* a flush and a digest, measured in the probe */
	bool copy;        /* source: the disk is streamed */
	struct disk_copy dc;
	struct disk_writer wr; /* target: writes the DISK_DATA frames */
	uint64_t flush_ns;     /* target: in the fdatasyncs of the copy */
};

static void *disk_create(void)
{
	return calloc(1, sizeof(struct disk_sec));
}

static void disk_destroy(void *sec)
{
	struct disk_sec *d = sec;

	disk_copy_cleanup(&d->dc);
	disk_writer_stop(&d->wr);
	free(d);
}

static int disk_save_setup(void *sec, struct mig_src_env *env)
{
	struct disk_sec *d = sec;
	struct blkdev *bd = env->vm->blkdev;

	d->copy = bd && env->t->disk_copy;
	if (!d->copy)
		return 0;
	/* A snapshot's one pass runs in the pause: nothing to track. */
	return disk_copy_setup(&d->dc, bd, !env->file, env->err, env->errlen);
}

/* The copy's figures into the stats, after every pass (a failed migration
 * reports how far it got). */
static void publish_src(struct disk_sec *d, struct mig *m)
{
	const struct disk_copy *dc = &d->dc;

	pthread_mutex_lock(&m->lock);
	m->st.disk_data_bytes = dc->data_bytes;
	m->st.disk_zero_bytes = dc->zero_bytes;
	m->st.disk_hole_bytes = dc->hole_bytes;
	m->st.disk_dirty_blocks = dc->dirty_blocks;
	m->st.disk_rounds = dc->dirty_rounds + (dc->bulk_ns ? 1 : 0);
	m->st.disk_bulk_ms = (double)dc->bulk_ns / 1e6;
	m->st.disk_bulk_Bps = dc->bulk_ns ? (double)dc->bd->size * 1e9 / (double)dc->bulk_ns : 0;
	m->st.disk_read_ms = (double)dc->read_ns / 1e6;
	pthread_mutex_unlock(&m->lock);
}

static int disk_save_iterate(void *sec, struct mig_src_env *env, struct mig_pass *p)
{
	struct disk_sec *d = sec;
	struct blkdev *bd = env->vm->blkdev;
	int ret;

	/* Shared: flush while the guest runs, so that the flush in the pause
	 * has only the last pass's writes left. */
	if (!d->copy && bd && !bd->o.readonly && !p->final && !env->file &&
	    fdatasync(bd->fd) < 0) {
		snprintf(env->err, env->errlen, "--disk %s: fdatasync: %s", bd->o.path,
			 strerror(errno));
		return -errno;
	}
	if (!d->copy)
		return 0;
	ret = p->round == 0 ? disk_copy_bulk(&d->dc, env) : disk_copy_dirty(&d->dc, env);
	publish_src(d, env->m);
	/* A round 0 in the pause (a snapshot) leaves nothing behind; a live
	 * one's blocks written meanwhile follow in the next rounds. */
	return ret;
}

static int disk_save_pending(void *sec, struct mig_src_env *env, struct mig_pass *p,
			     struct mig_pending *out)
{
	struct disk_sec *d = sec;

	(void)env;
	(void)p;
	if (d->copy)
		disk_copy_pending(&d->dc, out);
	return 0;
}

/* Guest paused: what the flush and the digest cost in the pause. */
static int disk_save_probe(void *sec, struct mig_src_env *env)
{
	struct disk_sec *d = sec;
	struct blkdev *bd = env->vm->blkdev;
	uint64_t t = clock_now_ns(), digest;

	if (!bd)
		return 0;
	/* Streamed, the source's image is not flushed in the pause. */
	if (!bd->o.readonly && !env->t->disk_copy && fdatasync(bd->fd) < 0) {
		snprintf(env->err, env->errlen, "--disk %s: fdatasync: %s", bd->o.path,
			 strerror(errno));
		return -errno;
	}
	if (blkdev_digest(bd, &digest, env->err, env->errlen) < 0)
		return -EIO;
	d->cost_ms = clock_ms_since(t);
	return 0;
}

static double disk_save_cost_ms(void *sec, struct mig_src_env *env)
{
	(void)env;
	return ((struct disk_sec *)sec)->cost_ms;
}

static int disk_save_complete(void *sec, struct mig_src_env *env, struct mig_end *end)
{
	struct disk_sec *d = sec;
	struct blkdev *bd = env->vm->blkdev;
	uint8_t b[DISK_LEN] = { 0 };
	uint64_t digest;
	int ret;

	(void)end;
	if (!bd)
		return 0;
	if (d->copy) {
		/* The source keeps its own image; the target's has it all now. */
		ret = blkdev_digest(bd, &digest, env->err, env->errlen);
		if (ret)
			return ret;
		le_put64(b, bd->size);
		le_put64(b + 8, digest);
		le_put32(b + 16, DISK_FLAG_STREAMED);
		fprintf(stderr, "minivmm: disk copied: %llu MiB of data, %llu MiB of zero runs (%llu "
			"MiB holes unread), %llu dirty blocks re-sent\n",
			(unsigned long long)(d->dc.data_bytes >> 20),
			(unsigned long long)(d->dc.zero_bytes >> 20),
			(unsigned long long)(d->dc.hole_bytes >> 20),
			(unsigned long long)d->dc.dirty_blocks);
		return stream_send(env->s, ST_DISK, b, DISK_LEN, env->err, env->errlen);
	}
	ret = blkdev_inactivate(bd, env->err, env->errlen);
	if (ret)
		return ret;
	d->handed_over = true;
	ret = blkdev_digest(bd, &digest, env->err, env->errlen);
	if (ret)
		return ret;
	le_put64(b, bd->size);
	le_put64(b + 8, digest);
	le_put32(b + 16, DISK_FLAG_FLUSHED);
	return stream_send(env->s, ST_DISK, b, DISK_LEN, env->err, env->errlen);
}

static void disk_save_cleanup(void *sec, struct mig_src_env *env, bool ok)
{
	struct disk_sec *d = sec;
	bool committed;

	disk_copy_cleanup(&d->dc);
	if (ok || !d->handed_over || !env->vm->blkdev)
		return;
	pthread_mutex_lock(&env->m->lock);
	committed = env->m->state == MIG_COMMITTED;
	pthread_mutex_unlock(&env->m->lock);
	/* COMMIT went out: the guest may write the image on the target now. */
	if (committed)
		return;
	blkdev_request_activate(env->vm->blkdev);
}

static const uint32_t disk_frames[] = { ST_DISK, ST_DISK_DATA, 0 };

static int load_data(struct disk_sec *d, struct mig_tgt_env *env, const struct stream_hdr *h)
{
	struct blkdev *bd = env->vm->blkdev;

	if (!bd || !bd->o.copy_target || d->got) {
		snprintf(env->err, env->errlen, "protocol error: DISK_DATA for %s",
			 !bd ? "a VM without a disk" : d->got ? "a disk already handed over" :
			 "a disk on shared storage");
		return -EPROTO;
	}
	if (!d->wr.started) {
		int ret = disk_writer_start(&d->wr, bd);

		if (ret) {
			snprintf(env->err, env->errlen, "disk copy: the writer thread: %s",
				 strerror(-ret));
			return ret;
		}
	}
	return disk_copy_load(&d->wr, bd, env, h);
}

static int disk_load_frame(void *sec, struct mig_tgt_env *env, const struct stream_hdr *h)
{
	struct disk_sec *d = sec;
	uint8_t b[DISK_LEN];
	int ret;

	if (h->type == ST_DISK_DATA)
		return load_data(d, env, h);
	ret = stream_recv_fixed(env->s, ST_DISK, h->len, b, DISK_LEN, env->err, env->errlen);
	if (ret)
		return ret;
	if (d->got) {
		snprintf(env->err, env->errlen, "protocol error: a second DISK from the source");
		return -EPROTO;
	}
	d->got = true;
	d->size = le_get64(b);
	d->digest = le_get64(b + 8);
	d->flags = le_get32(b + 16);
	if ((d->flags != DISK_FLAG_FLUSHED && d->flags != DISK_FLAG_STREAMED) || le_get32(b + 20)) {
		snprintf(env->err, env->errlen, "bad DISK: flags 0x%x", d->flags);
		return -EPROTO;
	}
	return 0;
}

/* The writer's queue written, then on the disk. */
static int flush_copy(struct disk_sec *d, struct blkdev *bd, struct mig_tgt_env *env)
{
	int ret = disk_writer_drain(&d->wr);
	uint64_t t = clock_now_ns();

	if (ret) {
		snprintf(env->err, env->errlen, "--disk %s: writing the VM's disk: %s", bd->o.path,
			 strerror(-ret));
		return ret;
	}
	ret = fdatasync(bd->fd) < 0 ? -errno : 0;
	d->flush_ns += clock_now_ns() - t;
	pthread_mutex_lock(&env->m->lock);
	env->m->st.disk_data_bytes = d->wr.data_bytes;
	env->m->st.disk_zero_bytes = d->wr.zero_bytes;
	env->m->st.disk_write_ms = (double)d->wr.write_ns / 1e6;
	env->m->st.disk_flush_ms = (double)d->flush_ns / 1e6;
	pthread_mutex_unlock(&env->m->lock);
	if (ret)
		snprintf(env->err, env->errlen, "--disk %s: fdatasync: %s", bd->o.path,
			 strerror(-ret));
	return ret;
}

/* Before the PONG of each pass: what the pass wrote is on the disk, so the
 * flush in the pause has only the last round's blocks to write. */
static int disk_load_drain(void *sec, struct mig_tgt_env *env)
{
	struct blkdev *bd = env->vm->blkdev;

	if (!bd || !bd->o.copy_target)
		return 0;
	return flush_copy(sec, bd, env);
}

static int disk_load_complete(void *sec, struct mig_tgt_env *env, const struct mig_end *end)
{
	struct disk_sec *d = sec;
	struct blkdev *bd = env->vm->blkdev;
	uint64_t digest;
	int ret;

	(void)end;
	if (!bd) {
		if (!d->got)
			return 0;
		snprintf(env->err, env->errlen, "the source handed over a disk this VM has not");
		return -EPROTO;
	}
	if (!d->got) {
		snprintf(env->err, env->errlen, "the source did not hand its disk over (no DISK)");
		return -EPROTO;
	}
	if (d->size != bd->size) {
		snprintf(env->err, env->errlen, "the disk was %llu bytes on the source, %llu here",
			 (unsigned long long)d->size, (unsigned long long)bd->size);
		return -EPROTO;
	}
	if ((d->flags == DISK_FLAG_STREAMED) != bd->o.copy_target) {
		snprintf(env->err, env->errlen, "protocol error: the disk was %s, DEVICES said %s",
			 d->flags == DISK_FLAG_STREAMED ? "streamed" : "handed over",
			 bd->o.copy_target ? "streamed" : "shared");
		return -EPROTO;
	}
	if (bd->o.copy_target) {
		/* Everything written: on the disk before READY. */
		ret = flush_copy(d, bd, env);
	} else {
		ret = blkdev_activate(bd, 10000, env->err, env->errlen);
	}
	if (!ret)
		ret = blkdev_digest(bd, &digest, env->err, env->errlen);
	if (ret)
		return ret;
	if (digest != d->digest) {
		if (bd->o.copy_target)
			snprintf(env->err, env->errlen, "--disk %s: the copy differs from the source's "
				 "image (sampled blocks)", bd->o.path);
		else
			snprintf(env->err, env->errlen, "--disk %s is not the image the source flushed "
				 "(its sampled blocks differ): not the same file?", bd->o.path);
		return -EIO;
	}
	fprintf(stderr, bd->o.copy_target ? "minivmm: disk %s received from the source (flushed, "
		"digest verified)\n" : "minivmm: disk %s taken over from the source (flushed there, "
		"digest verified)\n", bd->o.path);
	return 0;
}

const struct mig_section_ops disk_section_ops = {
	.name = "disk",
	.create = disk_create,
	.destroy = disk_destroy,
	.save_setup = disk_save_setup,
	.save_iterate = disk_save_iterate,
	.save_pending = disk_save_pending,
	.save_probe = disk_save_probe,
	.save_cost_ms = disk_save_cost_ms,
	.save_complete = disk_save_complete,
	.save_cleanup = disk_save_cleanup,
	.frames = disk_frames,
	.load_frame = disk_load_frame,
	.load_drain = disk_load_drain,
	.load_complete = disk_load_complete,
};
