/*
 * disk: a virtio-blk (virtio 1.x over PCI) test guest that proves its disk's
 * integrity. It writes stamped 4 KiB blocks at dwrite= blocks per second
 * (dpattern=seq|random) and keeps in memory what every block must hold (its
 * generation: how often it was written); the serial command `v` reads the
 * whole disk back and prints
 *   disk verify: pass blocks=N unwritten=U
 *   disk verify: FAIL block=B got=BLOCK:GEN want=BLOCK:GEN
 * A stamped block: magic, block number, generation, a check word, then one
 * 64-bit fill word made from (block, generation) repeated to the end, so a
 * block written to the wrong place, a lost write or a stale one shows up.
 * Blocks never written are expected to read as zeros with dfresh=1 (the
 * image was new when the guest booted) and are not judged otherwise.
 *
 * Found by a PCI scan and driven by polling (vpci.c); one request in flight,
 * every status and used element checked: a misbehaving device gets a line
 * (`disk: error: ...`), never a crash. Serial: v verify, q verify and exit
 * (status 1 pass, 3 fail), x exit.
 */
#include "vpci.h"

static const char *const pattern_choices[] = { "seq", "random", 0 };

static struct param params[] = {
    PARAM_HZ,
    PARAM_PERIOD,
    { .name = "dwrite", .kind = P_UINT_OR_MAX, .def = 100, .min = 0, .max = 1000000 },
    { .name = "dpattern", .kind = P_ENUM, .def = 0, .choices = pattern_choices },
    /* blocks of the disk used, from its start (0: all of it) */
    { .name = "dblocks", .kind = P_UINT, .def = 0, .min = 0, .max = 1UL << 32 },
    { .name = "dfresh", .kind = P_UINT, .def = 0, .min = 0, .max = 1 },
    { .name = "bar_base", .kind = P_UINT, .def = 0xe0000000UL, .min = 0x100000, .max = 1UL << 46,
      .flags = P_HIDDEN },
};

#define BLK 4096UL
#define SECTORS_PER_BLK (BLK / 512)
#define READ_BLKS 16                    /* blocks per read request when verifying */
#define QMAX 16
#define MAGIC 0x314b5344564d4d56UL      /* "VMMVDSK1" */
#define GEN_UNKNOWN 0xffffffffu         /* a write failed: contents unknown */

#define BLK_F_RO       (1UL << 5)
#define BLK_F_BLK_SIZE (1UL << 6)
#define BLK_F_FLUSH    (1UL << 9)
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4

static struct vdesc q_desc[QMAX] __attribute__((aligned(4096)));
static u16 q_avail[3 + QMAX] __attribute__((aligned(4096)));
static u32 q_used[1 + 2 * QMAX + 1] __attribute__((aligned(4096)));
static u8 q_owned[QMAX];
static u8 req_hdr[16] __attribute__((aligned(16)));
static volatile u8 req_status;
static u64 data[READ_BLKS * BLK / 8] __attribute__((aligned(4096)));
static u64 want_blk[BLK / 8] __attribute__((aligned(4096)));
static const u64 zero_blk[BLK / 8] __attribute__((aligned(4096)));

static struct vpci dev;
static struct vq rq;
static u64 capacity;                    /* sectors */
static u64 nblocks;
static u32 *gens;                       /* per block: 0 never written */
static u64 writes, errors, rng = 0x9e3779b97f4a7c15UL, seq_next;

static u64 mix(u64 x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185UL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dUL;
    x ^= x >> 33;
    return x;
}

static void stamp(u64 *b, u64 blk, u64 gen)
{
    u64 v = mix(blk * 0x9e3779b97f4a7c15UL ^ gen);
    u64 n = BLK / 8 - 4, *p = b + 4;
    b[0] = MAGIC;
    b[1] = blk;
    b[2] = gen;
    b[3] = mix(v ^ blk ^ (gen << 32));
    __asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(v) : "memory");
}

/* 0 when equal: one string instruction, not a loop the emulator walks */
static int blk_differs(const u64 *a, const u64 *b)
{
    u64 n = BLK / 8;
    u8 ne;
    __asm__ volatile("repe cmpsq; setne %0" : "=r"(ne), "+S"(a), "+D"(b), "+c"(n) : : "memory", "cc");
    return ne;
}

