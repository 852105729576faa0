/*
 * net: a virtio-net (virtio 1.x over PCI, split virtqueues) test guest that
 * answers ARP for its IP, ICMP echo and UDP echo (port 7), announces itself
 * with gratuitous ARP, and dirties memory like the dirty guest (dirtying.c).
 *
 * The device is found by a conf1 scan and driven by its legacy INTx line
 * (the PIC line in the Interrupt Line register, level-triggered): the
 * interrupt handler reads the ISR (which drops the line), answers the
 * frames in the RX ring (IRQ_BUDGET at a time, the main loop takes the rest)
 * and reclaims TX buffers, so a request is answered at once whether the
 * main loop is halted or dirtying memory; while it dirties, the main loop
 * also looks at the RX ring between chunks. The rings and TX
 * buffers belong to the handler: the main loop touches them only with
 * interrupts off (its gratuitous ARPs, and one look per PIT tick in case an
 * interrupt was lost). The handler only flags a config change (announce,
 * link); the main loop handles it, since acknowledging an announce waits
 * for the device with interrupts on. TX completions raise no interrupt of
 * their own (reclaimed on the next RX). Without a usable line, or with
 * irq=0, the guest polls as before: the used rings on every main-loop pass,
 * the ISR (one MMIO exit) once per PIT tick.
 *
 * Everything the device writes (used idx, used id/len, config) is checked
 * before use: a buggy device makes the guest drop frames or stop using the
 * device (`net: error: ...`), never crash or write outside its buffers.
 */
#include "dirtying.h"
#include "vpci.h"

static struct param params[] = {
    PARAM_HZ,
    PARAM_PERIOD,
    PARAM_COUNT,
    DIRTYING_PARAMS(0),
    { .name = "ip", .kind = P_STR, .sdef = "10.77.0.2/24" },
    { .name = "stats_ms", .kind = P_UINT, .def = 1000, .min = 0, .max = 3600000 },
    { .name = "mac", .kind = P_STR, .sdef = "", .flags = P_HIDDEN },
    /* debug: (re)assign every BAR from here, as if the firmware had left them 0 */
    { .name = "bar_base", .kind = P_UINT, .def = 0xe0000000UL, .min = 0x100000, .max = 1UL << 46,
      .flags = P_HIDDEN },
    /* 0: poll the device instead of taking its INTx line (the old driver) */
    { .name = "irq", .kind = P_UINT, .def = 1, .min = 0, .max = 1, .flags = P_HIDDEN },
    DIRTYING_HIDDEN_PARAMS,
};

/* ================================================================== */
/* small helpers                                                       */

typedef u16 __attribute__((aligned(1), may_alias)) u16u;
typedef u32 __attribute__((aligned(1), may_alias)) u32u;

static inline u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static inline void put16(u8 *p, u16 v)
{
    p[0] = (u8)(v >> 8);
    p[1] = (u8)v;
}

/* one's complement sum in host order (RFC 1071: byte-order independent) */
static u64 csum_add(u64 s, const u8 *p, u64 n)
{
    for (; n >= 4; n -= 4, p += 4)
        s += *(const u32u *)p;
    if (n >= 2) {
        s += *(const u16u *)p;
        p += 2;
        n -= 2;
    }
    if (n)
        s += p[0];
    return s;
}
static u16 csum_fold(u64 s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (u16)s;
}
/* store ~fold(sum) at p (host order, matching csum_add) */
static void csum_store(u8 *p, u64 s)
{
    *(u16u *)p = (u16)~csum_fold(s);
}

static int parse_dec(const char **s, u32 max, u32 *out)
{
    const char *p = *s;
    u32 v = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9' && n < 4) {
        v = v * 10 + (u32)(*p - '0');
        p++;
        n++;
    }
    if (!n || v > max || (*p >= '0' && *p <= '9'))
        return -1;
    *s = p;
    *out = v;
    return 0;
}

