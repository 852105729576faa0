#include "devices/virtio/blk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCI_CLASS_STORAGE_SCSI 0x010000
#define CONFIG_LEN 60 /* up to write_zeroes_may_unmap and its padding (5.2.4) */

/* Config space offsets (5.2.4). */
enum {
	CFG_CAPACITY = 0, CFG_SIZE_MAX = 8, CFG_SEG_MAX = 12, CFG_BLK_SIZE = 20,
	CFG_MIN_IO = 26, CFG_OPT_IO = 28, CFG_WRITEBACK = 32, CFG_NUM_QUEUES = 34,
	CFG_MAX_DISCARD_SECTORS = 36, CFG_MAX_DISCARD_SEG = 40, CFG_DISCARD_ALIGN = 44,
	CFG_MAX_WZ_SECTORS = 48, CFG_MAX_WZ_SEG = 52, CFG_WZ_MAY_UNMAP = 56,
};

/* A DISCARD / WRITE_ZEROES segment (5.2.6). */
#define DSEG_LEN 16
#define DSEG_F_UNMAP 1u

/* The state after the version byte and the transport: capacity (u64),
 * flags (bit 0 read-only), writeback, 6 reserved bytes. */
#define BLK_OWN_SIZE 16


static void config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_blk *b = dev;
	uint8_t img[CONFIG_LEN] = { 0 };

	virtio_le_put(img + CFG_CAPACITY, b->capacity / VIRTIO_BLK_SECTOR, 8);
	virtio_le_put(img + CFG_SIZE_MAX, VIRTIO_BLK_BOUNCE, 4);
	virtio_le_put(img + CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX, 4);
	virtio_le_put(img + CFG_BLK_SIZE, b->blk_size, 4);
	virtio_le_put(img + CFG_MIN_IO, b->blk_size / VIRTIO_BLK_SECTOR, 2);
	img[CFG_WRITEBACK] = b->writeback;
	virtio_le_put(img + CFG_NUM_QUEUES, 1, 2);
	if (b->be.discard) {
		virtio_le_put(img + CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_DISCARD_SECTORS_MAX, 4);
		virtio_le_put(img + CFG_MAX_DISCARD_SEG, VIRTIO_BLK_DISCARD_SEG_MAX, 4);
		virtio_le_put(img + CFG_DISCARD_ALIGN, b->blk_size / VIRTIO_BLK_SECTOR, 4);
		virtio_le_put(img + CFG_MAX_WZ_SECTORS, VIRTIO_BLK_DISCARD_SECTORS_MAX, 4);
		virtio_le_put(img + CFG_MAX_WZ_SEG, VIRTIO_BLK_DISCARD_SEG_MAX, 4);
		img[CFG_WZ_MAY_UNMAP] = 1;
	}
	if (off < CONFIG_LEN)
		memcpy(data, img + off, len < CONFIG_LEN - off ? len : CONFIG_LEN - off);
}

static void config_write(void *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_blk *b = dev;

	/* Only the writeback byte is the driver's (CONFIG_WCE). */
	if (off == CFG_WRITEBACK && len == 1 && (b->vp.drv_features & VIRTIO_BLK_F_CONFIG_WCE))
		b->writeback = data[0] ? 1 : 0;
}

static void queue_notify(void *dev, int q)
{
	struct virtio_blk *b = dev;

	if (b->be.wake)
		b->be.wake(b->be.opaque, q);
}

static void blk_reset(void *dev)
{
	(void)dev;
}

static void driver_ok(void *dev)
{
	queue_notify(dev, -1);
}

static const struct virtio_dev_ops blk_vops = {
	.config_read = config_read,
	.config_write = config_write,
	.queue_notify = queue_notify,
	.reset = blk_reset,
	.driver_ok = driver_ok,
};

/* ---- requests ------------------------------------------------------- */

/* [sector, sector + len) as bytes inside the image, len whole sectors in
 * the back-end's alignment. */
static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	uint64_t cap = b->capacity / VIRTIO_BLK_SECTOR;

	if (len % VIRTIO_BLK_SECTOR || sector > cap || len / VIRTIO_BLK_SECTOR > cap - sector)
		return false;
	/* O_DIRECT back-ends cannot do less than their block. */
	return (sector * VIRTIO_BLK_SECTOR) % b->blk_size == 0 && len % b->blk_size == 0;
}

