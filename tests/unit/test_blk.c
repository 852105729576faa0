/* virtio-blk against hostile requests, on the shared virtio-pci transport:
 * IN/OUT/FLUSH/GET_ID/DISCARD/WRITE_ZEROES, then a sector beyond the
 * capacity, a length that overflows or is not whole sectors, a header or
 * status of the wrong size, a write to a read-only disk: each gets an
 * error status and never a byte outside RAM or the image (the fake image
 * asserts every access lies inside it). State save/load and its hostile
 * blobs. No KVM: RAM and the image are buffers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/pci.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/virtqueue.h"
#include "migrate/proto/stream.h"
#include "migrate/state/devcfg.h"
#include "vmm/core/diskopt.h"

#define RAM_SIZE (1u << 20)
#define DISK_SIZE (64u << 10)

struct rig {
	struct bus pio, mmio;
	struct device_list l;
	struct pci_host *h;
	struct virtio_blk *b;
	uint8_t *ram, *disk;
	int irq_level, wakes, flushes, discards, zeroes, io_fail;
};

static int ram_check(void *o, uint64_t gpa, uint64_t len)
{
	(void)o;
	return gpa <= RAM_SIZE && len <= RAM_SIZE - gpa ? 0 : -EFAULT;
}

static int ram_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(buf, ((struct rig *)o)->ram + gpa, len);
	return 0;
}

static int ram_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(((struct rig *)o)->ram + gpa, buf, len);
	return 0;
}

/* The image: any access outside it fails the test. */
static int be_read(void *o, uint64_t off, void *buf, size_t len)
{
	struct rig *r = o;

	assert_true(off <= DISK_SIZE && len <= DISK_SIZE - off);
	assert_int_equal((uintptr_t)buf % 4096, 0);
	if (r->io_fail)
		return -EIO;
	memcpy(buf, r->disk + off, len);
	return 0;
}

static int be_write(void *o, uint64_t off, const void *buf, size_t len)
{
	struct rig *r = o;

	assert_true(off <= DISK_SIZE && len <= DISK_SIZE - off);
	if (r->io_fail)
		return -EIO;
	memcpy(r->disk + off, buf, len);
	return 0;
}

static int be_flush(void *o)
{
	((struct rig *)o)->flushes++;
	return 0;
}

static int be_discard(void *o, uint64_t off, uint64_t len, bool zeroes)
{
	struct rig *r = o;

	assert_true(off <= DISK_SIZE && len <= DISK_SIZE - off);
	memset(r->disk + off, 0, len);
	if (zeroes)
		r->zeroes++;
	else
		r->discards++;
	return 0;
}

static void be_wake(void *o, int q)
{
	(void)q;
	((struct rig *)o)->wakes++;
}

static void rig_irq(void *o, int irq, int level)
{
	(void)irq;
	((struct rig *)o)->irq_level = level;
}

static struct rig *rig_new(bool readonly)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct virtio_blk_conf c = { .capacity = DISK_SIZE, .blk_size = 512, .readonly = readonly,
				     .writeback = true, .serial = "test-disk" };
	char err[256];

	assert_non_null(r);
	r->ram = calloc(1, RAM_SIZE);
	r->disk = calloc(1, DISK_SIZE);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		r->disk[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(device_list_init(&r->l, &r->pio, &r->mmio), 0);
	assert_int_equal(pci_host_create(&r->l, &r->h, err, sizeof(err)), 0);
	c.mem = (struct virtq_mem){ ram_read, ram_write, ram_check, r };
	c.be = (struct virtio_blk_backend){ be_read, be_write, be_flush, be_discard, be_wake, r };
	c.irq = rig_irq;
	c.irq_opaque = r;
	assert_int_equal(virtio_blk_create(&r->l, r->h, &c, &r->b, err, sizeof(err)), 0);
	return r;
}

static void rig_free(struct rig *r)
{
	device_list_destroy(&r->l);
	free(r->ram);
	free(r->disk);
	free(r);
}

