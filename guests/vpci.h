/*
 * vpci: the guests' PCI (conf1) and virtio 1.x PCI driver, shared by the net
 * and disk guests: find a virtio device by type with a bus scan, read its
 * vendor capabilities, size and (when no firmware did) assign its BARs,
 * reset it, negotiate features (VERSION_1 required), set up split
 * virtqueues, and walk the used rings with every value the device wrote
 * checked. Polling by default (INTx disabled in the command register, every
 * queue with VRING_AVAIL_F_NO_INTERRUPT); a driver may take the legacy INTx
 * line instead (vpci_intx_line, vpci_intx_enable, vq_interrupts).
 */
#ifndef GUESTS_VPCI_H
#define GUESTS_VPCI_H
#include "common.h"

/* common configuration (virtio 1.x 4.1.4.3) */
#define VC_DFSEL    0x00
#define VC_DF       0x04
#define VC_GFSEL    0x08
#define VC_GF       0x0c
#define VC_MSIX     0x10
#define VC_NUMQ     0x12
#define VC_STATUS   0x14
#define VC_GEN      0x15
#define VC_QSEL     0x16
#define VC_QSIZE    0x18
#define VC_QMSIX    0x1a
#define VC_QENABLE  0x1c
#define VC_QNOTOFF  0x1e
#define VC_QDESC    0x20
#define VC_QDRIVER  0x28
#define VC_QDEVICE  0x30
#define VC_LEN      0x38

#define S_ACK        1
#define S_DRIVER     2
#define S_DRIVER_OK  4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40
#define S_FAILED     0x80

#define F_VERSION_1      (1UL << 32)

#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2
#define VRING_AVAIL_F_NO_INTERRUPT 1

#define VIRTIO_TYPE_NET 1
#define VIRTIO_TYPE_BLOCK 2

struct vdesc { u64 addr; u32 len; u16 flags, next; };
struct vused_elem { u32 id, len; };

struct vpci;

struct vq {
    int ok;
    u16 size, idx;                      /* queue index */
    u16 avail_idx, last_used;
    volatile struct vdesc *desc;
    volatile u16 *avail;                /* flags, idx, ring[size], used_event */
    volatile u16 *used_hdr;             /* flags, idx */
    volatile struct vused_elem *used;   /* ring[size] */
    volatile u16 *notify;
    u8 *owned;                          /* per descriptor: 1 = the device has it */
    struct vpci *dev;
};

struct vcap { int have; u8 bar; u32 off, len; };

struct vpci {
    const char *tag;                    /* message prefix: "net", "disk" */
    u32 bdf;
    u16 devid;
    volatile u8 *common, *isr, *devcfg, *notify_base;
    u64 devcfg_len, notify_len;
    u32 notify_mult;
    u64 features;
    int dead;
    u64 err;                            /* bad used elements skipped */
    struct vcap caps[5];
};

/* The first virtio device of this type on the bus (scanned behind bridges
 * too): 1af4:(1040 + type), or the transitional 1af4:(1000 + type - 1)
 * whose subsystem ID says type. 0 when found. */
int vpci_find(struct vpci *d, u16 type, const char *tag);
/* Where BARs no firmware assigned go (the bar_base= debug parameter):
 * from here, all of them re-assigned. */
void vpci_force_bar_base(u64 base);
/* Capabilities, BARs, mapping, reset, ACKNOWLEDGE | DRIVER. */
int vpci_open(struct vpci *d);
/* The features: offered & want (VERSION_1 always), FEATURES_OK checked. */
int vpci_features(struct vpci *d, u64 want);
/* The device's config space: an 8/16/32-bit read consistent with the
 * config generation. */
u32 vpci_cfg_read(struct vpci *d, u64 off, int width);
int vq_setup(struct vpci *d, struct vq *q, u16 idx, u16 cap, void *desc, void *avail, void *used,
             u8 *owned);
/* DRIVER_OK; -1 if the device then says NEEDS_RESET or FAILED. */
int vpci_driver_ok(struct vpci *d);
/* The device misbehaved: stop using it (FAILED), once, with a line. */
void vpci_fail(struct vpci *d, const char *why);
int vpci_needs_reset(struct vpci *d);
void vq_push(struct vq *q, u16 id);
void vq_kick(struct vq *q);
/* Next used element: 1 with *id (< size and owned by the device) and *len,
 * 0 when none; a bad element is counted in d->err and skipped. */
int vq_next_used(struct vq *q, u16 *id, u32 *len);
/* The PIC line the firmware (or the VMM) wrote to Interrupt Line, when
 * the function has an interrupt pin and the line is a PIC line (0..15);
 * -1 otherwise. Whether a driver can take it is rt_irq_attach's to say. */
int vpci_intx_line(struct vpci *d);
/* INTx on (1) or off (0) in the command register. */
void vpci_intx_enable(struct vpci *d, int on);
/* Used-buffer interrupts for this queue on (1) or suppressed (0). */
void vq_interrupts(struct vq *q, int on);
/* Used buffers waiting (one memory read, no exit). */
static inline int vq_used_pending(const struct vq *q)
{
    return q->ok && q->used_hdr[1] != q->last_used;
}
/* "pci=bb:dd.f id=1af4:xxxx common=... notify=... isr=... devcfg=..." */
int vpci_describe(struct vpci *d, char *buf, size_t n);

#endif
