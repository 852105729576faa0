/*
 * minivmm test guests: shared runtime (multiboot info, command line, serial,
 * formatter, PIC/PIT/IDT/LAPIC, SMP start-up, RAM windows).
 *
 * All of this runs inside KVM's instruction emulator on our hosts (about
 * 0.6 us per instruction, 5-8 us per port I/O), so it is written to execute
 * few instructions, and it never raises an exception.
 */
#include "rt.h"

#define MB_BOOT_MAGIC 0x2BADB002
#define COM1 0x3f8
#define LAPIC_DEFAULT_BASE 0xFEE00000UL

void guest_main(void);                  /* provided by each guest */

/* ---- globals touched by boot.S ---- */
volatile u64 rt_ticks;
u64 rt_lapic_base = LAPIC_DEFAULT_BASE;
volatile u32 rt_ap_wake;
extern u32 mb_magic, mb_info;
extern u64 pml4[512];
extern char tramp_start[], tramp_end[];
extern char __image_end[];
extern char ap_stacks[];

/* ---- state ---- */
struct mem_range rt_ram[MAX_MEM_RANGES];
int rt_nram;
u64 rt_mem_bytes;
int rt_ncpus = 1;
u32 rt_hz = 1000;
void (*rt_ap_main)(int cpu);

u32 rt_pit_div = 1193;
#define pit_div rt_pit_div
static const char *guest_name = "guest";
static struct param *g_params;
static int g_nparams;
static char cmdline[1024];
static int boot_printed;
static char pending_warn[8][128];
static int npending_warn;
static u32 boot_magic;

/* AP bookkeeping */
static volatile u32 ap_checkin;         /* APs checked in; closed by BSP */
static volatile u32 smp_released;

/* AP stacks: slot k (1..MAX_CPUS-1) uses [ap_stacks+(k-1)*S, ap_stacks+k*S) */
char ap_stacks[(MAX_CPUS - 1) << AP_STACK_SHIFT]
    __attribute__((aligned(4096), section(".noinit.stacks")));
/* page tables for the RAM windows at VMAP_BASE */
static u64 vmap_pdpt[512] __attribute__((aligned(4096), section(".noinit.pt")));
static u64 vmap_pd[VMAP_MAX_GB][512] __attribute__((aligned(4096), section(".noinit.pt")));

/* ================================================================== */
/* small libc                                                          */

/*
 * Short copies and fills are plain loops, not rep movsb/stosb: under KVM's
 * instruction emulator (design-notes 6) a rep string instruction now and
 * then does not complete until the next interrupt arrives, i.e. up to a
 * PIT tick later (docs/benchmarks.md, the issue 9 trace). The net guest's
 * frames go through these on every reply. A word loop is also quicker
 * there for short lengths (the emulator takes ~1 us per rep iteration);
 * long ones keep the single instruction.
 */
#define RT_SHORT_COPY 256

void *memset(void *d, int c, size_t n)
{
    void *r = d;
    if (n <= RT_SHORT_COPY) {
        typedef u64 __attribute__((aligned(1), may_alias)) u64u;
        u8 *p = d;
        u64 w = (u8)c * 0x0101010101010101UL;
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            *(u64u *)(p + i) = w;
        for (; i < n; i++)
            p[i] = (u8)c;
        return r;
    }
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return r;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *r = d;
    if (n <= RT_SHORT_COPY) {
        typedef u64 __attribute__((aligned(1), may_alias)) u64u;
        u8 *p = d;
        const u8 *q = s;
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            *(u64u *)(p + i) = *(const u64u *)(q + i);
        for (; i < n; i++)
            p[i] = q[i];
        return r;
    }
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return r;
}

void *memmove(void *d, const void *s, size_t n)
{
    if ((const char *)d <= (const char *)s || (const char *)d >= (const char *)s + n)
        return memcpy(d, s, n);
    char *dd = (char *)d + n - 1;
    const char *ss = (const char *)s + n - 1;
    __asm__ volatile("std; rep movsb; cld" : "+D"(dd), "+S"(ss), "+c"(n) : : "memory");
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int streq(const char *a, size_t alen, const char *b)
{
    size_t i;
    for (i = 0; i < alen; i++)
        if (b[i] != a[i])
            return 0;
    return b[i] == 0;
}

/* ================================================================== */
/* serial                                                              */

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);               /* no interrupts */
    outb(COM1 + 3, 0x80);               /* DLAB */
    outb(COM1 + 0, 0x01);               /* 115200 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);               /* 8N1 */
    outb(COM1 + 2, 0xC7);               /* FIFO on, clear, 14-byte threshold */
    outb(COM1 + 4, 0x03);               /* DTR | RTS */
}