/* IN: image -> the chain's writable bytes, less the status byte. */
static uint8_t do_in(struct virtio_blk *b, uint64_t sector, uint64_t len, uint32_t *used)
{
	const struct virtq_mem *m = &b->vp.mem;
	uint64_t off = sector * VIRTIO_BLK_SECTOR;

	if (!range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < VIRTIO_BLK_BOUNCE ? (size_t)(len - done) : VIRTIO_BLK_BOUNCE;

		if (b->be.read(b->be.opaque, off + done, b->bounce, n) ||
		    virtq_chain_write(b->chain, m, done, b->bounce, n) != (int64_t)n)
			return VIRTIO_BLK_S_IOERR;
		done += n;
		*used = (uint32_t)(done > UINT32_MAX - 1 ? UINT32_MAX - 1 : done);
	}
	b->reads++;
	b->bytes_read += len;
	return VIRTIO_BLK_S_OK;
}

/* OUT: the chain's readable bytes after the header -> image. */
static uint8_t do_out(struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	const struct virtq_mem *m = &b->vp.mem;
	uint64_t off = sector * VIRTIO_BLK_SECTOR;

	if (b->readonly || !range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < VIRTIO_BLK_BOUNCE ? (size_t)(len - done) : VIRTIO_BLK_BOUNCE;

		if (virtq_chain_read(b->chain, m, VIRTIO_BLK_HDR_LEN + done, b->bounce, n) !=
		    (int64_t)n || b->be.write(b->be.opaque, off + done, b->bounce, n))
			return VIRTIO_BLK_S_IOERR;
		done += n;
	}
	b->writes++;
	b->bytes_written += len;
	return VIRTIO_BLK_S_OK;
}

/* DISCARD / WRITE_ZEROES: segments after the header, each judged before
 * any is applied. */
