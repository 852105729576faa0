/* PCI config space, split virtqueues against hostile descriptors, the
 * virtio-pci transport's feature negotiation, virtio-net TX/RX through a
 * socketpair standing in for the tap, and its state's round trip and
 * hostile blobs. No KVM: guest RAM is a buffer behind a virtq_mem. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/pci.h"
#include "devices/virtio/net.h"
#include "devices/virtio/virtqueue.h"

#define RAM_SIZE (1u << 20)

struct fake_ram {
	uint8_t *mem;
};

static int ram_check(void *o, uint64_t gpa, uint64_t len)
{
	(void)o;
	return gpa <= RAM_SIZE && len <= RAM_SIZE - gpa ? 0 : -EFAULT;
}

static int ram_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	struct fake_ram *r = o;

	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(buf, r->mem + gpa, len);
	return 0;
}

static int ram_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	struct fake_ram *r = o;

	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(r->mem + gpa, buf, len);
	return 0;
}

/* ---- a machine: device list, PCI host, virtio-net on a socketpair ---- */

struct rig {
	struct bus pio, mmio;
	struct device_list l;
	struct pci_host *h;
	struct virtio_net *n;
	struct fake_ram ram;
	int sv[2];
	int irq_level, irq_calls, wakes, announces;
	uint8_t announced[6];
};

static ssize_t be_send(void *o, const void *f, size_t len)
{
	ssize_t n = write(((struct rig *)o)->sv[0], f, len);

	return n < 0 ? -errno : n;
}

static ssize_t be_recv(void *o, void *buf, size_t cap)
{
	ssize_t n = recv(((struct rig *)o)->sv[0], buf, cap, MSG_DONTWAIT);

	return n < 0 ? -errno : n;
}

static void be_wake(void *o, int q)
{
	(void)q;
	((struct rig *)o)->wakes++;
}

static void be_announce(void *o, const uint8_t mac[6])
{
	struct rig *r = o;

	memcpy(r->announced, mac, 6);
	r->announces++;
}

static void rig_irq(void *o, int irq, int level)
{
	struct rig *r = o;

	assert_int_equal(irq, PCI_IRQ_A);
	r->irq_level = level;
	r->irq_calls++;
}

static struct rig *rig_new(void)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct virtio_net_conf c = { .mac = { 0x52, 0x54, 0, 1, 2, 3 } };
	char err[256];

	assert_non_null(r);
	r->ram.mem = calloc(1, RAM_SIZE);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, r->sv), 0);
	assert_int_equal(device_list_init(&r->l, &r->pio, &r->mmio), 0);
	assert_int_equal(pci_host_create(&r->l, &r->h, err, sizeof(err)), 0);
	c.mem = (struct virtq_mem){ ram_read, ram_write, ram_check, &r->ram };
	c.be = (struct virtio_net_backend){ .send = be_send, .recv = be_recv, .wake = be_wake,
					    .announce = be_announce, .opaque = r };
	c.irq = rig_irq;
	c.irq_opaque = r;
	assert_int_equal(virtio_net_create(&r->l, r->h, &c, &r->n, err, sizeof(err)), 0);
	return r;
}

static void rig_free(struct rig *r)
{
	device_list_destroy(&r->l);
	close(r->sv[0]);
	close(r->sv[1]);
	free(r->ram.mem);
	free(r);
}

