#include "vpci.h"

/* ================================================================== */
/* PCI (conf1)                                                         */

#define PCI_ADDR(b, d, f, o) (0x80000000u | (u32)(b) << 16 | (u32)(d) << 11 | (u32)(f) << 8 | ((o) & 0xfc))

static u32 pci_r32(u32 bdf, u32 off)
{
    outl(0xcf8, bdf | (off & 0xfc));
    return inl(0xcfc);
}
static u16 pci_r16(u32 bdf, u32 off) { return (u16)(pci_r32(bdf, off) >> ((off & 2) * 8)); }
static u8 pci_r8(u32 bdf, u32 off) { return (u8)(pci_r32(bdf, off) >> ((off & 3) * 8)); }
static void pci_w32(u32 bdf, u32 off, u32 v)
{
    outl(0xcf8, bdf | (off & 0xfc));
    outl(0xcfc, v);
}
static void pci_w16(u32 bdf, u32 off, u16 v)
{
    outl(0xcf8, bdf | (off & 0xfc));
    outw((u16)(0xcfc + (off & 2)), v);
}

#define PCI_CMD_MEM     (1u << 1)
#define PCI_CMD_MASTER  (1u << 2)
#define PCI_CMD_INTX_OFF (1u << 10)

static int scan_bus(u32 bus, int depth, u16 type, u32 *out)
{
    for (u32 dev = 0; dev < 32; dev++) {
        u32 nfn = 1;
        for (u32 fn = 0; fn < nfn; fn++) {
            u32 bdf = PCI_ADDR(bus, dev, fn, 0);
            u32 id = pci_r32(bdf, 0);
            if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
                continue;
            u8 hdr = pci_r8(bdf, 0x0e);
            if (fn == 0 && (hdr & 0x80))
                nfn = 8;
            u16 vendor = (u16)id, device = (u16)(id >> 16);
            if (vendor == 0x1af4 &&
                (device == 0x1040 + type ||
                 /* transitional: the subsystem id says the type */
                 (device == 0x1000 + type - 1 && pci_r16(bdf, 0x2e) == type))) {
                *out = bdf;
                return 1;
            }
            if ((hdr & 0x7f) == 1 && depth < 8) {       /* PCI-PCI bridge */
                u32 sec = pci_r8(bdf, 0x19);
                if (sec > bus && scan_bus(sec, depth + 1, type, out))
                    return 1;
            }
        }
    }
    return 0;
}

int vpci_find(struct vpci *d, u16 type, const char *tag)
{
    memset(d, 0, sizeof(*d));
    d->tag = tag;
    if (!scan_bus(0, 0, type, &d->bdf))
        return -1;
    d->devid = pci_r16(d->bdf, 2);
    return 0;
}

struct bar {
    int probed, ok;
    u64 addr, size;
};
static struct bar bars[6];
static u64 bar_next = 0xe0000000UL;     /* where unassigned BARs go */
static u64 bar_limit = 0xfec00000UL;    /* below the IOAPIC */
static int bar_force;                   /* bar_base= given */

void vpci_force_bar_base(u64 base)
{
    bar_force = 1;
    bar_next = base;
    if (bar_next >= (1UL << 32))
        bar_limit = 1UL << 46;
}