void serial_putc(char c)
{
    for (int i = 0; i < 1000000; i++)   /* bounded: never hang on a bad UART */
        if (inb(COM1 + 5) & 0x20)
            break;
    outb(COM1, (u8)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        serial_putc(s[i]);
}

int serial_getc(void)
{
    if (inb(COM1 + 5) & 0x01)
        return inb(COM1);
    return -1;
}

/* ================================================================== */
/* formatter                                                           */

struct obuf { char *p; size_t n, len; };

static void ob_put(struct obuf *o, char c)
{
    if (o->len + 1 < o->n)
        o->p[o->len] = c;
    o->len++;
}

static void ob_num(struct obuf *o, u64 v, unsigned base, int neg, int width, char pad, int left, int upper)
{
    char tmp[24];
    int n = 0;
    const char *dig = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        tmp[n++] = dig[v % base];
        v /= base;
    } while (v);
    if (neg)
        tmp[n++] = '-';
    int fill = width > n ? width - n : 0;
    if (!left)
        while (fill-- > 0)
            ob_put(o, pad);
    while (n)
        ob_put(o, tmp[--n]);
    if (left)
        while (fill-- > 0)
            ob_put(o, ' ');
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct obuf o = { buf, size, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            ob_put(&o, *fmt);
            continue;
        }
        fmt++;
        int left = 0, width = 0, lng = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = lng ? va_arg(ap, long) : va_arg(ap, int);
            ob_num(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0, width, pad, left, 0);
            break;
        }
        case 'u':
            ob_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10, 0, width, pad, left, 0);
            break;
        case 'x':
        case 'X':
            ob_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16, 0, width, pad, left,
                   *fmt == 'X');
            break;
        case 'p':
            ob_put(&o, '0');
            ob_put(&o, 'x');
            ob_num(&o, (u64)va_arg(ap, void *), 16, 0, 0, ' ', 0, 0);
            break;
        case 'c':
            ob_put(&o, (char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int l = (int)strlen(s);
            if (!left)
                for (int i = l; i < width; i++)
                    ob_put(&o, ' ');
            while (*s)
                ob_put(&o, *s++);
            if (left)
                for (int i = l; i < width; i++)
                    ob_put(&o, ' ');
            break;
        }
        case '%':
            ob_put(&o, '%');
            break;
        case 0:
            fmt--;
            break;
        default:
            ob_put(&o, '%');
            ob_put(&o, *fmt);
        }
    }
    if (o.n)
        o.p[o.len < o.n ? o.len : o.n - 1] = 0;
    return (int)o.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int kprintf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 1)
        n = sizeof(buf) - 1;
    serial_write(buf, (size_t)n);
    return n;
}

void rt_warn(const char *fmt, ...)
{
    char buf[128];
    int n = ksnprintf(buf, sizeof(buf), "%s: warning: ", guest_name);
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    if (boot_printed)
        kprintf("%s\n", buf);
    else if (npending_warn < 8)
        memcpy(pending_warn[npending_warn++], buf, sizeof(buf));
}

/* ================================================================== */
/* exit                                                                */

void rt_exit(u32 v)
{
    outl(0xf4, v);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void rt_poweroff(void)
{
    outw(0x604, 0x2000);                /* PM1a_CNT: SLP_TYP=0 (S5 on PIIX4), SLP_EN */
}

void rt_exception(u64 vec, u64 rip_or_err)
{
    kprintf("%s: fatal: exception vector=%lu word=0x%lx\n", guest_name, vec, rip_or_err);
    rt_exit(2);
}

/* ================================================================== */
/* multiboot information and command line                              */

struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
};

static void add_ram(u64 base, u64 len)
{
    if (!len || rt_nram >= MAX_MEM_RANGES)
        return;
    int i = rt_nram++;
    while (i > 0 && rt_ram[i - 1].base > base) {
        rt_ram[i] = rt_ram[i - 1];
        i--;
    }
    rt_ram[i].base = base;
    rt_ram[i].len = len;
}