/* "A.B.C.D/NN" (the prefix is optional) */
static int parse_ip(const char *s, u8 ip[4], u32 *prefix)
{
    for (int i = 0; i < 4; i++) {
        u32 v;
        if (parse_dec(&s, 255, &v))
            return -1;
        ip[i] = (u8)v;
        if (i < 3 && *s++ != '.')
            return -1;
    }
    *prefix = 24;
    if (*s == '/') {
        s++;
        if (parse_dec(&s, 32, prefix))
            return -1;
    }
    return *s ? -1 : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "xx:xx:xx:xx:xx:xx", unicast only */
static int parse_mac(const char *s, u8 mac[6])
{
    for (int i = 0; i < 6; i++) {
        int h = hexval(s[0]), l = h < 0 ? -1 : hexval(s[1]);
        if (h < 0 || l < 0)
            return -1;
        mac[i] = (u8)(h << 4 | l);
        s += 2;
        if (i < 5 && *s++ != ':')
            return -1;
    }
    return (*s || (mac[0] & 1)) ? -1 : 0;
}

/* ================================================================== */
/* virtio-net                                                          */

#define F_MAC            (1UL << 5)
#define F_STATUS         (1UL << 16)
#define F_CTRL_VQ        (1UL << 17)
#define F_GUEST_ANNOUNCE (1UL << 21)

#define NET_S_LINK_UP  1
#define NET_S_ANNOUNCE 2

#define NET_HDR 12                      /* virtio_net_hdr with VERSION_1 */
#define BUF_SIZE 2048
#define RXQ_MAX 256
#define TXQ_MAX 64
#define CTQ_MAX 8

/* rings and buffers: in the image's bss, identity-mapped (VA = PA) */
static struct vdesc rx_desc[RXQ_MAX] __attribute__((aligned(4096)));
static u16 rx_avail[3 + RXQ_MAX] __attribute__((aligned(4096)));
static u32 rx_used[1 + 2 * RXQ_MAX + 1] __attribute__((aligned(4096)));
static struct vdesc tx_desc[TXQ_MAX] __attribute__((aligned(4096)));
static u16 tx_avail[3 + TXQ_MAX] __attribute__((aligned(4096)));
static u32 tx_used[1 + 2 * TXQ_MAX + 1] __attribute__((aligned(4096)));
static struct vdesc ct_desc[CTQ_MAX] __attribute__((aligned(4096)));
static u16 ct_avail[3 + CTQ_MAX] __attribute__((aligned(4096)));
static u32 ct_used[1 + 2 * CTQ_MAX + 1] __attribute__((aligned(4096)));
static u8 rx_buf[RXQ_MAX][BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_buf[TXQ_MAX][BUF_SIZE] __attribute__((aligned(4096)));
static u8 ct_buf[64] __attribute__((aligned(64)));
static u8 rx_owned[RXQ_MAX], tx_owned[TXQ_MAX], ct_owned[CTQ_MAX];
static u16 tx_free[TXQ_MAX];
static int tx_nfree;

static struct vq rxq, txq, ctq;
static struct vpci nd;

static u8 my_ip[4], my_mac[6];
static u32 my_prefix;
static u16 ip_id;
static u16 last_status;
static volatile int irq_line = -1;      /* PIC line in use; -1: polling */
static volatile u32 cfg_pending;        /* the handler saw a config change */
static volatile u32 rx_more;            /* net_poll left frames behind */
static volatile u32 irq_storm;          /* the handler gave the line up */
#define IRQ_BUDGET 8                    /* frames per handler run: bounds the time with interrupts off */

static struct {
    u64 rx, tx, arp, icmp, udp, drop, garp, err, txfull;
} st;

static u8 cfg_r8(u64 off) { return (u8)vpci_cfg_read(&nd, off, 1); }

static u16 read_net_status(void)
{
    if (!(nd.features & F_STATUS) || nd.devcfg_len < 8)
        return NET_S_LINK_UP;
    return (u16)vpci_cfg_read(&nd, 6, 2);
}

/* ================================================================== */
/* frames                                                              */

static void tx_reclaim(void)
{
    u16 id;
    u32 len;
    while (vq_next_used(&txq, &id, &len))
        tx_free[tx_nfree++] = id;
}

/* a zeroed virtio header plus room for a frame; NULL when the ring is full */
static u8 *tx_get(u16 *id)
{
    if (nd.dead)
        return 0;
    if (!tx_nfree)
        tx_reclaim();
    if (!tx_nfree) {
        st.txfull++;
        return 0;
    }
    *id = tx_free[--tx_nfree];
    memset(tx_buf[*id], 0, NET_HDR);
    return tx_buf[*id] + NET_HDR;
}

static void tx_send(u16 id, u32 len)
{
    if (len < 60) {                     /* pad to the Ethernet minimum */
        memset(tx_buf[id] + NET_HDR + len, 0, 60 - len);
        len = 60;
    }
    txq.desc[id].addr = (u64)tx_buf[id];
    txq.desc[id].len = NET_HDR + len;
    txq.desc[id].flags = 0;
    txq.desc[id].next = 0;
    vq_push(&txq, id);
    vq_kick(&txq);
    st.tx++;
}

static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void eth_hdr(u8 *f, const u8 *dst, u16 type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, my_mac, 6);
    put16(f + 12, type);
}

static void send_garp(const char *why)
{
    u16 id;
    u64 fl = rt_irq_save();             /* the TX ring is the handler's too */
    u8 *f = tx_get(&id);
    if (!f) {
        rt_irq_restore(fl);
        return;
    }
    eth_hdr(f, bcast, 0x0806);
    u8 *a = f + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 1);                    /* request, sender = target = our IP */
    memcpy(a + 8, my_mac, 6);
    memcpy(a + 14, my_ip, 4);
    memset(a + 18, 0, 6);
    memcpy(a + 24, my_ip, 4);
    tx_send(id, 42);
    st.garp++;
    rt_irq_restore(fl);
    kprintf("net: garp reason=%s\n", why);
}