static uint32_t cfg_read(struct rig *r, uint32_t off)
{
	uint8_t d[4] = { 0 };
	uint32_t a = 0x80000000u | 1u << 11 | (off & 0xfc);

	assert_true(bus_access(&r->pio, PCI_CONF_ADDR_PORT, (uint8_t *)&a, 4, true));
	assert_true(bus_access(&r->pio, PCI_CONF_DATA_PORT, d, 4, false));
	return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static uint64_t bar(struct rig *r)
{
	return cfg_read(r, PCI_BAR0) & ~0xfu;
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

#define DESC 0x10000u
#define AVAIL 0x11000u
#define USED 0x12000u
#define QSZ 16
#define HDR 0x20000u    /* request headers */
#define DATA 0x30000u   /* data buffers */
#define STAT 0x2f000u   /* status bytes */

static uint8_t status(struct rig *r)
{
	return (uint8_t)mmio_read(r, 0x14, 1);
}

static void bring_up(struct rig *r)
{
	uint32_t lo;

	mmio_write(r, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mmio_write(r, 0x00, 4, 0);
	lo = mmio_read(r, 0x04, 4);
	mmio_write(r, 0x08, 4, 0);
	mmio_write(r, 0x0c, 4, lo);
	mmio_write(r, 0x08, 4, 1);
	mmio_write(r, 0x0c, 4, 1);
	mmio_write(r, 0x14, 1, status(r) | VIRTIO_STATUS_FEATURES_OK);
	assert_true(status(r) & VIRTIO_STATUS_FEATURES_OK);
	mmio_write(r, 0x16, 2, 0);
	assert_int_equal(mmio_read(r, 0x18, 2), VIRTIO_BLK_QSIZE);
	mmio_write(r, 0x18, 2, QSZ);
	mmio_write(r, 0x20, 4, DESC);
	mmio_write(r, 0x28, 4, AVAIL);
	mmio_write(r, 0x30, 4, USED);
	mmio_write(r, 0x1c, 2, 1);
	mmio_write(r, 0x14, 1, status(r) | VIRTIO_STATUS_DRIVER_OK);
	assert_true(status(r) & VIRTIO_STATUS_DRIVER_OK);
}

static void put_desc(struct rig *r, int i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *d = r->ram + DESC + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void put_hdr(struct rig *r, int slot, uint32_t type, uint64_t sector)
{
	uint8_t *h = r->ram + HDR + 16 * slot;

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
}

static uint16_t used_idx(struct rig *r)
{
	uint16_t v;

	memcpy(&v, r->ram + USED + 2, 2);
	return v;
}

static uint32_t used_len(struct rig *r, uint16_t i)
{
	uint32_t v;

	memcpy(&v, r->ram + USED + 4 + 8 * (i % QSZ) + 4, 4);
	return v;
}

/* Makes the chain at head available, runs the device; the status byte
 * (0xee if the device wrote none). */
static uint8_t run(struct rig *r, uint16_t head)
{
	uint16_t idx, before = used_idx(r);

	r->ram[STAT] = 0xee;
	memcpy(&idx, r->ram + AVAIL + 2, 2);
	memcpy(r->ram + AVAIL + 4 + 2 * (idx % QSZ), &head, 2);
	idx++;
	memcpy(r->ram + AVAIL + 2, &idx, 2);
	virtio_blk_process(r->b);
	assert_int_equal(used_idx(r), (uint16_t)(before + 1));
	return r->ram[STAT];
}

/* header -> data (len, writable or not) -> status */
static uint8_t req3(struct rig *r, uint32_t type, uint64_t sector, uint32_t len, bool dev_writes)
{
	put_hdr(r, 0, type, sector);
	put_desc(r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, DATA, len, VIRTQ_DESC_F_NEXT | (dev_writes ? VIRTQ_DESC_F_WRITE : 0), 2);
	put_desc(r, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	return run(r, 0);
}

static void test_config_and_features(void **state)
{
	struct rig *r = rig_new(false);
	uint32_t f;

	(void)state;
	mmio_write(r, 0x00, 4, 0);
	f = mmio_read(r, 0x04, 4);
	assert_true(f & VIRTIO_BLK_F_FLUSH);
	assert_true(f & VIRTIO_BLK_F_SEG_MAX);
	assert_true(f & VIRTIO_BLK_F_BLK_SIZE);
	assert_true(f & VIRTIO_BLK_F_DISCARD);
	assert_false(f & VIRTIO_BLK_F_RO);
	mmio_write(r, 0x00, 4, 1);
	assert_int_equal(mmio_read(r, 0x04, 4), 1); /* VERSION_1 */
	assert_int_equal(cfg_read(r, 0) >> 16, 0x1042);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF, 4), DISK_SIZE / 512);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 4, 4), 0);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 12, 4), VIRTIO_BLK_SEG_MAX);
	assert_int_equal(mmio_read(r, VIRTIO_PCI_DEVCFG_OFF + 20, 4), 512);
	rig_free(r);
	r = rig_new(true);
	mmio_write(r, 0x00, 4, 0);
	f = mmio_read(r, 0x04, 4);
	assert_true(f & VIRTIO_BLK_F_RO);
	assert_false(f & VIRTIO_BLK_F_DISCARD);
	rig_free(r);
}

