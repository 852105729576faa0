/* virtio-net (virtio 1.x, 5.1) over the virtio-pci transport: queues 0 RX,
 * 1 TX, 2 control; the MAC and the link status in the config space;
 * features VERSION_1, MAC, STATUS, CTRL_VQ and GUEST_ANNOUNCE (the spec
 * makes GUEST_ANNOUNCE need the control queue, whose only command here is
 * the announce acknowledgement). No offloads: the back-end carries bare
 * Ethernet frames, and the device strips and adds the 12-byte
 * virtio_net_hdr. Pure: the back-end is two callbacks (a tap in the VM,
 * a socketpair in tests) plus "wake", which asks the back-end's thread to
 * run virtio_net_process; frames are never moved on a vCPU thread. */
#ifndef MINIVMM_VIRTIO_NET_H
#define MINIVMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio/virtio_pci.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_STATE_TYPE 0x0010 /* mandatory: a VM with a NIC needs it */
#define VIRTIO_NET_STATE_VERSION 1

#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VIRTIO_NET_F_CTRL_VQ (1ULL << 17)
#define VIRTIO_NET_F_GUEST_ANNOUNCE (1ULL << 21)
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

#define VIRTIO_NET_Q_RX 0
#define VIRTIO_NET_Q_TX 1
#define VIRTIO_NET_Q_CTRL 2
#define VIRTIO_NET_NQUEUES 3
#define VIRTIO_NET_QSIZE 256
#define VIRTIO_NET_HDR_LEN 12 /* struct virtio_net_hdr with num_buffers */
#define VIRTIO_NET_FRAME_MAX 65536

struct virtio_net_backend {
	/* One frame out; the frame's length or -errno (dropped). */
	ssize_t (*send)(void *opaque, const void *frame, size_t len);
	/* One frame in, or -EAGAIN when none is waiting. */
	ssize_t (*recv)(void *opaque, void *buf, size_t cap);
	/* Run virtio_net_process soon on the back-end thread (q: the queue
	 * notified, -1: all). Called under the device lock. */
	void (*wake)(void *opaque, int q);
	/* After an incoming migration: tell the network where the guest is
	 * now (RARP from the tap, on a schedule, and later the guest itself:
	 * virtio_net_announce). May be NULL. */
	void (*announce)(void *opaque, const uint8_t mac[6]);
	void *opaque;
};

/* Frames that reached the back-end while the guest was paused for a save:
 * they move with the device state and reach the guest on the target, so
 * a migration drops none. Bounded: what does not fit is dropped, counted. */
#define VIRTIO_NET_PEND_MAX_FRAMES 128
#define VIRTIO_NET_PEND_MAX_BYTES (128u << 10)

struct virtio_net_conf {
	uint8_t mac[6];
	struct virtq_mem mem;
	struct virtio_net_backend be;
	void (*irq)(void *opaque, int irq, int level);
	void *irq_opaque;
	void (*notify_map)(void *opaque, int q, uint64_t gpa, bool on);
	void *notify_opaque;
};

struct virtio_net {
	struct virtio_pci vp;
	uint8_t mac[6];
	uint16_t status;
	struct virtio_net_backend be;
	bool quiesced;       /* the back-end must not touch the queues */
	uint8_t *buf;        /* one frame with its header */
	struct virtq_chain *chain;
	uint64_t rx_frames, tx_frames, rx_dropped, tx_dropped;
	/* The frames above, as u16 length + bytes, oldest first. */
	uint8_t *pend;
	uint32_t pend_len, pend_frames;
	uint32_t late_from, late_frames; /* what the last save carried */
};

/* Creates the device on l and plugs it into h's bus 0. */
int virtio_net_create(struct device_list *l, struct pci_host *h,
		      const struct virtio_net_conf *conf, struct virtio_net **out,
		      char *err, size_t errlen);
/* The back-end thread's work, under the device lock: TX chains to the
 * back-end, waiting frames into RX buffers, control commands. Returns
 * true when it stopped with work left (call again). */
bool virtio_net_process(struct virtio_net *n);
/* Asks the guest to announce itself (gratuitous ARP) after a migration,
 * if it negotiated GUEST_ANNOUNCE; returns whether it was asked. Called
 * by the back-end (under the device lock), with its second RARP. */
bool virtio_net_announce(struct virtio_net *n);

/* The default MAC: 52:54:00 and three bytes of a hash of the VM name. */
void virtio_net_mac_from_name(const char *name, uint8_t mac[6]);

#endif