/* memory decode must be off while sizing */
static void bar_probe(u32 bdf, int i)
{
    struct bar *b = &bars[i];
    b->probed = 1;
    u32 off = 0x10 + 4 * (u32)i;
    u32 lo = pci_r32(bdf, off);
    if (lo & 1) {
        rt_warn("BAR%d is an I/O BAR: not supported", i);
        return;
    }
    int is64 = ((lo >> 1) & 3) == 2;
    if (is64 && i == 5) {
        rt_warn("BAR5 claims 64 bits");
        return;
    }
    pci_w32(bdf, off, 0xffffffffu);
    u32 mlo = pci_r32(bdf, off);
    pci_w32(bdf, off, lo);
    u32 hi = 0, mhi = 0xffffffffu;
    if (is64) {
        hi = pci_r32(bdf, off + 4);
        pci_w32(bdf, off + 4, 0xffffffffu);
        mhi = pci_r32(bdf, off + 4);
        pci_w32(bdf, off + 4, hi);
    }
    u64 mask = ((u64)mhi << 32) | (mlo & ~0xfu);
    if (!(mask & ~0xfUL) || (mask | (mask - 1)) != UINT64_MAX) {
        rt_warn("BAR%d: bad size mask 0x%lx", i, mask);
        return;
    }
    b->size = ~mask + 1;
    b->addr = ((u64)hi << 32) | (lo & ~0xfu);
    if (bar_force && !is64 && bar_next >= (1UL << 32)) {
        rt_warn("BAR%d is 32-bit: bar_base above 4 GiB not applied", i);
    } else if (bar_force) {
        b->addr = 0;
    }
    if (!b->addr) {                     /* unassigned (no firmware): place it ourselves */
        u64 a = (bar_next + b->size - 1) & ~(b->size - 1);
        if (b->size > bar_limit || a > bar_limit - b->size) {
            rt_warn("BAR%d: no room for 0x%lx bytes", i, b->size);
            return;
        }
        pci_w32(bdf, off, (u32)a | (lo & 0xf));
        if (is64)
            pci_w32(bdf, off + 4, (u32)(a >> 32));
        bar_next = a + b->size;
        b->addr = a;
    }
    b->ok = 1;
}

/* ================================================================== */
/* virtio                                                              */

void vpci_fail(struct vpci *d, const char *why)
{
    if (d->dead)
        return;
    d->dead = 1;
    kprintf("%s: error: %s: device disabled\n", d->tag, why);
    if (d->common)
        mmio_w8(d->common + VC_STATUS, (u8)(mmio_r8(d->common + VC_STATUS) | S_FAILED));
}

int vpci_needs_reset(struct vpci *d)
{
    return !d->dead && (mmio_r8(d->common + VC_STATUS) & S_NEEDS_RESET);
}

static void w64(volatile u8 *p, u64 v)
{
    mmio_w32(p, (u32)v);
    mmio_w32(p + 4, (u32)(v >> 32));
}

int vq_setup(struct vpci *d, struct vq *q, u16 idx, u16 cap, void *desc, void *avail, void *used,
             u8 *owned)
{
    volatile u8 *common = d->common;
    mmio_w16(common + VC_QSEL, idx);
    u16 max = mmio_r16(common + VC_QSIZE);
    if (!max) {
        rt_warn("virtqueue %u is not available", idx);
        return -1;
    }
    u16 n = 1;
    while ((u32)n * 2 <= max && (u32)n * 2 <= cap)
        n *= 2;
    u64 noff = (u64)mmio_r16(common + VC_QNOTOFF) * d->notify_mult;
    if (noff + 2 > d->notify_len) {
        rt_warn("virtqueue %u: notify offset 0x%lx outside the notify region", idx, noff);
        return -1;
    }
    q->dev = d;
    q->idx = idx;
    q->size = n;
    q->avail_idx = 0;
    q->last_used = 0;
    q->desc = desc;
    q->avail = avail;
    q->used_hdr = used;
    q->used = (volatile struct vused_elem *)((u8 *)used + 4);
    q->notify = (volatile u16 *)(d->notify_base + noff);
    q->owned = owned;
    q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;   /* we poll */
    q->avail[1] = 0;
    mmio_w16(common + VC_QSIZE, n);
    mmio_w16(common + VC_QMSIX, 0xffff);
    w64(common + VC_QDESC, (u64)desc);
    w64(common + VC_QDRIVER, (u64)avail);
    w64(common + VC_QDEVICE, (u64)used);
    mmio_w16(common + VC_QENABLE, 1);
    q->ok = 1;
    return 0;
}

void vq_push(struct vq *q, u16 id)
{
    q->owned[id] = 1;
    q->avail[2 + (q->avail_idx & (q->size - 1))] = id;
    q->avail_idx++;
}

void vq_kick(struct vq *q)
{
    barrier();                          /* x86 keeps stores in order; the kick is an exit */
    q->avail[1] = q->avail_idx;
    barrier();
    mmio_w16(q->notify, q->idx);
}