static void rx_arp(const u8 *f, u32 n)
{
    const u8 *a = f + 14;
    if (n < 42 || be16(a) != 1 || be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 ||
        be16(a + 6) != 1 || memcmp(a + 24, my_ip, 4) || (a[8] & 1)) {
        st.drop++;
        return;
    }
    u16 id;
    u8 *r = tx_get(&id);
    if (!r)
        return;
    eth_hdr(r, a + 8, 0x0806);
    u8 *b = r + 14;
    put16(b, 1);
    put16(b + 2, 0x0800);
    b[4] = 6;
    b[5] = 4;
    put16(b + 6, 2);                    /* reply */
    memcpy(b + 8, my_mac, 6);
    memcpy(b + 14, my_ip, 4);
    memcpy(b + 18, a + 8, 10);          /* their MAC and IP */
    tx_send(id, 42);
    st.arp++;
}

/* IPv4 reply header at r+14 for a payload of 'plen' bytes to 'dst' */
static void ip_hdr(u8 *r, const u8 *dst_mac, const u8 *dst_ip, u8 proto, u32 plen)
{
    eth_hdr(r, dst_mac, 0x0800);
    u8 *h = r + 14;
    h[0] = 0x45;
    h[1] = 0;
    put16(h + 2, (u16)(20 + plen));
    put16(h + 4, ip_id++);
    put16(h + 6, 0);
    h[8] = 64;
    h[9] = proto;
    put16(h + 10, 0);
    memcpy(h + 12, my_ip, 4);
    memcpy(h + 16, dst_ip, 4);
    csum_store(h + 10, csum_add(0, h, 20));
}

static void rx_ipv4(const u8 *f, u32 n)
{
    const u8 *h = f + 14;
    if (n < 34 || (h[0] >> 4) != 4 || memcmp(f, my_mac, 6))
        goto drop;
    u32 ihl = (u32)(h[0] & 15) * 4, tot = be16(h + 2);
    if (ihl < 20 || tot < ihl || 14 + tot > n || (be16(h + 6) & 0x3fff) ||   /* no fragments */
        memcmp(h + 16, my_ip, 4) || csum_fold(csum_add(0, h, ihl)) != 0xffff)
        goto drop;
    const u8 *l4 = h + ihl;
    u32 l4len = tot - ihl;
    u16 id;
    u8 *r;
    if (h[9] == 1) {                    /* ICMP */
        if (l4len < 8 || l4[0] != 8 || l4[1] != 0 || csum_fold(csum_add(0, l4, l4len)) != 0xffff)
            goto drop;
        if (!(r = tx_get(&id)))
            return;
        ip_hdr(r, f + 6, h + 12, 1, l4len);
        u8 *m = r + 34;
        memcpy(m, l4, l4len);
        m[0] = 0;                       /* echo reply */
        /* RFC 1624: HC' = ~(~HC + ~m + m'), m = 0x0800 -> m' = 0 */
        u32 s = (u16)~be16(l4 + 2) + (u16)~0x0800u;
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        put16(m + 2, (u16)~s);
        tx_send(id, 34 + l4len);
        st.icmp++;
        return;
    }
    if (h[9] == 17) {                   /* UDP */
        if (l4len < 8)
            goto drop;
        u32 ulen = be16(l4 + 4);
        if (ulen < 8 || ulen > l4len || be16(l4 + 2) != 7)
            goto drop;
        if (be16(l4 + 6)) {             /* checksum present: verify */
            u64 s = csum_add(0, h + 12, 8);
            u8 ph[4] = { 0, 17, (u8)(ulen >> 8), (u8)ulen };
            s = csum_add(s, ph, 4);
            s = csum_add(s, l4, ulen);
            if (csum_fold(s) != 0xffff)
                goto drop;
        }
        if (!(r = tx_get(&id)))
            return;
        ip_hdr(r, f + 6, h + 12, 17, ulen);
        u8 *u = r + 34;
        memcpy(u, l4, ulen);
        /* swap the ports; with the addresses swapped too the checksum stays valid */
        memcpy(u, l4 + 2, 2);
        memcpy(u + 2, l4, 2);
        tx_send(id, 34 + ulen);
        st.udp++;
        return;
    }
drop:
    st.drop++;
}