/* conf1 accesses to 00:slot.0 */
static uint32_t cfg_read(struct rig *r, int slot, uint32_t off, uint32_t len)
{
	uint8_t d[4] = { 0 };
	uint32_t a = 0x80000000u | (uint32_t)slot << 11 | (off & 0xfc);

	assert_true(bus_access(&r->pio, PCI_CONF_ADDR_PORT, (uint8_t *)&a, 4, true));
	assert_true(bus_access(&r->pio, PCI_CONF_DATA_PORT + (off & 3), d, len, false));
	return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static void cfg_write(struct rig *r, int slot, uint32_t off, uint32_t len, uint32_t v)
{
	uint32_t a = 0x80000000u | (uint32_t)slot << 11 | (off & 0xfc);

	assert_true(bus_access(&r->pio, PCI_CONF_ADDR_PORT, (uint8_t *)&a, 4, true));
	assert_true(bus_access(&r->pio, PCI_CONF_DATA_PORT + (off & 3), (uint8_t *)&v, len, true));
}

static uint64_t bar(struct rig *r)
{
	return cfg_read(r, 1, PCI_BAR0, 4) & ~0xfu;
}

static uint32_t mmio_read(struct rig *r, uint64_t off, uint32_t len)
{
	uint32_t v = 0;

	assert_true(bus_access(&r->mmio, bar(r) + off, (uint8_t *)&v, len, false));
	return v;
}

static void mmio_write(struct rig *r, uint64_t off, uint32_t len, uint32_t v)
{
	assert_true(bus_access(&r->mmio, bar(r) + off, (uint8_t *)&v, len, true));
}

/* ---- PCI --------------------------------------------------------------- */

static void test_pci_identity_and_ro(void **state)
{
	struct rig *r = rig_new();

	(void)state;
	assert_int_equal(cfg_read(r, 0, 0, 4), 0x00081b36); /* host bridge */
	assert_int_equal(cfg_read(r, 0, 0x0a, 2), 0x0600);
	assert_int_equal(cfg_read(r, 1, 0, 2), 0x1af4);
	assert_int_equal(cfg_read(r, 1, 2, 2), 0x1041);
	assert_int_equal(cfg_read(r, 1, PCI_REVISION_ID, 1), 1);
	assert_int_equal(cfg_read(r, 1, PCI_INTERRUPT_LINE, 1), PCI_IRQ_A);
	assert_int_equal(cfg_read(r, 1, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(cfg_read(r, 2, 0, 4), 0xffffffffu); /* empty slot */
	/* Read-only: identity, class, status, pin. */
	cfg_write(r, 1, 0, 4, 0x12345678);
	cfg_write(r, 1, 0x08, 4, 0);
	cfg_write(r, 1, PCI_INTERRUPT_PIN, 1, 7);
	assert_int_equal(cfg_read(r, 1, 0, 4), 0x10411af4);
	assert_int_equal(cfg_read(r, 1, 0x0b, 1), 0x02);
	assert_int_equal(cfg_read(r, 1, PCI_INTERRUPT_PIN, 1), 1);
	/* Writable: Interrupt Line; I/O decode is not. */
	cfg_write(r, 1, PCI_INTERRUPT_LINE, 1, 5);
	assert_int_equal(cfg_read(r, 1, PCI_INTERRUPT_LINE, 1), 5);
	cfg_write(r, 1, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(cfg_read(r, 1, PCI_COMMAND, 2), 0x0406);
	/* Latch: a dword reads back; conf1 disabled reads all-ones. */
	uint32_t a = 0;
	assert_true(bus_access(&r->pio, PCI_CONF_ADDR_PORT, (uint8_t *)&a, 4, true));
	assert_true(bus_access(&r->pio, PCI_CONF_DATA_PORT, (uint8_t *)&a, 4, false));
	assert_int_equal(a, 0xffffffffu);
	rig_free(r);
}

static void test_pci_bar_sizing_and_enable(void **state)
{
	struct rig *r = rig_new();
	uint32_t orig = cfg_read(r, 1, PCI_BAR0, 4);

	(void)state;
	assert_int_equal(orig, PCI_MMIO_BASE);
	assert_non_null(bus_find(&r->mmio, PCI_MMIO_BASE));
	assert_int_equal(cfg_read(r, 1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	/* Sizing: decode off, all-ones, read the mask, restore. */
	cfg_write(r, 1, PCI_COMMAND, 2, 0);
	assert_null(bus_find(&r->mmio, PCI_MMIO_BASE));
	cfg_write(r, 1, PCI_BAR0, 4, 0xffffffffu);
	assert_int_equal(cfg_read(r, 1, PCI_BAR0, 4), 0xfffff000u);
	cfg_write(r, 1, PCI_BAR0 + 4, 4, 0xffffffffu); /* unimplemented BAR1 */
	assert_int_equal(cfg_read(r, 1, PCI_BAR0 + 4, 4), 0);
	/* Move it and enable: the bus follows. */
	cfg_write(r, 1, PCI_BAR0, 4, 0xe0100000u);
	assert_null(bus_find(&r->mmio, 0xe0100000u));
	cfg_write(r, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_non_null(bus_find(&r->mmio, 0xe0100000u));
	assert_null(bus_find(&r->mmio, PCI_MMIO_BASE));
	assert_int_equal(mmio_read(r, VIRTIO_PCI_COMMON_OFF + 0x12, 2), VIRTIO_NET_NQUEUES);
	/* Sizing with decode on leaves nothing mapped at the top. */
	cfg_write(r, 1, PCI_BAR0, 4, 0xffffffffu);
	assert_null(bus_find(&r->mmio, 0xfffff000u));
	assert_null(bus_find(&r->mmio, 0xe0100000u));
	cfg_write(r, 1, PCI_BAR0, 4, orig);
	assert_non_null(bus_find(&r->mmio, PCI_MMIO_BASE));
	rig_free(r);
}

static void test_pci_cap_chain(void **state)
{
	struct rig *r = rig_new();
	int seen[5] = { 0 }, n = 0;

	(void)state;
	assert_true(cfg_read(r, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (uint32_t p = cfg_read(r, 1, PCI_CAPABILITY_LIST, 1); p; p = cfg_read(r, 1, p + 1, 1)) {
		uint32_t type = cfg_read(r, 1, p + 3, 1);

		assert_true(p >= 0x40 && p < 0x100 && !(p & 3));
		assert_int_equal(cfg_read(r, 1, p, 1), 0x09);
		assert_int_equal(cfg_read(r, 1, p + 4, 1), 0); /* BAR 0 */
		assert_true(type >= 1 && type <= 4);
		seen[type]++;
		if (type == 2)
			assert_int_equal(cfg_read(r, 1, p + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
		assert_true(++n <= 4);
	}
	assert_int_equal(seen[1] + seen[2] + seen[3] + seen[4], 4);
	rig_free(r);
}

/* ---- the driver side, for the transport and net tests ---------------- */

#define DESC(q) (0x10000u + 0x4000u * (q))
#define AVAIL(q) (DESC(q) + 0x1000u)
#define USED(q) (DESC(q) + 0x2000u)
#define QSZ 16

static uint8_t status(struct rig *r)
{
	return (uint8_t)mmio_read(r, 0x14, 1);
}

static void negotiate(struct rig *r, uint32_t lo, uint32_t hi)
{
	mmio_write(r, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mmio_write(r, 0x08, 4, 0);
	mmio_write(r, 0x0c, 4, lo);
	mmio_write(r, 0x08, 4, 1);
	mmio_write(r, 0x0c, 4, hi);
	mmio_write(r, 0x14, 1, status(r) | VIRTIO_STATUS_FEATURES_OK);
}

static void setup_queues(struct rig *r)
{
	for (int q = 0; q < VIRTIO_NET_NQUEUES; q++) {
		mmio_write(r, 0x16, 2, (uint32_t)q);
		assert_int_equal(mmio_read(r, 0x18, 2), VIRTIO_NET_QSIZE);
		mmio_write(r, 0x18, 2, QSZ);
		mmio_write(r, 0x20, 4, DESC(q));
		mmio_write(r, 0x24, 4, 0);
		mmio_write(r, 0x28, 4, AVAIL(q));
		mmio_write(r, 0x30, 4, USED(q));
		mmio_write(r, 0x1c, 2, 1);
		assert_int_equal(mmio_read(r, 0x1c, 2), 1);
	}
}

static void bring_up(struct rig *r)
{
	negotiate(r, (uint32_t)(VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ |
				VIRTIO_NET_F_GUEST_ANNOUNCE), 1);
	assert_true(status(r) & VIRTIO_STATUS_FEATURES_OK);
	setup_queues(r);
	mmio_write(r, 0x14, 1, status(r) | VIRTIO_STATUS_DRIVER_OK);
}

static void put_desc(struct rig *r, int q, int i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *d = r->ram.mem + DESC(q) + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void make_avail(struct rig *r, int q, uint16_t head)
{
	uint16_t idx;

	memcpy(&idx, r->ram.mem + AVAIL(q) + 2, 2);
	memcpy(r->ram.mem + AVAIL(q) + 4 + 2 * (idx % QSZ), &head, 2);
	idx++;
	memcpy(r->ram.mem + AVAIL(q) + 2, &idx, 2);
}

static uint16_t used_idx(struct rig *r, int q)
{
	uint16_t v;

	memcpy(&v, r->ram.mem + USED(q) + 2, 2);
	return v;
}

static void test_features_need_version_1(void **state)
{
	struct rig *r = rig_new();

	(void)state;
	assert_int_equal(mmio_read(r, 0x04, 4) & (1u << 5), 1u << 5); /* MAC offered */
	mmio_write(r, 0x00, 4, 1);
	assert_int_equal(mmio_read(r, 0x04, 4), 1); /* VERSION_1 */
	negotiate(r, (uint32_t)VIRTIO_NET_F_MAC, 0);
	assert_false(status(r) & VIRTIO_STATUS_FEATURES_OK);
	mmio_write(r, 0x14, 1, 0); /* reset */
	assert_int_equal(status(r), 0);
	negotiate(r, 1u << 30, 1); /* a bit not offered */
	assert_false(status(r) & VIRTIO_STATUS_FEATURES_OK);
	mmio_write(r, 0x14, 1, 0);
	negotiate(r, (uint32_t)VIRTIO_NET_F_MAC, 1);
	assert_true(status(r) & VIRTIO_STATUS_FEATURES_OK);
	/* The MAC and LINK_UP in the config space. */
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF, 1), 0x52);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 5, 1), 3);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
	rig_free(r);
}

static void test_net_tx_rx(void **state)
{
	struct rig *r = rig_new();
	uint8_t frame[60], got[128];
	uint32_t len;

	(void)state;
	bring_up(r);
	for (int i = 0; i < 60; i++)
		frame[i] = (uint8_t)(i * 7);
	/* TX: header and frame in two descriptors. */
	put_desc(r, 1, 0, 0x40000, 12, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, 1, 0x40100, 60, 0, 0);
	memcpy(r->ram.mem + 0x40100, frame, 60);
	make_avail(r, 1, 0);
	mmio_write(r, VIRTIO_PCI_NOTIFY_OFF + 4, 2, 1);
	assert_true(r->wakes > 0); /* the vCPU only hands over */
	assert_int_equal(used_idx(r, 1), 0);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 1), 1);
	assert_int_equal(read(r->sv[1], got, sizeof(got)), 60);
	assert_memory_equal(got, frame, 60);
	assert_int_equal(r->irq_level, 1);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_ISR_QUEUE);
	assert_int_equal(r->irq_level, 0);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_ISR_OFF, 1), 0); /* read-to-clear */
	/* RX: nothing without a buffer, then one frame into one. */
	assert_int_equal(write(r->sv[1], frame, 42), 42);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 0), 0);
	put_desc(r, 0, 0, 0x50000, 2048, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 0, 0);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 0), 1);
	memcpy(&len, r->ram.mem + USED(0) + 4 + 4, 4);
	assert_int_equal(len, 12 + 42);
	assert_int_equal(r->ram.mem[0x50000 + 10], 1); /* num_buffers */
	assert_memory_equal(r->ram.mem + 0x50000 + 12, frame, 42);
	assert_int_equal(r->n->rx_frames, 1);
	/* Quiesced: nothing moves until resume. */
	virtio_net_announce(r->n);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 6, 2), 3);
	r->l.devs[r->l.n - 1].ops->quiesce(r->n);
	make_avail(r, 1, 0);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 1), 1);
	r->l.devs[r->l.n - 1].ops->resume(r->n);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 1), 2);
	/* Control queue: the announce acknowledgement clears ANNOUNCE. */
	r->ram.mem[0x60000] = 3;
	r->ram.mem[0x60001] = 0;
	r->ram.mem[0x60100] = 0xee;
	put_desc(r, 2, 0, 0x60000, 2, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 2, 1, 0x60100, 1, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 2, 0);
	virtio_net_process(r->n);
	assert_int_equal(r->ram.mem[0x60100], 0);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
	rig_free(r);
}