int vq_next_used(struct vq *q, u16 *id, u32 *len)
{
    for (;;) {
        if (q->dev->dead)
            return 0;
        u16 uidx = q->used_hdr[1];
        barrier();
        u16 pending = (u16)(uidx - q->last_used);
        if (!pending)
            return 0;
        if (pending > q->size) {
            vpci_fail(q->dev, "used idx ran ahead of the ring");
            return 0;
        }
        volatile struct vused_elem *e = &q->used[q->last_used & (q->size - 1)];
        u32 i = e->id, l = e->len;
        q->last_used++;
        if (i >= q->size || !q->owned[i]) {
            q->dev->err++;
            continue;
        }
        q->owned[i] = 0;
        *id = (u16)i;
        *len = l;
        return 1;
    }
}

u32 vpci_cfg_read(struct vpci *d, u64 off, int width)
{
    u32 v = 0;
    if (!d->devcfg || off + (u64)width > d->devcfg_len)
        return 0;
    for (int tries = 0; tries < 10; tries++) {
        u8 g = mmio_r8(d->common + VC_GEN);
        v = width == 1 ? mmio_r8(d->devcfg + off) : width == 2 ? mmio_r16(d->devcfg + off)
                                                               : mmio_r32(d->devcfg + off);
        if (mmio_r8(d->common + VC_GEN) == g)
            break;
    }
    return v;
}

static volatile u8 *map_cap(const struct vcap *c, const char *what, u64 min_len)
{
    if (!c->have) {
        rt_warn("no virtio %s capability", what);
        return 0;
    }
    const struct bar *b = &bars[c->bar];
    if (!b->ok || (u64)c->off + c->len > b->size || c->len < min_len) {
        rt_warn("virtio %s capability: BAR%u+0x%x len 0x%x does not fit", what, c->bar, c->off, c->len);
        return 0;
    }
    volatile u8 *p = rt_map_mmio(b->addr + c->off, c->len);
    if (!p)
        rt_warn("virtio %s: cannot map 0x%lx", what, b->addr + c->off);
    return p;
}

static u64 cap_addr(struct vpci *d, int t)
{
    return d->caps[t].have ? bars[d->caps[t].bar].addr + d->caps[t].off : 0;
}

int vpci_describe(struct vpci *d, char *buf, size_t n)
{
    return ksnprintf(buf, n, "pci=%02x:%02x.%x id=1af4:%04x common=0x%lx notify=0x%lx mult=%u isr=0x%lx devcfg=0x%lx",
                     (d->bdf >> 16) & 0xff, (d->bdf >> 11) & 0x1f, (d->bdf >> 8) & 7, d->devid,
                     cap_addr(d, 1), cap_addr(d, 2), d->notify_mult, cap_addr(d, 3),
                     d->devcfg ? cap_addr(d, 4) : 0);
}

