/* virtio-net request handling (devices/virtio/net.c over virtio_pci.c and
 * virtqueue.c) driven as a guest driver would: the buffer is a program
 * of 8-byte operations (u8 op, u8 size, u16 offset, u32 value): PCI
 * config and BAR accesses, a back-end pass, a frame arriving from the
 * network. Its first two bytes say how long the program is; what follows
 * it is guest RAM (rings, descriptors, packets), at GPA 0. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "devices/pci.h"
#include "tests/fuzz/fakevm.h"

#define MAX_RX 16

struct net_rig {
	struct fakevm f;
	uint16_t rx_len[MAX_RX];
	int rx_n;
};

static ssize_t be_send(void *o, const void *frame, size_t len)
{
	(void)o;
	if (len > VIRTIO_NET_FRAME_MAX)
		abort(); /* the device must not hand on more than a frame */
	(void)frame;
	return (ssize_t)len;
}

static ssize_t be_recv(void *o, void *buf, size_t cap)
{
	struct net_rig *r = o;
	size_t n;

	if (!r->rx_n)
		return -EAGAIN;
	n = r->rx_len[--r->rx_n];
	if (n > cap)
		n = cap;
	memset(buf, 0xab, n);
	return (ssize_t)n;
}

static void be_wake(void *o, int q)
{
	(void)o;
	(void)q;
}

static void net_process(void *ctx)
{
	virtio_net_process(((struct net_rig *)ctx)->f.net);
}

/* The next RX frame's length, for the back-end's recv. */
static void net_rx(void *ctx, uint32_t v)
{
	struct net_rig *r = ctx;

	if (r->rx_n < MAX_RX)
		r->rx_len[r->rx_n++] = (uint16_t)(v % 2048);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct net_rig r;
	struct virtio_net_backend be = { .send = be_send, .recv = be_recv, .wake = be_wake,
					 .opaque = &r };

	if (size < 2)
		return 0;
	memset(&r, 0, sizeof(r));
	fakevm_init(&r.f, true, &be);
	fakevm_run_program(&r.f, PCI_MMIO_BASE, data, size, net_process, net_rx, &r);
	fakevm_destroy(&r.f);
	return 0;
}