static void rx_frame(const u8 *f, u32 n)
{
    st.rx++;
    if (n < 14) {
        st.drop++;
        return;
    }
    u16 type = be16(f + 12);
    if (type == 0x0806)
        rx_arp(f, n);
    else if (type == 0x0800)
        rx_ipv4(f, n);
    else
        st.drop++;
}

static void rx_post(u16 id)
{
    rxq.desc[id].addr = (u64)rx_buf[id];
    rxq.desc[id].len = BUF_SIZE;
    rxq.desc[id].flags = VRING_DESC_F_WRITE;
    rxq.desc[id].next = 0;
    vq_push(&rxq, id);
}

/*
 * RX and TX used rings (memory reads only), at most 'budget' frames;
 * returns 1 if anything was done. rx_more: the budget ran out, frames may
 * be left (the interrupt handler's budget keeps a flood from holding
 * interrupts off, and the PIT tick with them, for more than a few ms).
 */
static int net_poll(int budget)
{
    if (nd.dead)
        return 0;
    int did = 0;
    u16 id;
    u32 len;
    while (budget > 0 && vq_next_used(&rxq, &id, &len)) {
        budget--;
        if (len >= NET_HDR && len <= BUF_SIZE)
            rx_frame(rx_buf[id] + NET_HDR, len - NET_HDR);
        else
            st.err++;
        rx_post(id);
        did = 1;
    }
    if (did)
        vq_kick(&rxq);
    tx_reclaim();
    rx_more = !budget;
    return did;
}

/* ---- control queue: VIRTIO_NET_CTRL_ANNOUNCE_ACK ---- */
static void ctrl_announce_ack(void)
{
    if (!ctq.ok || nd.dead)
        return;
    ct_buf[0] = 3;                      /* VIRTIO_NET_CTRL_ANNOUNCE */
    ct_buf[1] = 0;                      /* VIRTIO_NET_CTRL_ANNOUNCE_ACK */
    ct_buf[16] = 0xff;                  /* ack, written by the device */
    ctq.desc[0].addr = (u64)ct_buf;
    ctq.desc[0].len = 2;
    ctq.desc[0].flags = VRING_DESC_F_NEXT;
    ctq.desc[0].next = 1;
    ctq.desc[1].addr = (u64)(ct_buf + 16);
    ctq.desc[1].len = 1;
    ctq.desc[1].flags = VRING_DESC_F_WRITE;
    ctq.desc[1].next = 0;
    vq_push(&ctq, 0);
    vq_kick(&ctq);
    u64 end = rt_ticks + rt_ms_to_ticks(100);
    u16 id;
    u32 len;
    while (!vq_next_used(&ctq, &id, &len)) {
        if (nd.dead)
            return;
        if (rt_ticks >= end) {
            rt_warn("control queue: no answer to ANNOUNCE_ACK in 100 ms; not using it any more");
            ctq.ok = 0;
            return;
        }
        cpu_relax();
    }
    if (ct_buf[16] != 0)
        rt_warn("control queue: ANNOUNCE_ACK answered %u", ct_buf[16]);
}

/* a config change: announce and link */
static void net_config(void)
{
    u16 s = read_net_status();
    if ((s ^ last_status) & NET_S_LINK_UP)
        kprintf("net: link %s\n", (s & NET_S_LINK_UP) ? "up" : "down");
    if ((nd.features & F_GUEST_ANNOUNCE) && (s & NET_S_ANNOUNCE)) {
        send_garp("announce");
        ctrl_announce_ack();
    }
    last_status = s;
}

/* polling: once per tick, the ISR for a config change */
static void net_tick(void)
{
    if (nd.dead)
        return;
    if (mmio_r8(nd.isr) & 2)
        net_config();
}