/* An interrupt only for a queue that got used buffers and wants one: a
 * driver taking RX interrupts with TX suppressed (the net guest) gets none
 * per sent frame. */
static void test_net_interrupt_per_queue(void **state)
{
	struct rig *r = rig_new();
	uint8_t frame[60] = { 0 }, got[128];
	uint16_t no_irq = VIRTQ_AVAIL_F_NO_INTERRUPT;

	(void)state;
	bring_up(r);
	memcpy(r->ram.mem + AVAIL(1), &no_irq, 2); /* TX suppressed, RX wants them */
	put_desc(r, 1, 0, 0x40000, 12 + 60, 0, 0);
	make_avail(r, 1, 0);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 1), 1);
	assert_int_equal(read(r->sv[1], got, sizeof(got)), 60);
	assert_int_equal(r->irq_level, 0);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* RX in the same batch as a TX completion: one interrupt. */
	put_desc(r, 0, 0, 0x50000, 2048, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 0, 0);
	put_desc(r, 1, 1, 0x40000, 12 + 60, 0, 0);
	make_avail(r, 1, 1);
	assert_int_equal(write(r->sv[1], frame, 60), 60);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 0), 1);
	assert_int_equal(used_idx(r, 1), 2);
	assert_int_equal(r->irq_level, 1);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_ISR_QUEUE);
	/* TX wanting interrupts again: its completion raises one. */
	no_irq = 0;
	memcpy(r->ram.mem + AVAIL(1), &no_irq, 2);
	make_avail(r, 1, 0);
	virtio_net_process(r->n);
	assert_int_equal(used_idx(r, 1), 3);
	assert_int_equal(r->irq_level, 1);
	rig_free(r);
}

