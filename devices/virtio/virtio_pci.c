#include "devices/virtio/virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* virtio_pci_cap.cfg_type (4.1.4) */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define PCI_CAP_ID_VNDR 0x09
#define NO_VECTOR 0xffff

/* Common configuration (4.1.4.3) offsets. */
enum {
	CC_DFSELECT = 0x00, CC_DF = 0x04, CC_GFSELECT = 0x08, CC_GF = 0x0c,
	CC_MSIX = 0x10, CC_NUMQ = 0x12, CC_STATUS = 0x14, CC_CFGGEN = 0x15,
	CC_Q_SELECT = 0x16, CC_Q_SIZE = 0x18, CC_Q_MSIX = 0x1a, CC_Q_ENABLE = 0x1c,
	CC_Q_NOFF = 0x1e, CC_Q_DESC = 0x20, CC_Q_AVAIL = 0x28, CC_Q_USED = 0x30,
};

#define STATUS_KNOWN 0xcf

void virtio_le_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t virtio_le_get(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void add_cap(struct pci_func *f, uint8_t type, uint32_t off, uint32_t len,
		    bool notify)
{
	uint8_t cap[20] = { PCI_CAP_ID_VNDR, 0, notify ? 20 : 16, type, VIRTIO_PCI_BAR };

	virtio_le_put(cap + 8, off, 4);
	virtio_le_put(cap + 12, len, 4);
	if (notify)
		virtio_le_put(cap + 16, VIRTIO_PCI_NOTIFY_MULT, 4);
	pci_func_add_cap(f, cap, cap[2]);
}

static struct virtq *sel_queue(struct virtio_pci *vp)
{
	return vp->queue_sel < vp->nqueues ? &vp->vq[vp->queue_sel] : NULL;
}

static void notify_map_all(struct virtio_pci *vp, uint64_t bar, bool on)
{
	if (!vp->notify_map)
		return;
	for (int q = 0; q < vp->nqueues; q++)
		vp->notify_map(vp->notify_opaque, q,
			       bar + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * (uint64_t)q,
			       on);
}

static void bar_moved(void *opaque, int bar, uint64_t gpa, bool on)
{
	if (bar == VIRTIO_PCI_BAR)
		notify_map_all(opaque, gpa, on);
}

int virtio_pci_init(struct virtio_pci *vp, uint8_t type, uint32_t class_code,
		    int nqueues, uint16_t qsize, uint64_t features,
		    const struct virtio_dev_ops *ops, void *dev,
		    const struct virtq_mem *mem)
{
	int ret;

	if (nqueues < 1 || nqueues > VIRTIO_PCI_MAX_QUEUES || qsize == 0 ||
	    qsize > VIRTQ_MAX_SIZE || (qsize & (qsize - 1)))
		return -EINVAL;
	memset(vp, 0, sizeof(*vp));
	snprintf(vp->name, sizeof(vp->name), "virtio-%u", type);
	/* Revision 1: a modern-only device (4.1.2.1); subsystem ID is the
	 * type for the drivers that look there. */
	pci_func_init(&vp->pci, vp->name, VIRTIO_PCI_VENDOR,
		      (uint16_t)(VIRTIO_PCI_DEVICE_BASE + type), class_code, 1,
		      VIRTIO_PCI_VENDOR, (uint16_t)(0x40 + type));
	ret = pci_func_add_bar(&vp->pci, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE,
			       virtio_pci_bar_io, vp);
	if (ret)
		return ret;
	add_cap(&vp->pci, CAP_COMMON, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN, false);
	add_cap(&vp->pci, CAP_ISR, VIRTIO_PCI_ISR_OFF, 1, false);
	add_cap(&vp->pci, CAP_DEVICE, VIRTIO_PCI_DEVCFG_OFF, VIRTIO_PCI_DEVCFG_LEN, false);
	add_cap(&vp->pci, CAP_NOTIFY, VIRTIO_PCI_NOTIFY_OFF,
		VIRTIO_PCI_NOTIFY_MULT * (uint32_t)nqueues, true);
	pci_func_set_map(&vp->pci, bar_moved, vp);
	vp->type = type;
	vp->dev_features = features | VIRTIO_F_VERSION_1;
	vp->nqueues = nqueues;
	for (int q = 0; q < nqueues; q++) {
		vp->vq[q].max_size = qsize;
		virtq_reset(&vp->vq[q]);
	}
	vp->ops = ops;
	vp->dev = dev;
	vp->mem = *mem;
	vp->msix_config = NO_VECTOR;
	return 0;
}

void virtio_pci_raise(struct virtio_pci *vp, uint8_t why)
{
	vp->isr |= why;
	pci_func_set_intx(&vp->pci, vp->isr != 0);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	vp->cfg_gen++;
	if (vp->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_pci_raise(vp, VIRTIO_ISR_CONFIG);
}

void virtio_pci_needs_reset(struct virtio_pci *vp)
{
	if (vp->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	virtio_pci_config_changed(vp);
}

bool virtio_pci_running(const struct virtio_pci *vp)
{
	return (vp->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vp->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

/* The driver's reset (status 0, 4.1.4.3.1): transport state only; the
 * PCI function (BARs, command) is the guest's and stays. */
static void device_reset(struct virtio_pci *vp)
{
	vp->status = 0;
	vp->drv_features = 0;
	vp->dev_feat_sel = vp->drv_feat_sel = 0;
	vp->queue_sel = 0;
	vp->isr = 0;
	for (int q = 0; q < vp->nqueues; q++)
		virtq_reset(&vp->vq[q]);
	pci_func_set_intx(&vp->pci, false);
	if (vp->ops && vp->ops->reset)
		vp->ops->reset(vp->dev);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
	device_reset(vp);
	vp->cfg_gen = 0;
	pci_func_reset(&vp->pci);
}

static void set_status(struct virtio_pci *vp, uint8_t v)
{
	uint8_t old = vp->status;

	if (v == 0) {
		device_reset(vp);
		return;
	}
	/* Only a reset clears bits; NEEDS_RESET is the device's. */
	v = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) | old);
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* FEATURES_OK only for a legal subset that includes
		 * VERSION_1: we offer no legacy interface (2.2). */
		if (!(vp->drv_features & VIRTIO_F_VERSION_1) ||
		    (vp->drv_features & ~vp->dev_features))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	vp->status = v;
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
	    vp->ops && vp->ops->driver_ok)
		vp->ops->driver_ok(vp->dev);
}

/* The common structure as the driver would read it now. */
static void common_image(struct virtio_pci *vp, uint8_t img[VIRTIO_PCI_COMMON_LEN])
{
	struct virtq *q = sel_queue(vp);

	memset(img, 0, VIRTIO_PCI_COMMON_LEN);
	virtio_le_put(img + CC_DFSELECT, vp->dev_feat_sel, 4);
	if (vp->dev_feat_sel < 2)
		virtio_le_put(img + CC_DF, vp->dev_features >> (32 * vp->dev_feat_sel), 4);
	virtio_le_put(img + CC_GFSELECT, vp->drv_feat_sel, 4);
	if (vp->drv_feat_sel < 2)
		virtio_le_put(img + CC_GF, vp->drv_features >> (32 * vp->drv_feat_sel), 4);
	virtio_le_put(img + CC_MSIX, NO_VECTOR, 2);
	virtio_le_put(img + CC_NUMQ, (uint64_t)vp->nqueues, 2);
	img[CC_STATUS] = vp->status;
	img[CC_CFGGEN] = vp->cfg_gen;
	virtio_le_put(img + CC_Q_SELECT, vp->queue_sel, 2);
	if (!q)
		return; /* an unknown queue: size 0 tells the driver so */
	virtio_le_put(img + CC_Q_SIZE, q->size, 2);
	virtio_le_put(img + CC_Q_MSIX, NO_VECTOR, 2);
	virtio_le_put(img + CC_Q_ENABLE, q->ready, 2);
	virtio_le_put(img + CC_Q_NOFF, vp->queue_sel, 2);
	virtio_le_put(img + CC_Q_DESC, q->desc, 8);
	virtio_le_put(img + CC_Q_AVAIL, q->avail, 8);
	virtio_le_put(img + CC_Q_USED, q->used, 8);
}

static bool touches(uint32_t off, uint32_t len, uint32_t field, uint32_t flen)
{
	return off < field + flen && field < off + len;
}

static void common_write(struct virtio_pci *vp, uint32_t off, const uint8_t *data,
			 uint32_t len)
{
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	struct virtq *q;
	bool qwritable;

	/* Merge the bytes into the current image, then take each field the
	 * access touched: any width or split (two 32-bit halves of a 64-bit
	 * address) works the same way. */
	common_image(vp, img);
	memcpy(img + off, data, len);
	if (touches(off, len, CC_DFSELECT, 4))
		vp->dev_feat_sel = (uint32_t)virtio_le_get(img + CC_DFSELECT, 4);
	if (touches(off, len, CC_GFSELECT, 4))
		vp->drv_feat_sel = (uint32_t)virtio_le_get(img + CC_GFSELECT, 4);
	if (touches(off, len, CC_GF, 4) && vp->drv_feat_sel < 2 &&
	    !(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
		int sh = 32 * (int)vp->drv_feat_sel;

		vp->drv_features = (vp->drv_features & ~(0xffffffffULL << sh)) |
				   virtio_le_get(img + CC_GF, 4) << sh;
	}
	if (touches(off, len, CC_STATUS, 1))
		set_status(vp, img[CC_STATUS]);
	if (touches(off, len, CC_Q_SELECT, 2))
		vp->queue_sel = (uint16_t)virtio_le_get(img + CC_Q_SELECT, 2);
	q = sel_queue(vp);
	/* A queue's registers are the driver's until it enables it; later
	 * writes are ignored (4.1.4.3.2), and so are ones after DRIVER_OK. */
	qwritable = q && !q->ready && !(vp->status & VIRTIO_STATUS_DRIVER_OK);
	if (!qwritable)
		return;
	if (touches(off, len, CC_Q_SIZE, 2))
		q->size = (uint16_t)virtio_le_get(img + CC_Q_SIZE, 2);
	if (touches(off, len, CC_Q_DESC, 8))
		q->desc = virtio_le_get(img + CC_Q_DESC, 8);
	if (touches(off, len, CC_Q_AVAIL, 8))
		q->avail = virtio_le_get(img + CC_Q_AVAIL, 8);
	if (touches(off, len, CC_Q_USED, 8))
		q->used = virtio_le_get(img + CC_Q_USED, 8);
	if (touches(off, len, CC_Q_ENABLE, 2) && virtio_le_get(img + CC_Q_ENABLE, 2) == 1) {
		/* A ring we could not use stays disabled, and the device
		 * tells the driver it needs a reset rather than fail later. */
		if (virtq_check_layout(q, &vp->mem) == 0) {
			q->ready = true;
			q->last_avail = q->used_idx = 0;
		} else {
			virtio_pci_needs_reset(vp);
		}
	}
}

void virtio_pci_bar_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool w)
{
	struct virtio_pci *vp = opaque;

	if (off + len <= VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_LEN) {
		uint8_t img[VIRTIO_PCI_COMMON_LEN];

		if (w) {
			common_write(vp, (uint32_t)off, data, len);
		} else {
			common_image(vp, img);
			memcpy(data, img + off, len);
		}
		return;
	}
	if (off == VIRTIO_PCI_ISR_OFF) {
		if (w)
			return;
		/* Read-to-clear, and the line drops with it (4.1.4.5). */
		memset(data, 0, len);
		data[0] = vp->isr;
		vp->isr = 0;
		pci_func_set_intx(&vp->pci, false);
		return;
	}
	if (off >= VIRTIO_PCI_DEVCFG_OFF &&
	    off + len <= VIRTIO_PCI_DEVCFG_OFF + VIRTIO_PCI_DEVCFG_LEN) {
		uint32_t o = (uint32_t)(off - VIRTIO_PCI_DEVCFG_OFF);

		if (!w) {
			memset(data, 0, len);
			if (vp->ops->config_read)
				vp->ops->config_read(vp->dev, o, data, len);
		} else if (vp->ops->config_write) {
			vp->ops->config_write(vp->dev, o, data, len);
		}
		return;
	}
	if (off >= VIRTIO_PCI_NOTIFY_OFF &&
	    off < VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * (uint64_t)vp->nqueues) {
		int q = (int)((off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);

		if (!w)
			memset(data, 0, len);
		else if (vp->vq[q].ready && vp->ops->queue_notify)
			vp->ops->queue_notify(vp->dev, q);
		return;
	}
	if (!w)
		memset(data, 0, len);
}

/* ---- state ------------------------------------------------------------ */

enum {
	ST_TYPE = 0, ST_STATUS = 1, ST_CFGGEN = 2, ST_ISR = 3, ST_DFSEL = 4,
	ST_GFSEL = 8, ST_DF = 12, ST_GF = 20, ST_QSEL = 28, ST_MSIX = 30,
	ST_NQ = 32, ST_HDR = 34,
	QS_SIZE = 0, QS_MAX = 2, QS_LAST_AVAIL = 4, QS_USED_IDX = 6, QS_READY = 8,
	QS_RSVD = 9, QS_DESC = 16, QS_AVAIL = 24, QS_USED = 32,
};

int virtio_pci_save(const struct virtio_pci *vp, uint8_t *buf, size_t cap)
{
	size_t n = VIRTIO_PCI_STATE_SIZE(vp->nqueues);
	uint8_t *t = buf + PCI_FUNC_STATE_SIZE;

	if (cap < n)
		return -ENOSPC;
	memset(buf, 0, n);
	pci_func_save(&vp->pci, buf);
	t[ST_TYPE] = vp->type;
	t[ST_STATUS] = vp->status;
	t[ST_CFGGEN] = vp->cfg_gen;
	t[ST_ISR] = vp->isr;
	virtio_le_put(t + ST_DFSEL, vp->dev_feat_sel, 4);
	virtio_le_put(t + ST_GFSEL, vp->drv_feat_sel, 4);
	virtio_le_put(t + ST_DF, vp->dev_features, 8);
	virtio_le_put(t + ST_GF, vp->drv_features, 8);
	virtio_le_put(t + ST_QSEL, vp->queue_sel, 2);
	virtio_le_put(t + ST_MSIX, vp->msix_config, 2);
	virtio_le_put(t + ST_NQ, (uint64_t)vp->nqueues, 2);
	for (int i = 0; i < vp->nqueues; i++) {
		const struct virtq *q = &vp->vq[i];
		uint8_t *s = t + ST_HDR + VIRTIO_PCI_QSTATE_SIZE * i;

		virtio_le_put(s + QS_SIZE, q->size, 2);
		virtio_le_put(s + QS_MAX, q->max_size, 2);
		virtio_le_put(s + QS_LAST_AVAIL, q->last_avail, 2);
		virtio_le_put(s + QS_USED_IDX, q->used_idx, 2);
		s[QS_READY] = q->ready;
		virtio_le_put(s + QS_DESC, q->desc, 8);
		virtio_le_put(s + QS_AVAIL, q->avail, 8);
		virtio_le_put(s + QS_USED, q->used, 8);
	}
	return (int)n;
}

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

int virtio_pci_check(const uint8_t *p, size_t len, uint8_t type, char *err, size_t errlen)
{
	const uint8_t *t = p + PCI_FUNC_STATE_SIZE;
	uint64_t df, gf;
	unsigned nq;
	size_t n;

	if (len < PCI_FUNC_STATE_SIZE + ST_HDR)
		BAD("virtio state is %zu bytes, too short", len);
	if (virtio_le_get(p + PCI_VENDOR_ID, 2) != VIRTIO_PCI_VENDOR ||
	    virtio_le_get(p + PCI_DEVICE_ID, 2) != (uint64_t)(VIRTIO_PCI_DEVICE_BASE + type) ||
	    t[ST_TYPE] != type)
		BAD("virtio state is for device %04x:%04x type %u, not type %u",
		    (unsigned)virtio_le_get(p, 2), (unsigned)virtio_le_get(p + 2, 2), t[ST_TYPE], type);
	nq = (unsigned)virtio_le_get(t + ST_NQ, 2);
	if (nq < 1 || nq > VIRTIO_PCI_MAX_QUEUES)
		BAD("virtio state has %u queues (1..%d)", nq, VIRTIO_PCI_MAX_QUEUES);
	n = VIRTIO_PCI_STATE_SIZE(nq);
	if (len < n)
		BAD("virtio state is %zu bytes, %u queues need %zu", len, nq, n);
	df = virtio_le_get(t + ST_DF, 8);
	gf = virtio_le_get(t + ST_GF, 8);
	if (t[ST_STATUS] & ~STATUS_KNOWN)
		BAD("virtio status 0x%02x has unknown bits", t[ST_STATUS]);
	if (t[ST_ISR] & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG))
		BAD("virtio ISR 0x%02x has unknown bits", t[ST_ISR]);
	if (gf & ~df)
		BAD("virtio acked features 0x%llx are not a subset of the offered 0x%llx",
		    (unsigned long long)gf, (unsigned long long)df);
	if ((t[ST_STATUS] & VIRTIO_STATUS_FEATURES_OK) && !(gf & VIRTIO_F_VERSION_1))
		BAD("virtio FEATURES_OK without VERSION_1");
	for (unsigned i = 0; i < nq; i++) {
		const uint8_t *s = t + ST_HDR + VIRTIO_PCI_QSTATE_SIZE * i;
		unsigned size = (unsigned)virtio_le_get(s + QS_SIZE, 2);
		unsigned max = (unsigned)virtio_le_get(s + QS_MAX, 2);

		if (max == 0 || max > VIRTQ_MAX_SIZE || (max & (max - 1)) || size > max)
			BAD("virtio queue %u: size %u, max %u", i, size, max);
		if (s[QS_READY] > 1)
			BAD("virtio queue %u: ready is %u", i, s[QS_READY]);
		for (int r = QS_RSVD; r < QS_DESC; r++)
			if (s[r])
				BAD("virtio queue %u: reserved byte %d is set", i, r);
		if (s[QS_READY] && (size == 0 || (size & (size - 1))))
			BAD("virtio queue %u: ready with size %u", i, size);
		/* Back-ends quiesce before save: nothing is in flight, every
		 * chain popped has been pushed. */
		if (virtio_le_get(s + QS_LAST_AVAIL, 2) != virtio_le_get(s + QS_USED_IDX, 2))
			BAD("virtio queue %u: avail index %u and used index %u differ (a request in flight)",
			    i, (unsigned)virtio_le_get(s + QS_LAST_AVAIL, 2),
			    (unsigned)virtio_le_get(s + QS_USED_IDX, 2));
	}
	return (int)n;
}

int virtio_pci_load(struct virtio_pci *vp, const uint8_t *p, size_t len, char *err,
		    size_t errlen)
{
	const uint8_t *t = p + PCI_FUNC_STATE_SIZE;
	struct virtq vq[VIRTIO_PCI_MAX_QUEUES];
	uint64_t gf;
	int n = virtio_pci_check(p, len, vp->type, err, errlen), ret;

	if (n < 0)
		return n;
	if ((int)virtio_le_get(t + ST_NQ, 2) != vp->nqueues)
		BAD("virtio state has %u queues, this device %d", (unsigned)virtio_le_get(t + ST_NQ, 2),
		    vp->nqueues);
	gf = virtio_le_get(t + ST_GF, 8);
	if (gf & ~vp->dev_features)
		BAD("virtio acked features 0x%llx are not all offered here (0x%llx)",
		    (unsigned long long)gf, (unsigned long long)vp->dev_features);
	for (int i = 0; i < vp->nqueues; i++) {
		const uint8_t *s = t + ST_HDR + VIRTIO_PCI_QSTATE_SIZE * i;
		struct virtq *q = &vq[i];

		*q = (struct virtq){
			.max_size = (uint16_t)virtio_le_get(s + QS_MAX, 2),
			.size = (uint16_t)virtio_le_get(s + QS_SIZE, 2),
			.ready = s[QS_READY],
			.desc = virtio_le_get(s + QS_DESC, 8),
			.avail = virtio_le_get(s + QS_AVAIL, 8),
			.used = virtio_le_get(s + QS_USED, 8),
			.last_avail = (uint16_t)virtio_le_get(s + QS_LAST_AVAIL, 2),
			.used_idx = (uint16_t)virtio_le_get(s + QS_USED_IDX, 2),
		};
		if (q->max_size != vp->vq[i].max_size)
			BAD("virtio queue %d: max size %u, this device %u", i, q->max_size,
			    vp->vq[i].max_size);
		if (q->ready && virtq_check_layout(q, &vp->mem))
			BAD("virtio queue %d: rings 0x%llx/0x%llx/0x%llx (size %u) not in guest RAM",
			    i, (unsigned long long)q->desc, (unsigned long long)q->avail,
			    (unsigned long long)q->used, q->size);
	}
	/* Everything judged: the PCI space last of the checks, as it maps. */
	ret = pci_func_load(&vp->pci, p, err, errlen);
	if (ret)
		return ret;
	vp->status = t[ST_STATUS];
	vp->cfg_gen = t[ST_CFGGEN];
	vp->isr = t[ST_ISR];
	vp->dev_feat_sel = (uint32_t)virtio_le_get(t + ST_DFSEL, 4);
	vp->drv_feat_sel = (uint32_t)virtio_le_get(t + ST_GFSEL, 4);
	vp->drv_features = gf;
	vp->queue_sel = (uint16_t)virtio_le_get(t + ST_QSEL, 2);
	memcpy(vp->vq, vq, sizeof(vq[0]) * (size_t)vp->nqueues);
	/* Re-drive the line: the new VM's irqchip starts low. */
	vp->pci.line = false;
	pci_func_set_intx(&vp->pci, vp->isr != 0);
	return n;
}
