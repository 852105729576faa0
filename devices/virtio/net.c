#include "devices/virtio/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NET_FEATURES (VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ | \
		      VIRTIO_NET_F_GUEST_ANNOUNCE)
#define PCI_CLASS_ETHERNET 0x020000
#define CONFIG_LEN 10 /* mac[6], status, max_virtqueue_pairs */

/* Control queue (5.1.6.5): class, command, data, then an ack byte. */
#define CTRL_CLASS_ANNOUNCE 3
#define CTRL_ANNOUNCE_ACK 0
#define CTRL_OK 0
#define CTRL_ERR 1

/* Bytes after the version byte: the transport, then mac and status, then
 * the pending frames: u16 count, each u16 length + bytes. */
#define NET_OWN_SIZE 8
#define PEND_HDR 2

void virtio_net_mac_from_name(const char *name, uint8_t mac[6])
{
	uint32_t h = 2166136261u; /* FNV-1a: stable across hosts and builds */

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

static void config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_net *n = dev;
	uint8_t img[CONFIG_LEN] = { 0 };

	memcpy(img, n->mac, 6);
	img[6] = (uint8_t)n->status;
	img[7] = (uint8_t)(n->status >> 8);
	img[8] = 1; /* one queue pair (meaningful only with MQ) */
	if (off < CONFIG_LEN)
		memcpy(data, img + off, len < CONFIG_LEN - off ? len : CONFIG_LEN - off);
}

static void queue_notify(void *dev, int q)
{
	struct virtio_net *n = dev;

	/* A vCPU is here (no ioeventfd): hand the work over. */
	if (n->be.wake)
		n->be.wake(n->be.opaque, q);
}

static void net_reset(void *dev)
{
	struct virtio_net *n = dev;

	n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
}

static void driver_ok(void *dev)
{
	queue_notify(dev, -1); /* frames may be waiting already */
}

static const struct virtio_dev_ops net_vops = {
	.config_read = config_read,
	.queue_notify = queue_notify,
	.reset = net_reset,
	.driver_ok = driver_ok,
};

static void broken(struct virtio_net *n)
{
	virtio_pci_needs_reset(&n->vp);
}

/* Returns 1 for more work left, 0 done, -1 when the device broke. */
static int process_tx(struct virtio_net *n, unsigned *used_q)
{
	struct virtq *q = &n->vp.vq[VIRTIO_NET_Q_TX];
	const struct virtq_mem *m = &n->vp.mem;

	for (int budget = q->size; budget > 0; budget--) {
		int ret = virtq_pop(q, m, n->chain);
		int64_t len;

		if (ret <= 0)
			return ret == 0 ? 0 : (broken(n), -1);
		len = (int64_t)n->chain->out_len - VIRTIO_NET_HDR_LEN;
		if (len <= 0 || len > VIRTIO_NET_FRAME_MAX ||
		    virtq_chain_read(n->chain, m, VIRTIO_NET_HDR_LEN, n->buf, (uint64_t)len) != len ||
		    n->be.send(n->be.opaque, n->buf, (size_t)len) < 0)
			n->tx_dropped++;
		else
			n->tx_frames++;
		if (virtq_push(q, m, n->chain->head, 0))
			return broken(n), -1;
		*used_q |= 1u << VIRTIO_NET_Q_TX;
	}
	return 1;
}

/* The oldest pending frame, else one from the back-end. */
static ssize_t next_frame(struct virtio_net *n, uint8_t *out)
{
	uint32_t len;

	if (!n->pend_frames)
		return n->be.recv(n->be.opaque, out, VIRTIO_NET_FRAME_MAX);
	len = (uint32_t)n->pend[0] | (uint32_t)n->pend[1] << 8;
	memcpy(out, n->pend + 2, len);
	n->pend_len -= 2 + len;
	memmove(n->pend, n->pend + 2 + len, n->pend_len);
	n->pend_frames--;
	return len;
}

/* Takes what the back-end holds now into the pending frames (the guest is
 * paused: they would otherwise be left on the source). */
static void drain_backend(struct virtio_net *n)
{
	for (;;) {
		ssize_t len = n->be.recv(n->be.opaque, n->buf, VIRTIO_NET_FRAME_MAX);

		if (len < 0)
			return;
		/* The target's RARP for the guest's MAC comes back here
		 * through the bridge's flood: the guest has no use for its
		 * own frames, least of all as its first ones after the
		 * switchover. */
		if (len >= 12 && !memcmp(n->buf + 6, n->mac, 6))
			continue;
		if (n->pend_frames >= VIRTIO_NET_PEND_MAX_FRAMES ||
		    n->pend_len + 2 + (uint32_t)len > VIRTIO_NET_PEND_MAX_BYTES) {
			n->rx_dropped++;
			continue;
		}
		n->pend[n->pend_len] = (uint8_t)len;
		n->pend[n->pend_len + 1] = (uint8_t)(len >> 8);
		memcpy(n->pend + n->pend_len + 2, n->buf, (size_t)len);
		n->pend_len += 2 + (uint32_t)len;
		n->pend_frames++;
	}
}