static void test_net_bad_chain_needs_reset(void **state)
{
	struct rig *r = rig_new();

	(void)state;
	bring_up(r);
	put_desc(r, 1, 0, RAM_SIZE - 8, 64, 0, 0); /* past the end of RAM */
	make_avail(r, 1, 0);
	virtio_net_process(r->n);
	assert_true(status(r) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(r, 1), 0);
	assert_true(mmio_read(r, VIRTIO_PCI_ISR_OFF, 1) & VIRTIO_ISR_CONFIG);
	/* A reset clears it. */
	mmio_write(r, 0x14, 1, 0);
	assert_int_equal(status(r), 0);
	rig_free(r);
}

/* ---- the virtqueue alone, hostile rings ------------------------------- */

struct vq_rig {
	struct fake_ram ram;
	struct virtq_mem m;
	struct virtq q;
	struct virtq_chain c;
};

static void vq_setup(struct vq_rig *v)
{
	memset(v, 0, sizeof(*v));
	v->ram.mem = calloc(1, RAM_SIZE);
	v->m = (struct virtq_mem){ ram_read, ram_write, ram_check, &v->ram };
	v->q = (struct virtq){ .max_size = 256, .size = QSZ, .ready = true,
			       .desc = 0x1000, .avail = 0x2000, .used = 0x3000 };
	assert_int_equal(virtq_check_layout(&v->q, &v->m), 0);
}

