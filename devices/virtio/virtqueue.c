#include "devices/virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
} __attribute__((packed));

/* Ring offsets (2.7.6, 2.7.8): flags, idx, then the ring. */
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_IDX 2
#define USED_RING 4

static uint64_t desc_bytes(uint16_t n) { return 16ULL * n; }
static uint64_t avail_bytes(uint16_t n) { return 6ULL + 2ULL * n; }
static uint64_t used_bytes(uint16_t n) { return 6ULL + 8ULL * n; }

void virtq_reset(struct virtq *q)
{
	uint16_t max = q->max_size;

	memset(q, 0, sizeof(*q));
	q->max_size = max;
	q->size = max;
}

int virtq_check_layout(const struct virtq *q, const struct virtq_mem *m)
{
	uint16_t n = q->size;

	if (n == 0 || n > q->max_size || (n & (n - 1)))
		return -EINVAL;
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		return -EINVAL;
	if (m->check(m->opaque, q->desc, desc_bytes(n)) ||
	    m->check(m->opaque, q->avail, avail_bytes(n)) ||
	    m->check(m->opaque, q->used, used_bytes(n)))
		return -EINVAL;
	return 0;
}

static int read16(const struct virtq_mem *m, uint64_t gpa, uint16_t *v)
{
	uint16_t le;
	int ret = m->read(m->opaque, gpa, &le, sizeof(le));

	*v = le16toh(le);
	return ret;
}

static int avail_idx(const struct virtq *q, const struct virtq_mem *m, uint16_t *idx)
{
	int ret = read16(m, q->avail + AVAIL_IDX, idx);

	/* The ring entries the index covers are read after it (2.7.13). */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return ret;
}

bool virtq_has_avail(const struct virtq *q, const struct virtq_mem *m)
{
	uint16_t idx;

	return q->ready && avail_idx(q, m, &idx) == 0 && idx != q->last_avail;
}

int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c)
{
	uint16_t idx, head, i;
	bool seen_write = false;
	int ret;

	if (!q->ready)
		return 0;
	ret = avail_idx(q, m, &idx);
	if (ret)
		return ret;
	if (idx == q->last_avail)
		return 0;
	/* The driver can be at most a whole ring ahead of us. */
	if ((uint16_t)(idx - q->last_avail) > q->size)
		return -EPROTO;
	ret = read16(m, q->avail + AVAIL_RING + 2ULL * (q->last_avail % q->size), &head);
	if (ret)
		return ret;
	if (head >= q->size)
		return -EPROTO;
	memset(c, 0, offsetof(struct virtq_chain, seg));
	c->head = head;
	i = head;
	for (;;) {
		struct vring_desc d;
		struct virtq_seg *s;

		/* A chain visits each descriptor at most once, so one longer
		 * than the queue has a loop (2.7.5.3.1). */
		if (c->nseg == q->size)
			return -EPROTO;
		ret = m->read(m->opaque, q->desc + 16ULL * i, &d, sizeof(d));
		if (ret)
			return ret;
		d.addr = le64toh(d.addr);
		d.len = le32toh(d.len);
		d.flags = le16toh(d.flags);
		d.next = le16toh(d.next);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return -EPROTO; /* not offered */
		if (d.flags & VIRTQ_DESC_F_WRITE)
			seen_write = true;
		else if (seen_write)
			return -EPROTO; /* readable after writable (2.7.4.2) */
		if (m->check(m->opaque, d.addr, d.len))
			return -EPROTO;
		s = &c->seg[c->nseg++];
		s->gpa = d.addr;
		s->len = d.len;
		s->write = d.flags & VIRTQ_DESC_F_WRITE;
		if (s->write)
			c->in_len += d.len;
		else
			c->out_len += d.len;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= q->size)
			return -EPROTO;
		i = d.next;
	}
	q->last_avail++;
	return 1;
}

int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len)
{
	struct vring_used_elem e = { htole32(head), htole32(len) };
	uint16_t idx;
	int ret;

	ret = m->write(m->opaque, q->used + USED_RING + 8ULL * (q->used_idx % q->size), &e,
		       sizeof(e));
	if (ret)
		return ret;
	/* The element must be visible before the index that covers it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->used_idx++;
	idx = htole16(q->used_idx);
	ret = m->write(m->opaque, q->used + USED_IDX, &idx, sizeof(idx));
	/* And the index before whatever tells the driver (the interrupt). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ret;
}

bool virtq_want_interrupt(const struct virtq *q, const struct virtq_mem *m)
{
	uint16_t flags;

	if (read16(m, q->avail, &flags))
		return true;
	return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

static int64_t chain_copy(const struct virtq_chain *c, const struct virtq_mem *m,
			  bool writable, uint64_t skip, void *rbuf, const void *wbuf,
			  uint64_t len)
{
	uint64_t done = 0;

	for (int i = 0; i < c->nseg && done < len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t n, off;
		int ret;

		if (s->write != writable)
			continue;
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		off = skip;
		skip = 0;
		n = s->len - off;
		if (n > len - done)
			n = len - done;
		if (writable)
			ret = m->write(m->opaque, s->gpa + off, (const uint8_t *)wbuf + done, n);
		else
			ret = m->read(m->opaque, s->gpa + off, (uint8_t *)rbuf + done, n);
		if (ret)
			return ret;
		done += n;
	}
	return (int64_t)done;
}

int64_t virtq_chain_read(const struct virtq_chain *c, const struct virtq_mem *m,
			 uint64_t skip, void *buf, uint64_t len)
{
	return chain_copy(c, m, false, skip, buf, NULL, len);
}

int64_t virtq_chain_write(const struct virtq_chain *c, const struct virtq_mem *m,
			  uint64_t skip, const void *buf, uint64_t len)
{
	return chain_copy(c, m, true, skip, NULL, buf, len);
}
