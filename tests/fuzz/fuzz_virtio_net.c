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
#include "migrate/proto/stream.h"
#include "tests/fuzz/fakevm.h"

#define OP_LEN 8
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct net_rig r;
	struct virtio_net_backend be = { .send = be_send, .recv = be_recv, .wake = be_wake,
					 .opaque = &r };
	size_t plen, ram_len;
	struct vm *vm;

	if (size < 2)
		return 0;
	plen = (size_t)le_get16(data) * OP_LEN;
	if (plen > size - 2)
		plen = (size - 2) / OP_LEN * OP_LEN;
	memset(&r, 0, sizeof(r));
	fakevm_init(&r.f, true, &be);
	vm = &r.f.vm;
	ram_len = size - 2 - plen;
	if (ram_len > FAKEVM_MEM)
		ram_len = FAKEVM_MEM;
	memcpy(vm->ram, data + 2 + plen, ram_len);
	for (size_t i = 0; i < plen; i += OP_LEN) {
		const uint8_t *op = data + 2 + i;
		uint32_t len = 1u << (op[1] & 3), off = le_get16(op + 2), v = le_get32(op + 4);

		if (len == 8)
			len = 4;
		switch (op[0] % 6) {
		case 0:
		case 1:
			fakevm_pci_cfg(vm, off % 256, len, &v, op[0] % 6 == 0);
			break;
		case 2:
		case 3:
			bus_access(&vm->mmio, PCI_MMIO_BASE + off % VIRTIO_PCI_BAR_SIZE,
				   (uint8_t *)&v, len, op[0] % 6 == 2);
			break;
		case 4:
			device_list_lock(&vm->devices);
			virtio_net_process(r.f.net);
			device_list_unlock(&vm->devices);
			break;
		case 5:
			if (r.rx_n < MAX_RX)
				r.rx_len[r.rx_n++] = (uint16_t)(v % 2048);
			break;
		}
	}
	fakevm_destroy(&r.f);
	return 0;
}
