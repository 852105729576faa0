/* virtio-blk request parsing (devices/virtio/blk.c over virtio_pci.c and
 * virtqueue.c) driven as a guest driver would, as fuzz_virtio_net does:
 * the input's first two bytes give the number of 8-byte operations
 * (u8 op, u8 size, u16 offset, u32 value: PCI config or BAR accesses, a
 * back-end pass, failing I/O on or off); what follows is guest RAM
 * (rings, descriptors, request headers, data) at GPA 0, the fake VM's
 * checked accessor in front of it. The image is a buffer; any access
 * outside it aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"
#include "devices/virtio/blk.h"
#include "tests/fuzz/fakevm.h"

#define DISK_SIZE (64u << 10)

struct blk_rig {
	struct fakevm f;
	struct virtio_blk *b;
	uint8_t disk[DISK_SIZE];
	bool io_fail;
};

static void in_image(uint64_t off, uint64_t len)
{
	if (off > DISK_SIZE || len > DISK_SIZE - off)
		abort(); /* the device let a request past the capacity */
}

static int be_read(void *o, uint64_t off, void *buf, size_t len)
{
	struct blk_rig *r = o;

	in_image(off, len);
	if (r->io_fail)
		return -EIO;
	memcpy(buf, r->disk + off, len);
	return 0;
}

static int be_write(void *o, uint64_t off, const void *buf, size_t len)
{
	struct blk_rig *r = o;

	in_image(off, len);
	if (r->io_fail)
		return -EIO;
	memcpy(r->disk + off, buf, len);
	return 0;
}

static int be_flush(void *o)
{
	return ((struct blk_rig *)o)->io_fail ? -EIO : 0;
}

static int be_discard(void *o, uint64_t off, uint64_t len, bool zeroes)
{
	(void)zeroes;
	in_image(off, len);
	memset(((struct blk_rig *)o)->disk + off, 0, len);
	return 0;
}

static void be_wake(void *o, int q)
{
	(void)o;
	(void)q;
}

static void irq(void *o, int line, int level)
{
	(void)o;
	(void)line;
	(void)level;
}

static void blk_process(void *ctx)
{
	virtio_blk_process(((struct blk_rig *)ctx)->b);
}

static void blk_fail(void *ctx, uint32_t v)
{
	((struct blk_rig *)ctx)->io_fail = v & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct blk_rig r;
	struct virtio_blk_conf c = { .capacity = DISK_SIZE, .blk_size = 512, .writeback = true,
				     .serial = "fuzz-disk", .irq = irq };
	uint32_t bar = 0;
	char err[256];
	struct vm *vm;

	if (size < 2)
		return 0;
	memset(&r, 0, sizeof(r));
	fakevm_init(&r.f, false, NULL);
	vm = &r.f.vm;
	c.readonly = size & 1; /* both kinds of disk */
	c.mem = r.f.mem;
	c.be = (struct virtio_blk_backend){ be_read, be_write, be_flush, be_discard, be_wake, &r };
	if (virtio_blk_create(&vm->devices, vm->pci, &c, &r.b, err, sizeof(err)))
		abort();
	fakevm_pci_cfg(vm, PCI_BAR0, 4, &bar, false);
	fakevm_run_program(&r.f, bar & ~0xfu, data, size, blk_process, blk_fail, &r);
	fakevm_destroy(&r.f);
	return 0;
}