static void test_in_out_flush_id(void **state)
{
	struct rig *r = rig_new(false);

	(void)state;
	bring_up(r);
	/* IN of sectors 2-3 */
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, 2, 1024, true), VIRTIO_BLK_S_OK);
	assert_memory_equal(r->ram + DATA, r->disk + 1024, 1024);
	assert_int_equal(used_len(r, 0), 1025);
	assert_int_equal(r->irq_level, 1);
	/* OUT of 4 KiB at sector 8, split over two data descriptors */
	for (int i = 0; i < 4096; i++)
		r->ram[DATA + i] = (uint8_t)(i ^ 0x5a);
	put_hdr(r, 0, VIRTIO_BLK_T_OUT, 8);
	put_desc(r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, DATA, 1536, VIRTQ_DESC_F_NEXT, 2);
	put_desc(r, 2, DATA + 1536, 2560, VIRTQ_DESC_F_NEXT, 3);
	put_desc(r, 3, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(run(r, 0), VIRTIO_BLK_S_OK);
	assert_memory_equal(r->disk + 8 * 512, r->ram + DATA, 4096);
	assert_int_equal(used_len(r, 1), 1);
	/* FLUSH: header and status only */
	put_hdr(r, 0, VIRTIO_BLK_T_FLUSH, 0);
	put_desc(r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(run(r, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(r->flushes, 1);
	/* GET_ID */
	assert_int_equal(req3(r, VIRTIO_BLK_T_GET_ID, 0, 20, true), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)r->ram + DATA, "test-disk");
	/* The last sector, exactly */
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, 512, true), VIRTIO_BLK_S_OK);
	/* An unknown type */
	assert_int_equal(req3(r, 99, 0, 512, true), VIRTIO_BLK_S_UNSUPP);
	/* The back-end fails: IOERR */
	r->io_fail = 1;
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_IOERR);
	r->io_fail = 0;
	/* Quiesced: nothing runs until resume. */
	r->l.devs[r->l.n - 1].ops->quiesce(r->b);
	assert_false(virtio_blk_process(r->b));
	r->l.devs[r->l.n - 1].ops->resume(r->b);
	assert_true(r->wakes > 0);
	rig_free(r);
}

