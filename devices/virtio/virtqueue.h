/* Split virtqueues (virtio 1.x, 2.7) seen from the device: pop the chains
 * the driver made available, push used elements. Guest memory is reached
 * only through a struct virtq_mem, whose callbacks refuse any range not
 * wholly inside guest RAM, so a hostile ring cannot make us touch anything
 * else. No indirect descriptors, no EVENT_IDX (neither is offered). */
#ifndef MINIVMM_VIRTQUEUE_H
#define MINIVMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTQ_MAX_SIZE 256

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* The guest-memory accessor the VM gives its devices. Each returns 0, or
 * -EFAULT when [gpa, gpa + len) is not wholly guest RAM (overflow
 * included); write also records the pages as dirty for migration. */
struct virtq_mem {
	int (*read)(void *opaque, uint64_t gpa, void *buf, uint64_t len);
	int (*write)(void *opaque, uint64_t gpa, const void *buf, uint64_t len);
	int (*check)(void *opaque, uint64_t gpa, uint64_t len);
	void *opaque;
};

struct virtq {
	uint16_t max_size;   /* what the device offers */
	uint16_t size;       /* what the driver chose */
	bool ready;          /* queue_enable */
	uint64_t desc, avail, used; /* guest-physical ring addresses */
	uint16_t last_avail; /* next avail ring slot the device reads */
	uint16_t used_idx;   /* next used ring slot the device writes */
};

struct virtq_seg {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* One descriptor chain, all its buffers checked against guest RAM. */
struct virtq_chain {
	uint16_t head;
	int nseg;
	uint64_t out_len, in_len; /* device-readable / -writable bytes */
	struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

/* Queue geometry the spec allows: size a power of two up to max_size,
 * rings aligned (16, 2, 4) and wholly in guest RAM. 0 or -EINVAL. */
int virtq_check_layout(const struct virtq *q, const struct virtq_mem *m);
/* Back to "not configured" (max_size stays). */
void virtq_reset(struct virtq *q);

/* 1 and *c filled: a chain was popped; 0: nothing available; -EPROTO:
 * the driver broke the ring (avail index more than size ahead, head or
 * next out of range, a loop or a chain longer than the queue, a buffer
 * outside RAM or wrapping, an indirect descriptor, readable after
 * writable): the device must enter NEEDS_RESET. -EFAULT: the ring
 * itself is not readable. */
int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c);
/* True when the driver made a chain available (a cheap peek). */
bool virtq_has_avail(const struct virtq *q, const struct virtq_mem *m);
/* Returns the chain at head to the driver with len bytes written. */
int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt for what was pushed. */
bool virtq_want_interrupt(const struct virtq *q, const struct virtq_mem *m);

/* Copies between a chain's buffers and host memory: the device-readable
 * part from offset skip, or into the device-writable part from skip.
 * Returns the bytes copied or -EFAULT. */
int64_t virtq_chain_read(const struct virtq_chain *c, const struct virtq_mem *m,
			 uint64_t skip, void *buf, uint64_t len);
int64_t virtq_chain_write(const struct virtq_chain *c, const struct virtq_mem *m,
			  uint64_t skip, const void *buf, uint64_t len);

#endif