static int process_rx(struct virtio_net *n, unsigned *used_q)
{
	struct virtq *q = &n->vp.vq[VIRTIO_NET_Q_RX];
	const struct virtq_mem *m = &n->vp.mem;

	for (int budget = q->size; budget > 0; budget--) {
		ssize_t len;
		uint64_t total;
		int ret;

		/* Take a frame only when there is a buffer for it: the rest
		 * wait in the back-end until the driver adds buffers. */
		if (!virtq_has_avail(q, m))
			return 0;
		len = next_frame(n, n->buf + VIRTIO_NET_HDR_LEN);
		if (len < 0)
			return 0; /* -EAGAIN: nothing waiting; or a back-end error */
		ret = virtq_pop(q, m, n->chain);
		if (ret < 0)
			return broken(n), -1;
		if (ret == 0)
			return 0;
		memset(n->buf, 0, VIRTIO_NET_HDR_LEN);
		n->buf[10] = 1; /* num_buffers: always one without MRG_RXBUF */
		total = VIRTIO_NET_HDR_LEN + (uint64_t)len;
		/* A buffer too small for the frame gets nothing (the driver
		 * sees a short, empty buffer and drops it). */
		if (n->chain->in_len < total ||
		    virtq_chain_write(n->chain, m, 0, n->buf, total) != (int64_t)total) {
			n->rx_dropped++;
			total = 0;
		} else {
			n->rx_frames++;
		}
		if (virtq_push(q, m, n->chain->head, (uint32_t)total))
			return broken(n), -1;
		*used_q |= 1u << VIRTIO_NET_Q_RX;
	}
	return 1;
}

static int process_ctrl(struct virtio_net *n, unsigned *used_q)
{
	struct virtq *q = &n->vp.vq[VIRTIO_NET_Q_CTRL];
	const struct virtq_mem *m = &n->vp.mem;

	for (int budget = q->size; budget > 0; budget--) {
		uint8_t cmd[2], ack = CTRL_ERR;
		uint32_t used = 0;
		int ret = virtq_pop(q, m, n->chain);

		if (ret <= 0)
			return ret == 0 ? 0 : (broken(n), -1);
		if (virtq_chain_read(n->chain, m, 0, cmd, 2) == 2 &&
		    cmd[0] == CTRL_CLASS_ANNOUNCE && cmd[1] == CTRL_ANNOUNCE_ACK) {
			n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
			ack = CTRL_OK;
		}
		if (n->chain->in_len >= 1 && virtq_chain_write(n->chain, m, 0, &ack, 1) == 1)
			used = 1;
		if (virtq_push(q, m, n->chain->head, used))
			return broken(n), -1;
		*used_q |= 1u << VIRTIO_NET_Q_CTRL;
	}
	return 1;
}

bool virtio_net_process(struct virtio_net *n)
{
	unsigned used = 0; /* the queues that got used buffers */
	bool more = false;
	int r;

	if (n->quiesced || !virtio_pci_running(&n->vp))
		return false;
	r = process_tx(n, &used);
	more |= r > 0;
	if (r >= 0) {
		r = process_rx(n, &used);
		more |= r > 0;
	}
	if (r >= 0) {
		r = process_ctrl(n, &used);
		more |= r > 0;
	}
	/* One interrupt for the batch, unless every queue that got used
	 * buffers suppressed it: a driver that takes RX interrupts but
	 * reclaims TX buffers later gets no interrupt per sent frame. */
	if (used && virtio_pci_running(&n->vp)) {
		bool want = false;

		for (int i = 0; i < VIRTIO_NET_NQUEUES; i++)
			want |= (used & (1u << i)) && n->vp.vq[i].ready &&
				virtq_want_interrupt(&n->vp.vq[i], &n->vp.mem);
		if (want)
			virtio_pci_raise(&n->vp, VIRTIO_ISR_QUEUE);
	}
	return more && r >= 0;
}

bool virtio_net_announce(struct virtio_net *n)
{
	if (!(n->vp.drv_features & VIRTIO_NET_F_GUEST_ANNOUNCE) ||
	    !virtio_pci_running(&n->vp))
		return false;
	n->status |= VIRTIO_NET_S_ANNOUNCE;
	virtio_pci_config_changed(&n->vp);
	return true;
}

/* ---- the device interface ---------------------------------------------- */

static void dev_reset(void *dev)
{
	struct virtio_net *n = dev;

	virtio_pci_reset(&n->vp);
}