static void parse_mbi(u32 magic, u32 addr)
{
    boot_magic = magic;
    if (magic != MB_BOOT_MAGIC || !addr)
        return;
    const struct mb_info *mbi = (const struct mb_info *)(u64)addr;
    if ((mbi->flags & (1u << 2)) && mbi->cmdline) {
        const char *s = (const char *)(u64)mbi->cmdline;
        size_t i;
        for (i = 0; i + 1 < sizeof(cmdline) && s[i]; i++)
            cmdline[i] = s[i];
        cmdline[i] = 0;
    }
    if (mbi->flags & (1u << 6)) {
        u64 p = mbi->mmap_addr, end = p + mbi->mmap_length;
        while (p + 24 <= end) {
            u32 size = *(const u32 *)p;
            u64 base = *(const u64 *)(p + 4);
            u64 len = *(const u64 *)(p + 12);
            u32 type = *(const u32 *)(p + 20);
            if (type == 1)
                add_ram(base, len);
            p += (u64)size + 4;
        }
    }
    if (!rt_nram && (mbi->flags & 1)) {
        add_ram(0, (u64)mbi->mem_lower * 1024);
        add_ram(0x100000, (u64)mbi->mem_upper * 1024);
    }
    /* merge touching ranges */
    int j = 0;
    for (int i = 0; i < rt_nram; i++) {
        if (j && rt_ram[j - 1].base + rt_ram[j - 1].len >= rt_ram[i].base) {
            u64 e = rt_ram[i].base + rt_ram[i].len;
            if (e > rt_ram[j - 1].base + rt_ram[j - 1].len)
                rt_ram[j - 1].len = e - rt_ram[j - 1].base;
        } else {
            rt_ram[j++] = rt_ram[i];
        }
    }
    rt_nram = j;
    for (int i = 0; i < rt_nram; i++)
        rt_mem_bytes += rt_ram[i].len;
}

static int is_ram(u64 base, u64 len)
{
    for (int i = 0; i < rt_nram; i++)
        if (base >= rt_ram[i].base && base + len <= rt_ram[i].base + rt_ram[i].len)
            return 1;
    return 0;
}

static int parse_u64(const char *s, size_t n, u64 *out)
{
    u64 v = 0;
    size_t i = 0;
    unsigned base = 10;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i >= n)
        return -1;
    for (; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

struct param *rt_param(const char *name)
{
    for (int i = 0; i < g_nparams; i++)
        if (!memcmp(g_params[i].name, name, strlen(name) + 1))
            return &g_params[i];
    return 0;
}

static void parse_word(const char *w, size_t n, int first)
{
    size_t eq = 0;
    while (eq < n && w[eq] != '=')
        eq++;
    if (eq == n) {
        if (!first) {                   /* first word: the image name (QEMU, GRUB) */
            char tmp[64];
            size_t l = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
            memcpy(tmp, w, l);
            tmp[l] = 0;
            rt_warn("ignoring '%s'", tmp);
        }
        return;
    }
    char key[32], val[64];
    if (eq >= sizeof(key) || n - eq - 1 >= sizeof(val)) {
        rt_warn("ignoring over-long word");
        return;
    }
    memcpy(key, w, eq);
    key[eq] = 0;
    memcpy(val, w + eq + 1, n - eq - 1);
    val[n - eq - 1] = 0;
    size_t vlen = n - eq - 1;
    struct param *p = 0;
    for (int i = 0; i < g_nparams; i++)
        if (streq(key, eq, g_params[i].name))
            p = &g_params[i];
    if (!p) {
        rt_warn("unknown parameter %s=%s ignored", key, val);
        return;
    }
    u64 v;
    if (p->kind == P_STR) {
        if (vlen >= sizeof(p->sval)) {
            rt_warn("bad value %s=%s ignored (too long)", key, val);
            return;
        }
        memcpy(p->sval, val, vlen + 1);
        p->given = 1;
        return;
    }
    if (p->kind == P_ENUM) {
        for (int i = 0; p->choices[i]; i++)
            if (streq(val, vlen, p->choices[i])) {
                p->val = (u64)i;
                p->given = 1;
                return;
            }
        rt_warn("bad value %s=%s ignored", key, val);
        return;
    }
    if (p->kind == P_UINT_OR_MAX && streq(val, vlen, "max")) {
        p->val = PARAM_MAX;
        p->given = 1;
        return;
    }
    if (parse_u64(val, vlen, &v) || v < p->min || v > p->max) {
        rt_warn("bad value %s=%s ignored (range %lu..%lu)", key, val, p->min, p->max);
        return;
    }
    p->val = v;
    p->given = 1;
}

static void parse_cmdline(void)
{
    const char *s = cmdline;
    int first = 1;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\n')
            s++;
        if (!*s)
            break;
        const char *w = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\n')
            s++;
        parse_word(w, (size_t)(s - w), first);
        first = 0;
    }
}