/* INTx handler (interrupts off). Reading the ISR first drops the line; a
 * frame that arrives after it raises the line again, so none waits. */
static void net_isr(void)
{
    static u32 empty;
    u8 i = mmio_r8(nd.isr);
    if (nd.dead) {                      /* a failed device must not storm */
        rt_irq_mask((u8)irq_line);
        return;
    }
    /* A line that keeps firing with our ISR clear is another device's (a
     * shared line nobody quiets): give it up and poll. */
    if (!i && ++empty >= 100) {
        rt_irq_mask((u8)irq_line);
        vq_interrupts(&rxq, 0);
        irq_line = -1;
        irq_storm = 1;
        return;
    }
    if (i)
        empty = 0;
    if (i & 2)
        cfg_pending = 1;
    net_poll(IRQ_BUDGET);
}

/* interrupt-driven: the rings belong to the handler, so the main loop
 * polls them only with interrupts off */
static void net_poll_masked(void)
{
    u64 fl = rt_irq_save();
    net_poll(IRQ_BUDGET);
    rt_irq_restore(fl);
}

/* interrupt-driven: what the main loop does on every pass, and per tick */
static void net_irq_service(int tick)
{
    if (nd.dead)
        return;
    if (cfg_pending) {
        cfg_pending = 0;
        net_config();
    }
    /* the handler's leftovers; once per tick also a look of our own, so a
     * lost interrupt costs a tick, not the device */
    if (rx_more || tick)
        net_poll_masked();
}

static void net_check_status(void)
{
    if (vpci_needs_reset(&nd))
        vpci_fail(&nd, "device set NEEDS_RESET");
}

/* ================================================================== */
/* bring-up                                                            */

static int net_up(void)
{
    if (vpci_find(&nd, VIRTIO_TYPE_NET, "net")) {
        kprintf("net: error: no virtio-net PCI device (1af4:1041 or 1af4:1000)\n");
        return -1;
    }
    struct param *pb = rt_param("bar_base");
    if (pb->given)
        vpci_force_bar_base(pb->val);
    if (vpci_open(&nd))
        return -1;
    u64 want = 0;
    if (nd.devcfg_len >= 6)
        want |= F_MAC;
    if (nd.devcfg_len >= 8)
        want |= F_STATUS | F_GUEST_ANNOUNCE | F_CTRL_VQ;
    if (vpci_features(&nd, want))
        return -1;
    u64 features = nd.features;

    /* MAC: mac= wins, then the device's, then one made from the IP */
    struct param *pm = rt_param("mac");
    if (pm->given) {
        parse_mac(pm->sval, my_mac);    /* validated in guest_main */
    } else if (features & F_MAC) {
        for (int tries = 0; tries < 10; tries++) {
            u8 g = mmio_r8(nd.common + VC_GEN);
            for (int i = 0; i < 6; i++)
                my_mac[i] = cfg_r8((u64)i);
            if (mmio_r8(nd.common + VC_GEN) == g)
                break;
        }
    } else {
        static const u8 def[6] = { 0x52, 0x54, 0x00, 0, 0, 0 };
        memcpy(my_mac, def, 6);
        memcpy(my_mac + 3, my_ip + 1, 3);
    }

    /* queues: 0 RX, 1 TX, 2 control (only with CTRL_VQ) */
    u16 nq = mmio_r16(nd.common + VC_NUMQ);
    if (nq < 2 || vq_setup(&nd, &rxq, 0, RXQ_MAX, rx_desc, rx_avail, rx_used, rx_owned) ||
        vq_setup(&nd, &txq, 1, TXQ_MAX, tx_desc, tx_avail, tx_used, tx_owned)) {
        mmio_w8(nd.common + VC_STATUS, S_FAILED);
        kprintf("net: error: cannot set up the RX/TX virtqueues (num_queues=%u)\n", nq);
        return -1;
    }
    if ((features & F_CTRL_VQ) && (nq < 3 || vq_setup(&nd, &ctq, 2, CTQ_MAX, ct_desc, ct_avail, ct_used, ct_owned)))
        rt_warn("CTRL_VQ negotiated but queue 2 is unusable: announcements are not acknowledged");
    for (u16 i = 0; i < rxq.size; i++)
        rx_post(i);
    for (u16 i = 0; i < txq.size; i++)
        tx_free[tx_nfree++] = i;
    int line = rt_param("irq")->val ? vpci_intx_line(&nd) : -1;
    if (line >= 0)
        vq_interrupts(&rxq, 1);         /* TX and control stay suppressed */
    if (vpci_driver_ok(&nd))
        return -1;
    vq_kick(&rxq);
    last_status = read_net_status();
    if (line >= 0 && !rt_irq_attach((u8)line, net_isr, 1)) {
        irq_line = line;
        vpci_intx_enable(&nd, 1);
    } else if (line >= 0) {
        vq_interrupts(&rxq, 0);
    }

    char desc[160];
    vpci_describe(&nd, desc, sizeof(desc));
    char irq[8] = "poll";
    if (irq_line >= 0)
        ksnprintf(irq, sizeof(irq), "%d", irq_line);
    kprintf("net: device %s features=0x%lx rxq=%u txq=%u ctrlq=%u link=%u irq=%s\n", desc, features,
            rxq.size, txq.size, ctq.ok ? ctq.size : 0, last_status & NET_S_LINK_UP, irq);
    kprintf("net: up ip=%u.%u.%u.%u mac=%02x:%02x:%02x:%02x:%02x:%02x\n", my_ip[0], my_ip[1], my_ip[2],
            my_ip[3], my_mac[0], my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5]);
    send_garp("up");
    /* an announce request that was pending before DRIVER_OK */
    if ((features & F_GUEST_ANNOUNCE) && (last_status & NET_S_ANNOUNCE))
        ctrl_announce_ack();
    return 0;
}