/* One request, waited for: 0 done with status OK, else the status (or -1:
 * no answer). The device must not answer with a descriptor we do not own. */
static int submit(u32 type, u64 sector, void *buf, u32 len, int dev_writes)
{
    if (dev.dead)
        return -1;
    memset(req_hdr, 0, sizeof(req_hdr));
    *(u32 *)req_hdr = type;
    *(u64 *)(req_hdr + 8) = sector;
    req_status = 0xff;
    rq.desc[0].addr = (u64)req_hdr;
    rq.desc[0].len = 16;
    rq.desc[0].flags = VRING_DESC_F_NEXT;
    u16 st = 1;
    if (len) {
        rq.desc[0].next = 1;
        rq.desc[1].addr = (u64)buf;
        rq.desc[1].len = len;
        rq.desc[1].flags = (u16)(VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0));
        rq.desc[1].next = 2;
        st = 2;
    } else {
        rq.desc[0].next = 1;
    }
    rq.desc[st].addr = (u64)&req_status;
    rq.desc[st].len = 1;
    rq.desc[st].flags = VRING_DESC_F_WRITE;
    rq.desc[st].next = 0;
    vq_push(&rq, 0);
    vq_kick(&rq);
    /* Generous: a migration may pause us in between. */
    u64 end = rt_ticks + rt_ms_to_ticks(30000);
    u16 id;
    u32 used;
    while (!vq_next_used(&rq, &id, &used)) {
        if (dev.dead)
            return -1;
        if (rt_ticks >= end) {
            vpci_fail(&dev, "a request got no answer in 30 s");
            return -1;
        }
        cpu_relax();
    }
    if (id != 0) {
        vpci_fail(&dev, "the device answered with a descriptor it was not given");
        return -1;
    }
    barrier();
    return req_status;
}

static u64 next_block(void)
{
    if (rt_param("dpattern")->val == 0)
        return seq_next++ % nblocks;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % nblocks;
}

static void write_one(void)
{
    u64 b = next_block();
    u32 g = gens[b] == GEN_UNKNOWN ? 1 : gens[b] + 1;
    stamp(data, b, g);
    int st = submit(T_OUT, b * SECTORS_PER_BLK, data, BLK, 0);
    if (st == 0) {
        gens[b] = g;
        writes++;
        return;
    }
    gens[b] = GEN_UNKNOWN;
    if (errors++ < 5)
        kprintf("disk: error: write of block %lu failed (status %d)\n", b, st);
}

static int verify(void)
{
    u64 checked = 0, unwritten = 0, unknown = 0;
    int fresh = (int)rt_param("dfresh")->val;

    if (submit(T_FLUSH, 0, 0, 0, 0) != 0)
        kprintf("disk: error: FLUSH failed\n");
    for (u64 b0 = 0; b0 < nblocks; b0 += READ_BLKS) {
        u64 n = nblocks - b0 < READ_BLKS ? nblocks - b0 : READ_BLKS;
        int st = submit(T_IN, b0 * SECTORS_PER_BLK, data, (u32)(n * BLK), 1);
        if (st != 0) {
            kprintf("disk verify: FAIL block=%lu read status %d\n", b0, st);
            return 0;
        }
        for (u64 i = 0; i < n; i++) {
            u64 b = b0 + i, *got = data + i * (BLK / 8);
            u32 g = gens[b];
            if (g == GEN_UNKNOWN) {
                unknown++;
                continue;
            }
            if (g == 0) {
                unwritten++;
                if (!fresh || !blk_differs(got, zero_blk))
                    continue;
                kprintf("disk verify: FAIL block=%lu got=%lu:%lu want=zeros\n", b,
                        got[0] == MAGIC ? got[1] : ~0UL, got[0] == MAGIC ? got[2] : ~0UL);
                return 0;
            }
            stamp(want_blk, b, g);
            if (blk_differs(got, want_blk)) {
                kprintf("disk verify: FAIL block=%lu got=%lu:%lu want=%lu:%u\n", b,
                        got[0] == MAGIC ? got[1] : ~0UL, got[0] == MAGIC ? got[2] : ~0UL, b, g);
                return 0;
            }
            checked++;
        }
    }
    kprintf("disk verify: pass blocks=%lu unwritten=%lu unknown=%lu writes=%lu\n", checked, unwritten,
            unknown, writes);
    return 1;
}

