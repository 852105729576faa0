/* Split virtqueues (devices/virtio/virtqueue.c) against a hostile driver:
 * the buffer's first 32 bytes are the queue's registers (size, ring
 * addresses, indices), the rest is guest RAM (64 KiB) holding whatever
 * rings and descriptors it says. Every popped chain is read, written and
 * pushed back; what the parser let through must lie inside RAM. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtqueue.h"
#include "migrate/proto/stream.h"

#define RAM (64u << 10)

static uint8_t *ram;

static int ram_check(void *o, uint64_t gpa, uint64_t len)
{
	(void)o;
	return gpa <= RAM && len <= RAM - gpa ? 0 : -EFAULT;
}

static int ram_read(void *o, uint64_t gpa, void *buf, uint64_t len)
{
	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(buf, ram + gpa, len);
	return 0;
}

static int ram_write(void *o, uint64_t gpa, const void *buf, uint64_t len)
{
	if (ram_check(o, gpa, len))
		return -EFAULT;
	memcpy(ram + gpa, buf, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain c;
	const struct virtq_mem m = { ram_read, ram_write, ram_check, NULL };
	struct virtq q = { .max_size = VIRTQ_MAX_SIZE };
	uint8_t buf[512];

	if (size < 32)
		return 0;
	if (!ram)
		ram = malloc(RAM);
	if (!ram)
		return 0;
	memset(ram, 0, RAM);
	memcpy(ram, data + 32, size - 32 < RAM ? size - 32 : RAM);
	q.size = le_get16(data);
	q.desc = le_get64(data + 2) % (RAM + 64);
	q.avail = le_get64(data + 10) % (RAM + 64);
	q.used = le_get64(data + 18) % (RAM + 64);
	q.last_avail = le_get16(data + 26);
	q.used_idx = le_get16(data + 28);
	q.ready = true;
	if (virtq_check_layout(&q, &m) < 0)
		return 0;
	for (int i = 0; i < 2 * VIRTQ_MAX_SIZE + 2; i++) {
		int ret;

		virtq_has_avail(&q, &m);
		ret = virtq_pop(&q, &m, &c);
		if (ret <= 0)
			break;
		if (c.nseg < 1 || c.nseg > q.size || c.head >= q.size)
			abort();
		for (int s = 0; s < c.nseg; s++)
			if (ram_check(NULL, c.seg[s].gpa, c.seg[s].len))
				abort();
		if (virtq_chain_read(&c, &m, data[30] % 16, buf, sizeof(buf)) < 0 ||
		    virtq_chain_write(&c, &m, data[31] % 16, buf, sizeof(buf)) < 0)
			abort();
		if (virtq_push(&q, &m, c.head, (uint32_t)(c.in_len < 64 ? c.in_len : 64)) < 0)
			break;
		virtq_want_interrupt(&q, &m);
	}
	return 0;
}