static uint8_t do_discard(struct virtio_blk *b, uint32_t type, uint64_t dlen)
{
	const struct virtq_mem *m = &b->vp.mem;
	bool zeroes = type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint8_t seg[VIRTIO_BLK_DISCARD_SEG_MAX * DSEG_LEN];
	uint64_t nseg = dlen / DSEG_LEN;

	if (!b->be.discard)
		return VIRTIO_BLK_S_UNSUPP;
	if (b->readonly || dlen % DSEG_LEN || nseg == 0 || nseg > VIRTIO_BLK_DISCARD_SEG_MAX ||
	    virtq_chain_read(b->chain, m, VIRTIO_BLK_HDR_LEN, seg, dlen) != (int64_t)dlen)
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t i = 0; i < nseg; i++) {
		const uint8_t *s = seg + i * DSEG_LEN;
		uint64_t sector = virtio_le_get(s, 8), n = virtio_le_get(s + 8, 4);
		uint32_t flags = (uint32_t)virtio_le_get(s + 12, 4);

		if (flags & ~(zeroes ? DSEG_F_UNMAP : 0))
			return VIRTIO_BLK_S_UNSUPP;
		if (n == 0 || n > VIRTIO_BLK_DISCARD_SECTORS_MAX ||
		    !range_ok(b, sector, n * VIRTIO_BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (uint64_t i = 0; i < nseg; i++) {
		const uint8_t *s = seg + i * DSEG_LEN;

		if (b->be.discard(b->be.opaque, virtio_le_get(s, 8) * VIRTIO_BLK_SECTOR,
				  virtio_le_get(s + 8, 4) * VIRTIO_BLK_SECTOR, zeroes))
			return VIRTIO_BLK_S_IOERR;
	}
	b->discards++;
	return VIRTIO_BLK_S_OK;
}

/* One popped chain: the header from the readable part, the status in the
 * last writable byte. Returns the used length. */
static uint32_t run_request(struct virtio_blk *b)
{
	const struct virtq_mem *m = &b->vp.mem;
	struct virtq_chain *c = b->chain;
	uint8_t hdr[VIRTIO_BLK_HDR_LEN], st = VIRTIO_BLK_S_IOERR;
	uint32_t used = 0, type;
	uint64_t sector;

	/* No status byte: nowhere to say what went wrong, so nothing is
	 * done and the chain goes back empty. */
	if (c->in_len < 1) {
		b->errors++;
		return 0;
	}
	if (c->out_len < VIRTIO_BLK_HDR_LEN ||
	    virtq_chain_read(c, m, 0, hdr, VIRTIO_BLK_HDR_LEN) != VIRTIO_BLK_HDR_LEN)
		goto status;
	type = (uint32_t)virtio_le_get(hdr, 4);
	sector = virtio_le_get(hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
		st = do_in(b, sector, c->in_len - 1, &used);
		break;
	case VIRTIO_BLK_T_OUT:
		st = do_out(b, sector, c->out_len - VIRTIO_BLK_HDR_LEN);
		break;
	case VIRTIO_BLK_T_FLUSH:
		st = b->be.flush(b->be.opaque) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		b->flushes++;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = c->in_len - 1 < VIRTIO_BLK_ID_LEN ? c->in_len - 1 : VIRTIO_BLK_ID_LEN;

		if (virtq_chain_write(c, m, 0, b->serial, n) == (int64_t)n) {
			st = VIRTIO_BLK_S_OK;
			used = (uint32_t)n;
		}
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		st = do_discard(b, type, c->out_len - VIRTIO_BLK_HDR_LEN);
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
status:
	if (st != VIRTIO_BLK_S_OK) {
		b->errors++;
		used = 0;
	}
	if (virtq_chain_write(c, m, c->in_len - 1, &st, 1) != 1)
		return 0;
	return used + 1;
}

bool virtio_blk_process(struct virtio_blk *b)
{
	struct virtq *q = &b->vp.vq[0];
	const struct virtq_mem *m = &b->vp.mem;
	bool irq = false;

	if (b->quiesced || !virtio_pci_running(&b->vp))
		return false;
	for (int budget = q->size; budget > 0; budget--) {
		int ret = virtq_pop(q, m, b->chain);
		uint32_t used;

		if (ret == 0)
			goto done;
		if (ret < 0) {
			virtio_pci_needs_reset(&b->vp);
			goto done;
		}
		used = run_request(b);
		if (virtq_push(q, m, b->chain->head, used)) {
			virtio_pci_needs_reset(&b->vp);
			return false;
		}
		irq = true;
	}
done:
	if (irq && virtq_want_interrupt(q, m))
		virtio_pci_raise(&b->vp, VIRTIO_ISR_QUEUE);
	return virtio_pci_running(&b->vp) && virtq_has_avail(q, m);
}

/* ---- the device interface ---------------------------------------------- */

static void dev_reset(void *dev)
{
	virtio_pci_reset(&((struct virtio_blk *)dev)->vp);
}

static int dev_save(void *dev, uint8_t *buf, size_t cap)
{
	struct virtio_blk *b = dev;
	int len;

	if (cap < 1)
		return -ENOSPC;
	buf[0] = VIRTIO_BLK_STATE_VERSION;
	len = virtio_pci_save(&b->vp, buf + 1, cap - 1);
	if (len < 0)
		return len;
	if (cap < 1 + (size_t)len + BLK_OWN_SIZE)
		return -ENOSPC;
	memset(buf + 1 + len, 0, BLK_OWN_SIZE);
	virtio_le_put(buf + 1 + len, b->capacity, 8);
	buf[1 + len + 8] = b->readonly ? 1 : 0;
	buf[1 + len + 9] = b->writeback;
	return 1 + len + BLK_OWN_SIZE;
}

static int dev_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	int t;

	if (len < 1 || p[0] != VIRTIO_BLK_STATE_VERSION) {
		snprintf(err, errlen, "virtio-blk state: version %u, expected %u",
			 len ? p[0] : 0, VIRTIO_BLK_STATE_VERSION);
		return -EINVAL;
	}
	t = virtio_pci_check(p + 1, len - 1, VIRTIO_ID_BLOCK, err, errlen);
	if (t < 0)
		return t;
	if (len != 1 + (size_t)t + BLK_OWN_SIZE) {
		snprintf(err, errlen, "virtio-blk state is %zu bytes, expected %zu", len,
			 1 + (size_t)t + BLK_OWN_SIZE);
		return -EINVAL;
	}
	p += 1 + t;
	if (virtio_le_get(p, 8) % VIRTIO_BLK_SECTOR || p[8] > 1 || p[9] > 1) {
		snprintf(err, errlen, "virtio-blk state: capacity %llu or flags 0x%x/0x%x are bad",
			 (unsigned long long)virtio_le_get(p, 8), p[8], p[9]);
		return -EINVAL;
	}
	for (int i = 10; i < BLK_OWN_SIZE; i++)
		if (p[i]) {
			snprintf(err, errlen, "virtio-blk state: reserved byte %d is set", i);
			return -EINVAL;
		}
	return 0;
}

static int dev_load(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct virtio_blk *b = dev;
	const uint8_t *own;
	int ret = dev_check(p, len, err, errlen), t;

	if (ret)
		return ret;
	own = p + len - BLK_OWN_SIZE;
	/* The guest saw this capacity: the disk here must have it. */
	if (virtio_le_get(own, 8) != b->capacity || (own[8] != 0) != b->readonly) {
		snprintf(err, errlen, "virtio-blk: the source's disk is %llu bytes%s, this one "
			 "%llu bytes%s", (unsigned long long)virtio_le_get(own, 8), own[8] ? " read-only" : "",
			 (unsigned long long)b->capacity, b->readonly ? " read-only" : "");
		return -EINVAL;
	}
	t = virtio_pci_load(&b->vp, p + 1, len - 1, err, errlen);
	if (t < 0)
		return t;
	b->writeback = own[9];
	return 0;
}

static void dev_quiesce(void *dev)
{
	/* Requests run whole under the device lock, which the caller holds:
	 * none is half-done now, and none starts until resume. */
	((struct virtio_blk *)dev)->quiesced = true;
}

static void dev_resume(void *dev)
{
	struct virtio_blk *b = dev;

	b->quiesced = false;
	queue_notify(b, -1);
}

static void dev_destroy(void *dev)
{
	struct virtio_blk *b = dev;

	free(b->bounce);
	free(b->chain);
	free(b);
}

static const struct device_ops blk_ops = {
	.name = "virtio-blk",
	.state_type = VIRTIO_BLK_STATE_TYPE,
	.state_version = VIRTIO_BLK_STATE_VERSION,
	.reset = dev_reset,
	.save = dev_save,
	.check = dev_check,
	.load = dev_load,
	.destroy = dev_destroy,
	.quiesce = dev_quiesce,
	.resume = dev_resume,
};

int virtio_blk_create(struct device_list *l, struct pci_host *h,
		      const struct virtio_blk_conf *conf, struct virtio_blk **out,
		      char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct device d = { .ops = &blk_ops, .state = b };
	uint64_t features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
			    VIRTIO_BLK_F_CONFIG_WCE;
	void *bounce = NULL;
	int ret;

	*out = NULL;
	if (conf->capacity % VIRTIO_BLK_SECTOR || conf->blk_size < VIRTIO_BLK_SECTOR ||
	    conf->blk_size > 4096 || (conf->blk_size & (conf->blk_size - 1)) ||
	    !conf->be.read || !conf->be.write || !conf->be.flush) {
		snprintf(err, errlen, "virtio_blk_create: capacity %llu / block size %u not usable",
			 (unsigned long long)conf->capacity, conf->blk_size);
		free(b);
		return -EINVAL;
	}
	if (!b || posix_memalign(&bounce, 4096, VIRTIO_BLK_BOUNCE) ||
	    !(b->chain = malloc(sizeof(*b->chain)))) {
		snprintf(err, errlen, "virtio_blk_create: out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	b->bounce = bounce;
	bounce = NULL;
	if (conf->readonly)
		features |= VIRTIO_BLK_F_RO;
	else if (conf->be.discard)
		features |= VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
	ret = virtio_pci_init(&b->vp, VIRTIO_ID_BLOCK, PCI_CLASS_STORAGE_SCSI, 1,
			      VIRTIO_BLK_QSIZE, features, &blk_vops, b, &conf->mem);
	if (ret) {
		snprintf(err, errlen, "virtio_pci_init: %s", strerror(-ret));
		goto fail;
	}
	snprintf(b->vp.name, sizeof(b->vp.name), "virtio-blk");
	b->capacity = conf->capacity;
	b->blk_size = conf->blk_size;
	b->readonly = conf->readonly;
	b->writeback = conf->writeback ? 1 : 0;
	memcpy(b->serial, conf->serial, strnlen(conf->serial, VIRTIO_BLK_ID_LEN));
	b->be = conf->be;
	if (conf->readonly)
		b->be.discard = NULL;
	b->vp.notify_map = conf->notify_map;
	b->vp.notify_opaque = conf->notify_opaque;
	pci_func_set_irq(&b->vp.pci, conf->irq, conf->irq_opaque);
	ret = device_add(l, &d, err, errlen); /* frees b on failure */
	if (ret)
		return ret;
	ret = pci_host_add(h, &b->vp.pci, err, errlen);
	if (ret < 0)
		return ret;
	*out = b;
	return 0;
fail:
	free(bounce);
	if (b)
		dev_destroy(b);
	return ret;
}