/* ================================================================== */
/* interrupts: IDT, PIC, PIT, LAPIC                                    */

struct idt_gate {
    u16 off0, sel;
    u8 ist, type;
    u16 off1;
    u32 off2, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct {
    u16 limit;
    u64 base;
} __attribute__((packed)) idtr;

extern char isr_timer[], isr_wake[], isr_spurious[], isr_pic_master[], isr_pic_slave[],
    isr_pic_slave_spurious[], isr_exc_table[];

static void set_gate(int vec, void *h)
{
    u64 a = (u64)h;
    idt[vec].off0 = (u16)a;
    idt[vec].sel = SEL_CODE64;
    idt[vec].ist = 0;
    idt[vec].type = 0x8E;               /* present, DPL0, 64-bit interrupt gate */
    idt[vec].off1 = (u16)(a >> 16);
    idt[vec].off2 = (u32)(a >> 32);
    idt[vec].zero = 0;
}

static void idt_init(void)
{
    for (int v = 0; v < 32; v++)
        set_gate(v, isr_exc_table + 8 * v);
    set_gate(0x20, isr_timer);
    for (int v = 0x21; v < 0x28; v++)
        set_gate(v, isr_pic_master);
    set_gate(0x27, isr_spurious);
    for (int v = 0x28; v < 0x30; v++)
        set_gate(v, isr_pic_slave);
    set_gate(0x2f, isr_pic_slave_spurious);
    set_gate(0xF0, isr_wake);
    set_gate(0xFF, isr_spurious);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (u64)idt;
}

static void idt_load(void)
{
    __asm__ volatile("lidt %0" ::"m"(idtr));
}

static void pic_init(void)
{
    outb(0x20, 0x11);                   /* ICW1: edge, cascade, ICW4 */
    outb(0xA0, 0x11);
    outb(0x21, 0x20);                   /* ICW2: vector bases */
    outb(0xA1, 0x28);
    outb(0x21, 0x04);                   /* ICW3: slave on IRQ2 */
    outb(0xA1, 0x02);
    outb(0x21, 0x01);                   /* ICW4: 8086 mode */
    outb(0xA1, 0x01);
    outb(0x21, 0xFA);                   /* unmask IRQ0 and cascade */
    outb(0xA1, 0xFF);
}

static void pit_init(void)
{
    u64 d = (PIT_FREQ + rt_hz / 2) / rt_hz;
    if (d < 1)
        d = 1;
    if (d > 65535)
        d = 65535;
    pit_div = (u32)d;
    outb(0x43, 0x34);                   /* channel 0, lo/hi, mode 2 (rate generator) */
    outb(0x40, (u8)d);
    outb(0x40, (u8)(d >> 8));
}

/* ---- device IRQs on the PIC ---- */

extern char isr_irq_table[];
static void (*irq_fn[16])(void);

/* ELCR (0x4d0/0x4d1, one bit per IRQ): 1 = level-triggered. Firmware may
 * have set it already (SeaBIOS does for the PCI IRQs); we do not rely on it. */
static void elcr_set(u8 irq, int level)
{
    u16 port = irq < 8 ? 0x4d0 : 0x4d1;
    u8 bit = (u8)(1u << (irq & 7));
    u8 v = inb(port);
    outb(port, level ? (u8)(v | bit) : (u8)(v & ~bit));
}

static void pic_set_mask(u8 irq, int masked)
{
    u16 port = irq < 8 ? 0x21 : 0xA1;
    u8 bit = (u8)(1u << (irq & 7));
    u8 v = inb(port);
    outb(port, masked ? (u8)(v | bit) : (u8)(v & ~bit));
}

int rt_irq_attach(u8 irq, void (*fn)(void), int level)
{
    /* 7 and 15 keep their spurious-interrupt stubs: a level line that
     * drops between request and acknowledge arrives as 7 (or 15), which
     * must not be answered with an EOI. */
    if (irq == 0 || irq == 2 || irq == 7 || irq == 15 || irq >= 16 || !fn)
        return -1;
    u64 f = rt_irq_save();
    irq_fn[irq] = fn;
    set_gate(0x20 + irq, isr_irq_table + 8 * irq);
    elcr_set(irq, level);
    pic_set_mask(irq, 0);
    rt_irq_restore(f);
    return 0;
}

void rt_irq_mask(u8 irq)
{
    if (irq >= 16 || irq == 0 || irq == 2)
        return;
    u64 f = rt_irq_save();
    pic_set_mask(irq, 1);
    rt_irq_restore(f);
}

/* From isr_irq_table, interrupts off. The handler quiets its device (a
 * level-triggered line still high at the EOI interrupts again at once). */
void rt_irq_dispatch(u64 irq)
{
    if (irq < 16 && irq_fn[irq])
        irq_fn[irq]();
    if (irq >= 8)
        outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

static inline u32 lapic_read(u32 off) { return *(volatile u32 *)(rt_lapic_base + off); }
static inline void lapic_write(u32 off, u32 v) { *(volatile u32 *)(rt_lapic_base + off) = v; }

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static void lapic_enable(int bsp)
{
    u64 msr = rdmsr(0x1B);
    if (!(msr & (1u << 11)))
        wrmsr(0x1B, msr | (1u << 11));  /* globally enable */
    if (bsp)
        rt_lapic_base = msr & 0xFFFFF000UL;
    lapic_write(0x80, 0);               /* TPR: accept everything */
    lapic_write(0xF0, 0x1FF);           /* SVR: software enable, spurious 0xFF */
    if (bsp) {
        lapic_write(0x350, 0x700);      /* LINT0: ExtINT (the 8259 reaches us) */
        lapic_write(0x360, 0x400);      /* LINT1: NMI */
    }
}

u64 rt_ms_to_ticks(u64 ms)
{
    return (ms * PIT_FREQ + (u64)pit_div * 1000 - 1) / ((u64)pit_div * 1000);
}

u64 rt_ticks_to_ms(u64 t) { return t * pit_div * 1000 / PIT_FREQ; }
u64 rt_now_ms(void) { return rt_ticks_to_ms(rt_ticks); }

u64 rt_per_second(u64 count, u64 t)
{
    if (!t)
        return 0;
    return count * PIT_FREQ / (t * pit_div);
}

void rt_wait_tick(u64 seen)
{
    __asm__ volatile("cli" ::: "memory");
    if (rt_ticks == seen)
        __asm__ volatile("sti; hlt" ::: "memory");
    else
        __asm__ volatile("sti" ::: "memory");
}

void rt_wait_change(volatile u32 *flag, u32 seen)
{
    __asm__ volatile("cli" ::: "memory");
    if (*flag == seen)
        __asm__ volatile("sti; hlt" ::: "memory");
    else
        __asm__ volatile("sti" ::: "memory");
}

void rt_sleep_ms(u64 ms)
{
    u64 end = rt_ticks + rt_ms_to_ticks(ms);
    u64 t;
    while ((t = rt_ticks) < end)
        rt_wait_tick(t);
}

/* ================================================================== */
/* SMP                                                                 */

void rt_wake_aps(void)
{
    if (rt_ncpus > 1)
        lapic_write(0x300, 0x000C00F0);
}

static void icr_send(u32 lo)
{
    lapic_write(0x310, 0);
    lapic_write(0x300, lo);
    for (int i = 0; i < 100000 && (lapic_read(0x300) & (1u << 12)); i++)
        cpu_relax();
}

void rt_smp_start(void)
{
    size_t n = (size_t)(tramp_end - tramp_start);
    if (!is_ram(TRAMP_BASE, 4096)) {
        rt_warn("no RAM at 0x%x for the AP trampoline: running on one CPU", TRAMP_BASE);
        return;
    }
    struct param *w = rt_param("smp_wait_ms");
    u64 wait_ms = w ? w->val : 20;
    memcpy((void *)(u64)TRAMP_BASE, tramp_start, n);
    icr_send(0x000C4500);               /* INIT, assert, all excluding self */
    rt_sleep_ms(10);
    icr_send(0x000C4600 | (TRAMP_BASE >> 12));  /* STARTUP */
    rt_sleep_ms(1);
    icr_send(0x000C4600 | (TRAMP_BASE >> 12));
    rt_sleep_ms(wait_ms);
    u32 got = __atomic_exchange_n(&ap_checkin, 0x10000u, __ATOMIC_SEQ_CST);
    if (got > MAX_CPUS - 1)
        got = MAX_CPUS - 1;
    rt_ncpus = 1 + (int)got;
}

void rt_smp_release(void)
{
    __atomic_store_n(&smp_released, 1, __ATOMIC_SEQ_CST);
    rt_wake_aps();
}

void ap_entry(u32 slot)
{
    (void)slot;
    idt_load();
    lapic_enable(0);
    u32 id = __atomic_fetch_add(&ap_checkin, 1, __ATOMIC_SEQ_CST);
    if (id >= MAX_CPUS - 1)
        goto park;
    int cpu = (int)id + 1;
    __asm__ volatile("sti");
    while (!smp_released)
        rt_wait_change(&smp_released, 0);
    if (cpu >= rt_ncpus || !rt_ap_main)
        goto park;
    {   /* page tables may have grown since we started: flush */
        u64 cr3;
        __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3)::"memory");
    }
    rt_ap_main(cpu);
park:
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ================================================================== */
/* RAM windows                                                         */

static int vmap_inited;
static u64 vmap_next = VMAP_BASE;
static int vr_idx;                      /* current rt_ram range */
static u64 vr_cur;                      /* next free 2 MiB chunk in it */
#define TWO_MIB (2 * MIB)

static u64 reserved_end(void)
{
    u64 e = (u64)__image_end;
    if (e < TWO_MIB)
        e = TWO_MIB;
    return (e + TWO_MIB - 1) & ~(TWO_MIB - 1);
}

static int next_chunk(u64 *pa)
{
    while (vr_idx < rt_nram) {
        u64 b = rt_ram[vr_idx].base, e = b + rt_ram[vr_idx].len;
        u64 lo = (b + TWO_MIB - 1) & ~(TWO_MIB - 1);
        if (lo < reserved_end())
            lo = reserved_end();
        if (vr_cur < lo)
            vr_cur = lo;
        if (vr_cur + TWO_MIB <= (e & ~(TWO_MIB - 1))) {
            *pa = vr_cur;
            vr_cur += TWO_MIB;
            return 1;
        }
        vr_idx++;
        vr_cur = 0;
    }
    return 0;
}

u64 rt_vmap_avail(void)
{
    u64 sum = 0;
    for (int i = vr_idx; i < rt_nram; i++) {
        u64 b = rt_ram[i].base, e = (b + rt_ram[i].len) & ~(TWO_MIB - 1);
        u64 lo = (b + TWO_MIB - 1) & ~(TWO_MIB - 1);
        if (lo < reserved_end())
            lo = reserved_end();
        if (i == vr_idx && vr_cur > lo)
            lo = vr_cur;
        if (e > lo)
            sum += e - lo;
    }
    u64 room = VMAP_BASE + (u64)VMAP_MAX_GB * 1024 * MIB - vmap_next;
    return sum < room ? sum : room;
}

void *rt_vmap_alloc(u64 bytes)
{
    bytes = (bytes + TWO_MIB - 1) & ~(TWO_MIB - 1);
    if (!bytes)
        return 0;
    if (bytes > rt_vmap_avail())
        return 0;
    if (!vmap_inited) {
        for (int i = 0; i < 512; i++)
            vmap_pdpt[i] = 0;
        pml4[VMAP_BASE >> 39] = (u64)vmap_pdpt | 3;
        vmap_inited = 1;
    }
    void *va = (void *)vmap_next;
    for (u64 off = 0; off < bytes; off += TWO_MIB) {
        u64 pa;
        if (!next_chunk(&pa))
            return 0;                   /* cannot happen: checked above */
        u64 rel = vmap_next - VMAP_BASE;
        u64 gb = rel >> 30, slot = (rel >> 21) & 511;
        if (!(vmap_pdpt[gb] & 1)) {
            for (int i = 0; i < 512; i++)
                vmap_pd[gb][i] = 0;
            vmap_pdpt[gb] = (u64)vmap_pd[gb] | 3;
        }
        vmap_pd[gb][slot] = pa | 0x83;
        vmap_next += TWO_MIB;
    }
    u64 cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3)::"memory");
    return va;
}