/* ================================================================== */

static struct heartbeat hb;

void guest_main(void)
{
    rt_init("net", params, sizeof(params) / sizeof(params[0]), 0);
    struct param *pip = rt_param("ip"), *pmac = rt_param("mac");
    if (parse_ip(pip->sval, my_ip, &my_prefix)) {
        rt_warn("bad value ip=%s ignored", pip->sval);
        memcpy(pip->sval, pip->sdef, strlen(pip->sdef) + 1);
        parse_ip(pip->sval, my_ip, &my_prefix);
    }
    if (pmac->given && parse_mac(pmac->sval, my_mac)) {
        rt_warn("bad value mac=%s ignored", pmac->sval);
        pmac->given = 0;
    }
    dt_init("net");
    rt_print_boot();
    dt_start();
    net_up();

    u64 stats_ms = rt_param("stats_ms")->val;
    hb_start(&hb, rt_param("period_ms")->val);
    u64 seen = rt_ticks;
    u64 next_stats = rt_ticks_to_ms(seen) + stats_ms;
    dt_run(seen);

    for (;;) {
        u64 now = rt_ticks;
        int tick = now != seen;
        if (irq_line >= 0)
            net_irq_service(tick);
        if (tick) {
            seen = now;
            if (irq_storm) {
                irq_storm = 0;
                rt_warn("the device's interrupt line fires with its ISR clear: polling");
            }
            if (irq_line < 0)
                net_tick();
            u64 ms = rt_ticks_to_ms(now);
            if (stats_ms && ms >= next_stats) {
                next_stats += stats_ms;
                if (next_stats <= ms)
                    next_stats = ms + stats_ms;
                net_check_status();
                kprintf("net: rx=%lu tx=%lu arp=%lu icmp=%lu udp=%lu drop=%lu garp=%lu err=%lu\n", st.rx,
                        st.tx, st.arp, st.icmp, st.udp, st.drop, st.garp, st.err + nd.err);
            }
            if (hb_due(&hb, now)) {
                u64 r, g;
                dt_beat(now, &r, &g);
                kprintf("seq=%lu t_ms=%lu rate=%lu gen=%lu\n", hb.seq, ms, r, g);
                dt_after_beat(hb.seq);
            }
            dt_serial(serial_getc());
        }
        int busy = irq_line < 0 && net_poll(RXQ_MAX);
        if (dt_work()) {
            /* Between chunks of dirtying also look at the RX ring (one
             * memory read): an interrupt reaches a busy vCPU later than a
             * halted one here (docs/guests.md). */
            if (irq_line >= 0 && vq_used_pending(&rxq))
                net_poll_masked();
            continue;
        }
        if (busy)
            continue;
        /* halt until the next tick or the device's interrupt */
        __asm__ volatile("cli" ::: "memory");
        if (rt_ticks == seen && !cfg_pending && !rx_more)
            __asm__ volatile("sti; hlt" ::: "memory");
        else
            __asm__ volatile("sti" ::: "memory");
    }
}