int vpci_open(struct vpci *d)
{
    u32 bdf = d->bdf;
    struct vcap *caps = d->caps;

    /* capabilities */
    if (!(pci_r16(bdf, 6) & 0x10)) {
        kprintf("%s: error: device has no capability list (legacy-only?)\n", d->tag);
        return -1;
    }
    u32 p = pci_r8(bdf, 0x34) & 0xfc;
    for (int n = 0; p >= 0x40 && n < 48; n++) {
        u8 id = pci_r8(bdf, p), next = pci_r8(bdf, p + 1) & 0xfc;
        if (id == 0x09 && p <= 0x100 - 16) {
            u8 len = pci_r8(bdf, p + 2), type = pci_r8(bdf, p + 3), bar = pci_r8(bdf, p + 4);
            if (type >= 1 && type <= 4 && !caps[type].have && bar < 6 && len >= 16 &&
                (type != 2 || (len >= 20 && p <= 0x100 - 20))) {
                caps[type].have = 1;
                caps[type].bar = bar;
                caps[type].off = pci_r32(bdf, p + 8);
                caps[type].len = pci_r32(bdf, p + 12);
                if (type == 2)
                    d->notify_mult = pci_r32(bdf, p + 16);
            }
        }
        p = next;
    }

    /* BARs: size them with memory decode off, assign unassigned ones */
    u16 cmd = pci_r16(bdf, 4);
    pci_w16(bdf, 4, (u16)(cmd & ~(PCI_CMD_MEM | PCI_CMD_MASTER)));
    for (int t = 1; t <= 4; t++)
        if (caps[t].have && !bars[caps[t].bar].probed)
            bar_probe(bdf, caps[t].bar);
    pci_w16(bdf, 4, (u16)(cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF));

    d->common = map_cap(&caps[1], "common", VC_LEN);
    d->notify_base = map_cap(&caps[2], "notify", 2);
    d->isr = map_cap(&caps[3], "ISR", 1);
    if (caps[4].have)
        d->devcfg = map_cap(&caps[4], "device", 1);
    if (!d->common || !d->notify_base || !d->isr) {
        kprintf("%s: error: the virtio capabilities are unusable\n", d->tag);
        return -1;
    }
    d->notify_len = caps[2].len;
    d->devcfg_len = d->devcfg ? caps[4].len : 0;

    /* reset, ACKNOWLEDGE, DRIVER */
    volatile u8 *common = d->common;
    mmio_w8(common + VC_STATUS, 0);
    u64 end = rt_ticks + rt_ms_to_ticks(100);
    while (mmio_r8(common + VC_STATUS) != 0)
        if (rt_ticks >= end) {
            kprintf("%s: error: device does not reset\n", d->tag);
            return -1;
        }
    mmio_w8(common + VC_STATUS, S_ACK);
    mmio_w8(common + VC_STATUS, S_ACK | S_DRIVER);
    return 0;
}

int vpci_features(struct vpci *d, u64 want)
{
    volatile u8 *common = d->common;

    mmio_w32(common + VC_DFSEL, 0);
    u64 offered = mmio_r32(common + VC_DF);
    mmio_w32(common + VC_DFSEL, 1);
    offered |= (u64)mmio_r32(common + VC_DF) << 32;
    if (!(offered & F_VERSION_1)) {
        mmio_w8(common + VC_STATUS, S_FAILED);
        kprintf("%s: error: device does not offer VIRTIO_F_VERSION_1 (features 0x%lx)\n", d->tag,
                offered);
        return -1;
    }
    d->features = offered & (want | F_VERSION_1);
    mmio_w32(common + VC_GFSEL, 0);
    mmio_w32(common + VC_GF, (u32)d->features);
    mmio_w32(common + VC_GFSEL, 1);
    mmio_w32(common + VC_GF, (u32)(d->features >> 32));
    mmio_w8(common + VC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(mmio_r8(common + VC_STATUS) & S_FEATURES_OK)) {
        mmio_w8(common + VC_STATUS, S_FAILED);
        kprintf("%s: error: device refused features 0x%lx\n", d->tag, d->features);
        return -1;
    }
    mmio_w16(common + VC_MSIX, 0xffff);
    return 0;
}

int vpci_driver_ok(struct vpci *d)
{
    mmio_w8(d->common + VC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    u8 st8 = mmio_r8(d->common + VC_STATUS);
    if (st8 & (S_NEEDS_RESET | S_FAILED)) {
        kprintf("%s: error: device status 0x%x after DRIVER_OK\n", d->tag, st8);
        d->dead = 1;
        return -1;
    }
    return 0;
}

int vpci_intx_line(struct vpci *d)
{
    u8 pin = pci_r8(d->bdf, 0x3d), line = pci_r8(d->bdf, 0x3c);
    if (!pin || pin > 4 || line >= 16)
        return -1;
    return line;
}

void vpci_intx_enable(struct vpci *d, int on)
{
    u16 cmd = pci_r16(d->bdf, 4);
    pci_w16(d->bdf, 4, on ? (u16)(cmd & ~PCI_CMD_INTX_OFF) : (u16)(cmd | PCI_CMD_INTX_OFF));
}

void vq_interrupts(struct vq *q, int on)
{
    q->avail[0] = on ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
}