/* ================================================================== */
/* device MMIO windows                                                 */

static u64 mmio_pdpt[512] __attribute__((aligned(4096)));
static u64 mmio_pd[512] __attribute__((aligned(4096)));     /* 1 GiB window */
static u64 mmio_next;                   /* next free 2 MiB slot in mmio_pd */

void *rt_map_mmio(u64 pa, u64 len)
{
    if (!len || pa + len < pa || pa + len > (1UL << 46))
        return 0;
    u64 base = pa & ~(TWO_MIB - 1);
    u64 end = (pa + len + TWO_MIB - 1) & ~(TWO_MIB - 1);
    u64 n = (end - base) >> 21;
    if (n > 512 - mmio_next)
        return 0;
    if (!(pml4[MMIO_VBASE >> 39] & 1)) {
        mmio_pdpt[0] = (u64)mmio_pd | 3;
        pml4[MMIO_VBASE >> 39] = (u64)mmio_pdpt | 3;
    }
    for (u64 k = 0; k < n; k++)         /* P | RW | PWT | PCD | PS: uncached */
        mmio_pd[mmio_next + k] = (base + (k << 21)) | 0x9B;
    void *va = (void *)(MMIO_VBASE + (mmio_next << 21) + (pa - base));
    mmio_next += n;
    u64 cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3)::"memory");
    return va;
}