static int disk_up(void)
{
    if (vpci_find(&dev, VIRTIO_TYPE_BLOCK, "disk")) {
        kprintf("disk: error: no virtio-blk PCI device (1af4:1042 or 1af4:1001)\n");
        return -1;
    }
    struct param *pb = rt_param("bar_base");
    if (pb->given)
        vpci_force_bar_base(pb->val);
    if (vpci_open(&dev) || vpci_features(&dev, BLK_F_RO | BLK_F_BLK_SIZE | BLK_F_FLUSH))
        return -1;
    if (dev.devcfg_len < 8) {
        vpci_fail(&dev, "the config space has no capacity");
        return -1;
    }
    capacity = vpci_cfg_read(&dev, 0, 4) | (u64)vpci_cfg_read(&dev, 4, 4) << 32;
    u32 bsz = (dev.features & BLK_F_BLK_SIZE) ? vpci_cfg_read(&dev, 20, 4) : 512;
    if (bsz < 512 || bsz > BLK || (bsz & (bsz - 1))) {
        vpci_fail(&dev, "block size is not a power of two from 512 to 4096");
        return -1;
    }
    nblocks = capacity / SECTORS_PER_BLK;
    u64 lim = rt_param("dblocks")->val;
    if (lim && lim < nblocks)
        nblocks = lim;
    if (!nblocks) {
        vpci_fail(&dev, "the disk is smaller than one 4 KiB block");
        return -1;
    }
    gens = rt_vmap_alloc(nblocks * sizeof(u32));
    if (!gens) {
        vpci_fail(&dev, "no RAM for the per-block generations");
        return -1;
    }
    memset(gens, 0, nblocks * sizeof(u32));
    if (vq_setup(&dev, &rq, 0, QMAX, q_desc, q_avail, q_used, q_owned) || vpci_driver_ok(&dev)) {
        vpci_fail(&dev, "cannot set up the request queue");
        return -1;
    }
    char desc[160];
    vpci_describe(&dev, desc, sizeof(desc));
    kprintf("disk: device %s features=0x%lx capacity=%lu blk_size=%u blocks=%lu%s\n", desc, dev.features,
            capacity, bsz, nblocks, (dev.features & BLK_F_RO) ? " read-only" : "");
    return 0;
}

static struct heartbeat hb;

void guest_main(void)
{
    rt_init("disk", params, sizeof(params) / sizeof(params[0]), 0);
    rt_print_boot();
    int up = disk_up() == 0;
    u64 rate = rt_param("dwrite")->val;
    if (up && (dev.features & BLK_F_RO))
        rate = 0;

    hb_start(&hb, rt_param("period_ms")->val);
    u64 seen = rt_ticks, start = seen, due = 0, last_writes = 0;
    for (;;) {
        u64 now = rt_ticks;
        if (now != seen) {
            seen = now;
            if (hb_due(&hb, now)) {
                kprintf("seq=%lu t_ms=%lu writes=%lu wrate=%lu errors=%lu\n", hb.seq, rt_ticks_to_ms(now),
                        writes, rt_per_second(writes - last_writes, now - hb.last_ticks), errors);
                last_writes = writes;
                hb.last_ticks = now;
            }
            int c = serial_getc();
            if (c == 'v' && up) {
                verify();
            } else if (c == 'q') {
                rt_exit(up && verify() ? 0 : 1);
            } else if (c == 'x') {
                rt_exit(0);
            }
            if (rate && rate != PARAM_MAX) {
                due = rt_ticks_to_ms(now - start) * rate / 1000;
                /* after a pause, at most a second's worth at once */
                if (due > writes + errors + rate)
                    due = writes + errors + rate;
            }
        }
        if (up && !dev.dead && rate == PARAM_MAX) {
            write_one();
            continue;
        }
        if (up && !dev.dead && rate && writes + errors < due) {
            write_one();
            continue;
        }
        rt_wait_tick(seen);
    }
}