static int dev_save(void *dev, uint8_t *buf, size_t cap)
{
	struct virtio_net *n = dev;
	int len;

	if (cap < 1)
		return -ENOSPC;
	buf[0] = VIRTIO_NET_STATE_VERSION;
	len = virtio_pci_save(&n->vp, buf + 1, cap - 1);
	if (len < 0)
		return len;
	if (n->quiesced)
		drain_backend(n);
	n->late_from = n->pend_len;
	n->late_frames = n->pend_frames;
	if (cap < 1 + (size_t)len + NET_OWN_SIZE + PEND_HDR + n->pend_len)
		return -ENOSPC;
	memcpy(buf + 1 + len, n->mac, 6);
	buf[1 + len + 6] = (uint8_t)n->status;
	buf[1 + len + 7] = (uint8_t)(n->status >> 8);
	buf[1 + len + 8] = (uint8_t)n->pend_frames;
	buf[1 + len + 9] = (uint8_t)(n->pend_frames >> 8);
	memcpy(buf + 1 + len + NET_OWN_SIZE + PEND_HDR, n->pend, n->pend_len);
	return 1 + len + NET_OWN_SIZE + PEND_HDR + (int)n->pend_len;
}

/* The pending frames of a state blob: count, then exactly that many
 * frames filling the rest, each within the limits a save keeps. */
static int pend_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	uint32_t count = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	size_t off = PEND_HDR;

	if (count > VIRTIO_NET_PEND_MAX_FRAMES || len - PEND_HDR > VIRTIO_NET_PEND_MAX_BYTES) {
		snprintf(err, errlen, "virtio-net state: %u pending frames is over the limit", count);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t fl;

		if (len - off < 2) {
			snprintf(err, errlen, "virtio-net state: pending frame %u is cut short", i);
			return -EINVAL;
		}
		fl = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8;
		if (fl == 0 || fl > len - off - 2) {
			snprintf(err, errlen, "virtio-net state: pending frame %u has a bad length %u",
				 i, fl);
			return -EINVAL;
		}
		off += 2 + fl;
	}
	if (off != len) {
		snprintf(err, errlen, "virtio-net state: %zu bytes after the pending frames",
			 len - off);
		return -EINVAL;
	}
	return 0;
}

static int dev_check(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	int t;
	uint16_t status;

	if (len < 1 || p[0] != VIRTIO_NET_STATE_VERSION) {
		snprintf(err, errlen, "virtio-net state: version %u, expected %u",
			 len ? p[0] : 0, VIRTIO_NET_STATE_VERSION);
		return -EINVAL;
	}
	t = virtio_pci_check(p + 1, len - 1, VIRTIO_ID_NET, err, errlen);
	if (t < 0)
		return t;
	if (len < 1 + (size_t)t + NET_OWN_SIZE + PEND_HDR) {
		snprintf(err, errlen, "virtio-net state is %zu bytes, expected at least %zu", len,
			 1 + (size_t)t + NET_OWN_SIZE + PEND_HDR);
		return -EINVAL;
	}
	if (pend_check(p + 1 + t + NET_OWN_SIZE, len - 1 - (size_t)t - NET_OWN_SIZE, err,
		       errlen) < 0)
		return -EINVAL;
	status = (uint16_t)(p[1 + t + 6] | p[1 + t + 7] << 8);
	if (status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)) {
		snprintf(err, errlen, "virtio-net status 0x%x has unknown bits", status);
		return -EINVAL;
	}
	if (p[1 + t] & 1) {
		snprintf(err, errlen, "virtio-net MAC is a multicast address");
		return -EINVAL;
	}
	return 0;
}

static int dev_load(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct virtio_net *n = dev;
	int ret = dev_check(p, len, err, errlen), t;

	if (ret)
		return ret;
	t = virtio_pci_load(&n->vp, p + 1, len - 1, err, errlen);
	if (t < 0)
		return t;
	memcpy(n->mac, p + 1 + t, 6);
	n->status = (uint16_t)(p[1 + t + 6] | p[1 + t + 7] << 8);
	n->pend_frames = (uint32_t)p[1 + t + 8] | (uint32_t)p[1 + t + 9] << 8;
	n->pend_len = (uint32_t)(len - 1 - (size_t)t - NET_OWN_SIZE - PEND_HDR);
	memcpy(n->pend, p + 1 + t + NET_OWN_SIZE + PEND_HDR, n->pend_len);
	return 0;
}

/* Frames the tap got after the last save: u16 count, then each u16
 * length + bytes, the format of the state's pending list. */
