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

/* Bytes after the version byte: the transport, then mac and status. */
#define NET_OWN_SIZE 8

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
static int process_tx(struct virtio_net *n, bool *irq)
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
		*irq = true;
	}
	return 1;
}

static int process_rx(struct virtio_net *n, bool *irq)
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
		len = n->be.recv(n->be.opaque, n->buf + VIRTIO_NET_HDR_LEN, VIRTIO_NET_FRAME_MAX);
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
		*irq = true;
	}
	return 1;
}

static int process_ctrl(struct virtio_net *n, bool *irq)
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
		*irq = true;
	}
	return 1;
}

bool virtio_net_process(struct virtio_net *n)
{
	bool irq = false, more = false;
	int r;

	if (n->quiesced || !virtio_pci_running(&n->vp))
		return false;
	r = process_tx(n, &irq);
	more |= r > 0;
	if (r >= 0) {
		r = process_rx(n, &irq);
		more |= r > 0;
	}
	if (r >= 0) {
		r = process_ctrl(n, &irq);
		more |= r > 0;
	}
	/* One interrupt for the batch, unless every queue suppressed it. */
	if (irq && virtio_pci_running(&n->vp)) {
		bool want = false;

		for (int i = 0; i < VIRTIO_NET_NQUEUES; i++)
			want |= n->vp.vq[i].ready && virtq_want_interrupt(&n->vp.vq[i], &n->vp.mem);
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
	if (cap < 1 + (size_t)len + NET_OWN_SIZE)
		return -ENOSPC;
	memcpy(buf + 1 + len, n->mac, 6);
	buf[1 + len + 6] = (uint8_t)n->status;
	buf[1 + len + 7] = (uint8_t)(n->status >> 8);
	return 1 + len + NET_OWN_SIZE;
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
	if (len != 1 + (size_t)t + NET_OWN_SIZE) {
		snprintf(err, errlen, "virtio-net state is %zu bytes, expected %zu", len,
			 1 + (size_t)t + NET_OWN_SIZE);
		return -EINVAL;
	}
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
	return 0;
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
	    !(n->chain = malloc(sizeof(*n->chain)))) {
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