static void test_discard_write_zeroes(void **state)
{
	struct rig *r = rig_new(false);
	uint8_t seg[32] = { 0 };
	uint64_t s = 4;
	uint32_t n = 2, flags = 1;

	(void)state;
	bring_up(r);
	memcpy(seg, &s, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(r->ram + DATA, seg, 16);
	assert_int_equal(req3(r, VIRTIO_BLK_T_DISCARD, 0, 16, false), VIRTIO_BLK_S_OK);
	assert_int_equal(r->discards, 1);
	assert_int_equal(r->disk[4 * 512], 0);
	memcpy(seg + 12, &flags, 4); /* UNMAP: only for WRITE_ZEROES */
	memcpy(r->ram + DATA, seg, 16);
	assert_int_equal(req3(r, VIRTIO_BLK_T_DISCARD, 0, 16, false), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(req3(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false), VIRTIO_BLK_S_OK);
	assert_int_equal(r->zeroes, 1);
	/* A segment past the end, after a good one: nothing is applied. */
	s = DISK_SIZE / 512 - 1;
	memcpy(seg + 16, &s, 8);
	memcpy(seg + 24, &n, 4);
	memcpy(r->ram + DATA, seg, 32);
	assert_int_equal(req3(r, VIRTIO_BLK_T_WRITE_ZEROES, 0, 32, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(r->zeroes, 1);
	/* Not a whole number of segments */
	assert_int_equal(req3(r, VIRTIO_BLK_T_DISCARD, 0, 15, false), VIRTIO_BLK_S_IOERR);
	rig_free(r);
}

static void test_hostile_requests(void **state)
{
	struct rig *r = rig_new(false);
	uint64_t cap = DISK_SIZE / 512;

	(void)state;
	bring_up(r);
	/* A sector beyond the capacity, and one that ends past it. */
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, cap, 512, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, cap - 1, 1024, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(req3(r, VIRTIO_BLK_T_OUT, cap + 100, 512, false), VIRTIO_BLK_S_IOERR);
	/* sector * 512 overflows 64 bits; sector + length wraps */
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, UINT64_MAX / 256, 512, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(req3(r, VIRTIO_BLK_T_OUT, UINT64_MAX, 512, false), VIRTIO_BLK_S_IOERR);
	/* Not whole sectors */
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, 0, 100, true), VIRTIO_BLK_S_IOERR);
	assert_int_equal(req3(r, VIRTIO_BLK_T_OUT, 0, 513, false), VIRTIO_BLK_S_IOERR);
	/* A header of 8 bytes */
	put_hdr(r, 0, VIRTIO_BLK_T_IN, 0);
	put_desc(r, 0, HDR, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(r, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(run(r, 0), VIRTIO_BLK_S_IOERR);
	/* No status byte at all: nothing done, the chain returned empty. */
	memset(r->ram + DATA, 0, 512);
	put_hdr(r, 0, VIRTIO_BLK_T_OUT, 0);
	put_desc(r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, DATA, 512, 0, 0);
	{
		uint8_t before[512];

		memcpy(before, r->disk, 512);
		assert_int_equal(run(r, 0), 0xee);
		assert_memory_equal(r->disk, before, 512);
		assert_int_equal(used_len(r, (uint16_t)(used_idx(r) - 1)), 0);
	}
	/* IN whose data would go into the header (device-readable): the
	 * device writes only writable bytes, so the data length is 0. */
	put_hdr(r, 0, VIRTIO_BLK_T_IN, 0);
	put_desc(r, 0, HDR, 16 + 512, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(run(r, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len(r, (uint16_t)(used_idx(r) - 1)), 1);
	/* A buffer outside RAM: the ring is broken, NEEDS_RESET. */
	put_hdr(r, 0, VIRTIO_BLK_T_IN, 0);
	put_desc(r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(r, 1, RAM_SIZE - 256, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(r, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	{
		uint16_t idx;

		memcpy(&idx, r->ram + AVAIL + 2, 2);
		memset(r->ram + AVAIL + 4 + 2 * (idx % QSZ), 0, 2);
		idx++;
		memcpy(r->ram + AVAIL + 2, &idx, 2);
	}
	virtio_blk_process(r->b);
	assert_true(status(r) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(r->b->errors >= 9);
	rig_free(r);
}

static void test_readonly(void **state)
{
	struct rig *r = rig_new(true);
	uint8_t before[DISK_SIZE];

	(void)state;
	memcpy(before, r->disk, DISK_SIZE);
	bring_up(r);
	memset(r->ram + DATA, 0x77, 4096);
	assert_int_equal(req3(r, VIRTIO_BLK_T_OUT, 0, 4096, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(req3(r, VIRTIO_BLK_T_DISCARD, 0, 16, false), VIRTIO_BLK_S_UNSUPP);
	assert_memory_equal(r->disk, before, DISK_SIZE);
	assert_int_equal(req3(r, VIRTIO_BLK_T_IN, 0, 4096, true), VIRTIO_BLK_S_OK);
	rig_free(r);
}

static void test_state(void **state)
{
	struct rig *a = rig_new(false), *b = rig_new(false), *ro = rig_new(true);
	const struct device_ops *ops = a->l.devs[a->l.n - 1].ops;
	static uint8_t s1[DEVICE_STATE_MAX], s2[DEVICE_STATE_MAX];
	char err[256];
	int n;

	(void)state;
	assert_int_equal(ops->state_type, VIRTIO_BLK_STATE_TYPE);
	bring_up(a);
	assert_int_equal(req3(a, VIRTIO_BLK_T_IN, 1, 512, true), VIRTIO_BLK_S_OK);
	n = ops->save(a->b, s1, sizeof(s1));
	assert_true(n > 0);
	assert_int_equal(ops->check(s1, (size_t)n, err, sizeof(err)), 0);
	memcpy(b->ram, a->ram, RAM_SIZE);
	assert_int_equal(ops->load(b->b, s1, (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(ops->save(b->b, s2, sizeof(s2)), n);
	assert_memory_equal(s1, s2, (size_t)n);
	/* The loaded device goes on where the source stopped. */
	assert_int_equal(req3(b, VIRTIO_BLK_T_IN, 2, 512, true), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(b), 2);
	/* Hostile blobs: cut short, a trailing byte, a bad version, another
	 * device type, a capacity this disk does not have, read-only. */
	assert_int_not_equal(ops->check(s1, (size_t)n - 1, err, sizeof(err)), 0);
	assert_int_not_equal(ops->check(s1, (size_t)n + 1, err, sizeof(err)), 0);
	s2[0] = 9;
	assert_int_not_equal(ops->check(s2, (size_t)n, err, sizeof(err)), 0);
	memcpy(s2, s1, (size_t)n);
	s2[1 + 2] = 0x41; /* PCI device ID: net */
	assert_int_not_equal(ops->check(s2, (size_t)n, err, sizeof(err)), 0);
	memcpy(s2, s1, (size_t)n);
	s2[n - 16 + 1] ^= 0x10; /* capacity + 4 KiB */
	assert_int_equal(ops->check(s2, (size_t)n, err, sizeof(err)), 0);
	assert_int_not_equal(ops->load(b->b, s2, (size_t)n, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "bytes"));
	memcpy(s2, s1, (size_t)n);
	s2[n - 16 + 15] = 1; /* reserved */
	assert_int_not_equal(ops->check(s2, (size_t)n, err, sizeof(err)), 0);
	assert_int_not_equal(ops->load(ro->b, s1, (size_t)n, err, sizeof(err)), 0);
	rig_free(a);
	rig_free(b);
	rig_free(ro);
}

static void test_disk_opts(void **state)
{
	struct disk_opts o;
	char err[256];

	(void)state;
	assert_int_equal(disk_opts_parse("/tmp/a.img", &o, err, sizeof(err)), 0);
	assert_string_equal(o.path, "/tmp/a.img");
	assert_false(o.readonly);
	assert_int_equal(o.cache, DISK_CACHE_WRITEBACK);
	assert_int_equal(disk_opts_parse("d.img,readonly,cache=none", &o, err, sizeof(err)), 0);
	assert_true(o.readonly);
	assert_int_equal(o.cache, DISK_CACHE_NONE);
	assert_int_equal(disk_opts_parse("", &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(disk_opts_parse(",readonly", &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(disk_opts_parse("a.img,cache=unsafe", &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cache=unsafe"));
}

/* The DEVICES frame's disk entry: a round trip, then hostile entries. */
static void test_devcfg_disk(void **state)
{
	struct devcfg d = { .disk = true, .disk_size = 1 << 20, .disk_flags = DEVCFG_DISK_RO },
		      back;
	uint8_t b[DEVICES_MAX_LEN];
	char err[256];
	int n;

	(void)state;
	snprintf(d.disk_path, sizeof(d.disk_path), "/srv/vm.img");
	n = devcfg_encode(&d, b, sizeof(b));
	assert_int_equal(n, 4 + 8 + DEVCFG_DISK_FIXED + 11);
	assert_int_equal(devcfg_decode(b, (size_t)n, &back, err, sizeof(err)), 0);
	assert_true(back.disk);
	assert_false(back.nic);
	assert_int_equal(back.disk_size, 1 << 20);
	assert_int_equal(back.disk_flags, DEVCFG_DISK_RO);
	assert_string_equal(back.disk_path, "/srv/vm.img");
	/* cut short, a path length beyond the entry, a NUL in the path,
	 * unknown flags, a size not whole sectors, two disks */
	assert_int_not_equal(devcfg_decode(b, (size_t)n - 1, &back, err, sizeof(err)), 0);
	b[4 + 8 + 12] = 200;
	assert_int_not_equal(devcfg_decode(b, (size_t)n, &back, err, sizeof(err)), 0);
	devcfg_encode(&d, b, sizeof(b));
	b[4 + 8 + 14 + 3] = 0;
	assert_int_not_equal(devcfg_decode(b, (size_t)n, &back, err, sizeof(err)), 0);
	devcfg_encode(&d, b, sizeof(b));
	b[4 + 8 + 8] = 0x80;
	assert_int_not_equal(devcfg_decode(b, (size_t)n, &back, err, sizeof(err)), 0);
	devcfg_encode(&d, b, sizeof(b));
	b[4 + 8] = 1;
	assert_int_not_equal(devcfg_decode(b, (size_t)n, &back, err, sizeof(err)), 0);
	devcfg_encode(&d, b, sizeof(b));
	memcpy(b + n, b + 4, (size_t)n - 4);
	b[0] = 2;
	assert_int_not_equal(devcfg_decode(b, 2 * (size_t)n - 4, &back, err, sizeof(err)), 0);
	/* The target's side: a missing image and a VM without a disk. */
	{
		struct disk_opts out, mine = { .set = true };

		snprintf(d.disk_path, sizeof(d.disk_path), "/nonexistent/vm.img");
		assert_int_equal(devcfg_accept_disk(&d, NULL, &out, err, sizeof(err)), -EPERM);
		assert_non_null(strstr(err, "No such file"));
		d.disk = false;
		assert_int_equal(devcfg_accept_disk(&d, &mine, &out, err, sizeof(err)), -EPERM);
		assert_int_equal(devcfg_accept_disk(&d, NULL, &out, err, sizeof(err)), 0);
		assert_false(out.set);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_in_out_flush_id),
		cmocka_unit_test(test_discard_write_zeroes),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_readonly),
		cmocka_unit_test(test_state),
		cmocka_unit_test(test_disk_opts),
		cmocka_unit_test(test_devcfg_disk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