static int dev_save_late(void *dev, uint8_t *buf, size_t cap)
{
	struct virtio_net *n = dev;
	uint32_t len, count;

	drain_backend(n);
	len = n->pend_len - n->late_from;
	count = n->pend_frames - n->late_frames;
	if (!count)
		return 0;
	if (cap < PEND_HDR + len)
		return -ENOSPC;
	buf[0] = (uint8_t)count;
	buf[1] = (uint8_t)(count >> 8);
	memcpy(buf + PEND_HDR, n->pend + n->late_from, len);
	return (int)(PEND_HDR + len);
}

static int dev_load_late(void *dev, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct virtio_net *n = dev;
	uint32_t count;

	if (len < PEND_HDR || pend_check(p, len, err, errlen) < 0)
		return -EINVAL;
	count = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	/* Over the limit all together: the late ones are dropped, counted. */
	if (n->pend_frames + count > VIRTIO_NET_PEND_MAX_FRAMES ||
	    n->pend_len + len - PEND_HDR > VIRTIO_NET_PEND_MAX_BYTES) {
		n->rx_dropped += count;
		return 0;
	}
	memcpy(n->pend + n->pend_len, p + PEND_HDR, len - PEND_HDR);
	n->pend_len += (uint32_t)(len - PEND_HDR);
	n->pend_frames += count;
	return 0;
}

static void dev_announce(void *dev)
{
	struct virtio_net *n = dev;

	if (n->be.announce)
		n->be.announce(n->be.opaque, n->mac);
}

/* The guest runs here after an incoming migration: it gets the frames
 * that waited for it. The back-end has spoken for its MAC already (at
 * dev_announce) and asks the guest for its own announce later, with its
 * second RARP (virtio_net_announce). */
static void dev_post_migrate(void *dev)
{
	struct virtio_net *n = dev;

	if (n->pend_frames)
		queue_notify(n, VIRTIO_NET_Q_RX);
}

static void dev_quiesce(void *dev)
{
	/* Under the device lock, which processing holds throughout: no
	 * chain is half-done once this returns, and none starts. */
	((struct virtio_net *)dev)->quiesced = true;
}

static void dev_resume(void *dev)
{
	struct virtio_net *n = dev;

	n->quiesced = false;
	queue_notify(n, -1); /* catch up on what arrived meanwhile */
}

static void dev_destroy(void *dev)
{
	struct virtio_net *n = dev;

	free(n->buf);
	free(n->chain);
	free(n->pend);
	free(n);
}

static const struct device_ops net_ops = {
	.name = "virtio-net",
	.state_type = VIRTIO_NET_STATE_TYPE,
	.state_version = VIRTIO_NET_STATE_VERSION,
	.reset = dev_reset,
	.save = dev_save,
	.check = dev_check,
	.load = dev_load,
	.destroy = dev_destroy,
	.quiesce = dev_quiesce,
	.resume = dev_resume,
	.post_migrate = dev_post_migrate,
	.announce = dev_announce,
	.save_late = dev_save_late,
	.load_late = dev_load_late,
};

int virtio_net_create(struct device_list *l, struct pci_host *h,
		      const struct virtio_net_conf *conf, struct virtio_net **out,
		      char *err, size_t errlen)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	struct device d = { .ops = &net_ops, .state = n };
	int ret;

	*out = NULL;
	if (!n || !(n->buf = malloc(VIRTIO_NET_HDR_LEN + VIRTIO_NET_FRAME_MAX)) ||
	    !(n->chain = malloc(sizeof(*n->chain))) ||
	    !(n->pend = malloc(VIRTIO_NET_PEND_MAX_BYTES))) {
		snprintf(err, errlen, "virtio_net_create: out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	ret = virtio_pci_init(&n->vp, VIRTIO_ID_NET, PCI_CLASS_ETHERNET, VIRTIO_NET_NQUEUES,
			      VIRTIO_NET_QSIZE, NET_FEATURES, &net_vops, n, &conf->mem);
	if (ret) {
		snprintf(err, errlen, "virtio_pci_init: %s", strerror(-ret));
		goto fail;
	}
	snprintf(n->vp.name, sizeof(n->vp.name), "virtio-net");
	memcpy(n->mac, conf->mac, 6);
	n->status = VIRTIO_NET_S_LINK_UP;
	n->be = conf->be;
	n->vp.notify_map = conf->notify_map;
	n->vp.notify_opaque = conf->notify_opaque;
	pci_func_set_irq(&n->vp.pci, conf->irq, conf->irq_opaque);
	ret = device_add(l, &d, err, errlen); /* frees n on failure */
	if (ret)
		return ret;
	/* On the bus only once it is on the list, which owns it now. */
	ret = pci_host_add(h, &n->vp.pci, err, errlen);
	if (ret < 0)
		return ret;
	*out = n;
	return 0;
fail:
	if (n)
		dev_destroy(n);
	return ret;
}