static void vq_desc(struct vq_rig *v, int i, uint64_t addr, uint32_t len, uint16_t fl, uint16_t nx)
{
	uint8_t *d = v->ram.mem + 0x1000 + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &fl, 2);
	memcpy(d + 14, &nx, 2);
}

static void vq_avail(struct vq_rig *v, uint16_t idx, uint16_t head)
{
	memcpy(v->ram.mem + 0x2000 + 4, &head, 2);
	memcpy(v->ram.mem + 0x2000 + 2, &idx, 2);
}

static void test_vq_good_chain(void **state)
{
	struct vq_rig v;

	(void)state;
	vq_setup(&v);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), 0); /* empty */
	vq_desc(&v, 0, 0x8000, 100, VIRTQ_DESC_F_NEXT, 5);
	vq_desc(&v, 5, 0x9000, 200, VIRTQ_DESC_F_WRITE, 0);
	vq_avail(&v, 1, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), 1);
	assert_int_equal(v.c.nseg, 2);
	assert_int_equal(v.c.out_len, 100);
	assert_int_equal(v.c.in_len, 200);
	assert_int_equal(virtq_push(&v.q, &v.m, v.c.head, 7), 0);
	assert_int_equal(v.ram.mem[0x3002], 1);
	free(v.ram.mem);
}