/* ================================================================== */
/* boot                                                                */

u64 rt_tsc_per_ms(void)
{
    u32 latch = PIT_FREQ / 50;           /* 20 ms */
    u8 v = inb(0x61);
    outb(0x61, (u8)((v & ~0x02) | 0x01)); /* gate 2 high, speaker off */
    outb(0x43, 0xb0);                    /* channel 2, lo/hi, mode 0 */
    outb(0x42, (u8)(latch & 0xff));
    outb(0x42, (u8)(latch >> 8));
    u64 a = rt_rdtsc();
    for (u32 n = 0; !(inb(0x61) & 0x20); n++)  /* OUT2 high: count reached 0 */
        if (n > 100000000u)
            return 0;
    u64 b = rt_rdtsc();
    outb(0x61, v);
    return (b - a) / 20;
}

void rt_init(const char *name, struct param *params, int nparams, int smp)
{
    guest_name = name;
    g_params = params;
    g_nparams = nparams;
    for (int i = 0; i < nparams; i++) {
        params[i].val = params[i].def;
        params[i].given = 0;
        params[i].sval[0] = 0;
        if (params[i].kind == P_STR && params[i].sdef) {
            size_t l = strlen(params[i].sdef);
            if (l >= sizeof(params[i].sval))
                l = sizeof(params[i].sval) - 1;
            memcpy(params[i].sval, params[i].sdef, l);
            params[i].sval[l] = 0;
        }
    }
    parse_mbi(mb_magic, mb_info);
    serial_init();
    if (boot_magic != MB_BOOT_MAGIC)
        rt_warn("not started by a multiboot loader (eax=0x%x)", boot_magic);
    parse_cmdline();
    struct param *hz = rt_param("hz");
    if (hz)
        rt_hz = (u32)hz->val;

    idt_init();
    idt_load();
    pic_init();
    pit_init();
    lapic_enable(1);
    __asm__ volatile("sti");
    if (smp)
        rt_smp_start();
}

void rt_print_boot(void)
{
    char line[512];
    int n = ksnprintf(line, sizeof(line), "%s: boot cpus=%d mem_mb=%lu", guest_name, rt_ncpus,
                      (rt_mem_bytes + MIB - 1) / MIB);
    for (int i = 0; i < g_nparams; i++) {
        struct param *p = &g_params[i];
        if ((p->flags & P_HIDDEN) && !p->given)
            continue;
        if ((size_t)n >= sizeof(line))
            break;
        if (p->kind == P_STR)
            n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s=%s", p->name, p->sval);
        else if (p->kind == P_ENUM)
            n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s=%s", p->name, p->choices[p->val]);
        else if (p->kind == P_UINT_OR_MAX && p->val == PARAM_MAX)
            n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s=max", p->name);
        else
            n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s=%lu", p->name, p->val);
    }
    kprintf("%s\n", line);
    boot_printed = 1;
    for (int i = 0; i < npending_warn; i++)
        kprintf("%s\n", pending_warn[i]);
    npending_warn = 0;
}

void rt_entry(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    guest_main();
    rt_exit(0);
}