static void test_vq_hostile(void **state)
{
	struct vq_rig v;

	(void)state;
	vq_setup(&v);
	/* A loop: 0 -> 1 -> 0. */
	vq_desc(&v, 0, 0x8000, 8, VIRTQ_DESC_F_NEXT, 1);
	vq_desc(&v, 1, 0x8000, 8, VIRTQ_DESC_F_NEXT, 0);
	vq_avail(&v, 1, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	assert_int_equal(v.q.last_avail, 0);
	/* A chain through every descriptor, then one more: longer than the queue. */
	for (int i = 0; i < QSZ; i++)
		vq_desc(&v, i, 0x8000, 8, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % QSZ));
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	/* next out of range */
	vq_desc(&v, 0, 0x8000, 8, VIRTQ_DESC_F_NEXT, QSZ);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	/* outside RAM, and a length that wraps */
	vq_desc(&v, 0, RAM_SIZE, 1, 0, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	vq_desc(&v, 0, 0xfffffffffffffff0ULL, 0x100, 0, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	vq_desc(&v, 0, 0x8000, 0xffffffffu, 0, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	/* indirect (not offered), and readable after writable */
	vq_desc(&v, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	vq_desc(&v, 0, 0x8000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vq_desc(&v, 1, 0x8000, 16, 0, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	/* head out of range; avail index too far ahead */
	vq_desc(&v, 0, 0x8000, 16, 0, 0);
	vq_avail(&v, 1, QSZ + 3);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	vq_avail(&v, QSZ + 1, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), -EPROTO);
	vq_avail(&v, 1, 0);
	assert_int_equal(virtq_pop(&v.q, &v.m, &v.c), 1);
	/* Rings outside RAM, misaligned, a size that is no power of two. */
	v.q.used = RAM_SIZE - 8;
	assert_int_equal(virtq_check_layout(&v.q, &v.m), -EINVAL);
	v.q.used = 0x3000;
	v.q.desc = 0x1008;
	assert_int_equal(virtq_check_layout(&v.q, &v.m), -EINVAL);
	v.q.desc = 0x1000;
	v.q.size = 12;
	assert_int_equal(virtq_check_layout(&v.q, &v.m), -EINVAL);
	free(v.ram.mem);
}

static void test_queue_enable_outside_ram(void **state)
{
	struct rig *r = rig_new();

	(void)state;
	negotiate(r, 0, 1);
	mmio_write(r, 0x16, 2, 0);
	mmio_write(r, 0x18, 2, QSZ);
	mmio_write(r, 0x20, 4, 0);
	mmio_write(r, 0x24, 4, 0x10); /* desc at 64 GiB */
	mmio_write(r, 0x1c, 2, 1);
	assert_int_equal(mmio_read(r, 0x1c, 2), 0);
	assert_true(status(r) & VIRTIO_STATUS_NEEDS_RESET);
	mmio_write(r, 0x16, 2, 99); /* no such queue: size 0 */
	assert_int_equal(mmio_read(r, 0x18, 2), 0);
	rig_free(r);
}

/* ---- state -------------------------------------------------------------- */

static int save(struct rig *r, uint8_t *buf)
{
	const struct device_ops *ops = r->l.devs[r->l.n - 1].ops;

	return ops->save(r->n, buf, DEVICE_STATE_MAX);
}

static void test_state_round_trip(void **state)
{
	struct rig *a = rig_new(), *b = rig_new();
	const struct device_ops *ops = a->l.devs[a->l.n - 1].ops;
	static uint8_t s1[DEVICE_STATE_MAX], s2[DEVICE_STATE_MAX];
	char err[256];
	int n;

	(void)state;
	assert_int_equal(ops->state_type, VIRTIO_NET_STATE_TYPE);
	bring_up(a);
	cfg_write(a, 1, PCI_BAR0, 4, 0xe0200000u); /* the guest moved it */
	memcpy(b->ram.mem, a->ram.mem, RAM_SIZE);
	virtio_net_announce(a->n);
	n = save(a, s1);
	assert_true(n > 0);
	assert_int_equal(ops->check(s1, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(ops->load(b->n, s1, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(save(b, s2), n);
	assert_memory_equal(s1, s2, (size_t)n);
	assert_non_null(bus_find(&b->mmio, 0xe0200000u));
	assert_null(bus_find(&b->mmio, PCI_MMIO_BASE));
	assert_int_equal(b->irq_level, 1); /* ISR config bit re-drives INTx */
	/* The loaded device works: a TX on the target. */
	put_desc(b, 1, 0, 0x40000, 14, 0, 0);
	make_avail(b, 1, 0);
	virtio_net_process(b->n);
	assert_int_equal(used_idx(b, 1), 1);
	rig_free(a);
	rig_free(b);
}

static void test_state_hostile(void **state)
{
	struct rig *a = rig_new(), *b = rig_new();
	const struct device_ops *ops = a->l.devs[a->l.n - 1].ops;
	static uint8_t s[DEVICE_STATE_MAX], h[DEVICE_STATE_MAX];
	size_t t = 1 + PCI_FUNC_STATE_SIZE; /* the transport's fields */
	size_t q0 = t + 34;
	char err[256];
	int n;

	(void)state;
	bring_up(a);
	n = save(a, s);
#define HOSTILE(stmt) do { memcpy(h, s, (size_t)n); stmt; \
	assert_int_not_equal(ops->load(b->n, h, (size_t)n, err, sizeof(err)), 0); } while (0)
	HOSTILE(h[0] = 9);                          /* version */
	HOSTILE(h[1] ^= 1);                          /* vendor ID */
	HOSTILE(h[t + 20 + 1] |= 0x40);              /* acked bit 14, not offered */
	HOSTILE(h[t + 1] |= 0x20);                   /* unknown status bit */
	HOSTILE(h[t + 3] = 0x80);                    /* ISR */
	HOSTILE(h[t + 32] = 9);                      /* queue count */
	HOSTILE(h[q0 + 4] = 5);                      /* last_avail != used_idx */
	HOSTILE(h[q0 + 0] = 12);                     /* ready, size 12 */
	HOSTILE(h[q0 + 8] = 2);                      /* ready = 2 */
	HOSTILE(h[q0 + 16 + 5] = 0x10);              /* desc far outside RAM */
	HOSTILE(h[q0 + 32 + 2] = 0xff);              /* used ring past RAM */
	HOSTILE(h[n - 10] = 0x01);                   /* multicast MAC */
	HOSTILE(h[n - 4] = 0x80);                    /* net status bits */
	HOSTILE(h[n - 2] = 1);                       /* a pending frame that is not there */
	assert_int_not_equal(ops->check(s, (size_t)n - 1, err, sizeof(err)), 0);
	assert_int_not_equal(ops->check(s, 10, err, sizeof(err)), 0);
	assert_int_not_equal(ops->check(s, 0, err, sizeof(err)), 0);
	/* Every single-byte corruption: refused or harmless, never a crash. */
	for (int i = 0; i < n; i++) {
		memcpy(h, s, (size_t)n);
		h[i] ^= 0xff;
		ops->load(b->n, h, (size_t)n, err, sizeof(err));
		virtio_net_process(b->n);
	}
	rig_free(a);
	rig_free(b);
}

/* Frames that reach the back-end while the guest is paused travel with
 * the state and reach the guest on the target; the target announces. */
static void test_state_pending_frames(void **state)
{
	struct rig *a = rig_new(), *b = rig_new();
	const struct device_ops *ops = a->l.devs[a->l.n - 1].ops;
	static uint8_t s1[DEVICE_STATE_MAX], h[DEVICE_STATE_MAX];
	uint8_t frame[42], own[42];
	char err[256];
	uint32_t len;
	int n;

	(void)state;
	bring_up(a);
	for (int i = 0; i < 42; i++)
		frame[i] = (uint8_t)(0xa0 + i);
	ops->quiesce(a->n);
	assert_int_equal(write(a->sv[1], frame, 42), 42); /* arrives during the pause */
	/* ... and the target's RARP for the guest's own MAC, flooded back
	 * by the bridge: not carried */
	memcpy(own, frame, 42);
	memcpy(own + 6, a->n->mac, 6);
	assert_int_equal(write(a->sv[1], own, 42), 42);
	n = save(a, s1);
	assert_true(n > 0);
	assert_int_equal(a->n->pend_frames, 1);
	memcpy(b->ram.mem, a->ram.mem, RAM_SIZE);
	assert_int_equal(ops->load(b->n, s1, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(b->n->pend_frames, 1);
	b->l.devs[b->l.n - 1].ops->announce(b->n);
	b->l.devs[b->l.n - 1].ops->post_migrate(b->n);
	assert_int_equal(b->announces, 1);
	assert_memory_equal(b->announced, b->n->mac, 6);
	put_desc(b, 0, 0, 0x50000, 2048, VIRTQ_DESC_F_WRITE, 0);
	make_avail(b, 0, 0);
	virtio_net_process(b->n);
	assert_int_equal(used_idx(b, 0), 1);
	memcpy(&len, b->ram.mem + USED(0) + 4 + 4, 4);
	assert_int_equal(len, 12 + 42);
	assert_memory_equal(b->ram.mem + 0x50000 + 12, frame, 42);
	assert_int_equal(b->n->pend_frames, 0);
	/* Hostile pending lists: a length past the end, a zero length, a
	 * count larger than the frames. */
	memcpy(h, s1, (size_t)n);
	h[n - 42 - 2] = 0xff;
	assert_int_not_equal(ops->check(h, (size_t)n, err, sizeof(err)), 0);
	memcpy(h, s1, (size_t)n);
	h[n - 42 - 2] = 0;
	h[n - 42 - 1] = 0;
	assert_int_not_equal(ops->check(h, (size_t)n, err, sizeof(err)), 0);
	memcpy(h, s1, (size_t)n);
	h[n - 42 - 4] = 2;
	assert_int_not_equal(ops->check(h, (size_t)n, err, sizeof(err)), 0);
	rig_free(a);
	rig_free(b);
}

static void test_mac_from_name(void **state)
{
	uint8_t a[6], b[6];

	(void)state;
	virtio_net_mac_from_name("vm-a", a);
	virtio_net_mac_from_name("vm-b", b);
	assert_int_equal(a[0], 0x52);
	assert_int_equal(a[1], 0x54);
	assert_int_equal(a[2], 0);
	assert_memory_not_equal(a, b, 6);
	virtio_net_mac_from_name("vm-a", b);
	assert_memory_equal(a, b, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pci_identity_and_ro),
		cmocka_unit_test(test_pci_bar_sizing_and_enable),
		cmocka_unit_test(test_pci_cap_chain),
		cmocka_unit_test(test_features_need_version_1),
		cmocka_unit_test(test_net_tx_rx),
		cmocka_unit_test(test_net_interrupt_per_queue),
		cmocka_unit_test(test_net_bad_chain_needs_reset),
		cmocka_unit_test(test_vq_good_chain),
		cmocka_unit_test(test_vq_hostile),
		cmocka_unit_test(test_queue_enable_outside_ram),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_hostile),
		cmocka_unit_test(test_state_pending_frames),
		cmocka_unit_test(test_mac_from_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
