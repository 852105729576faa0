/* minivmm test guests: the shared freestanding runtime. */
#ifndef GUESTS_RT_H
#define GUESTS_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define PAGE_SIZE 4096UL
#define MIB (1024UL * 1024UL)

/* ---- port I/O ---- */
static inline u64 rt_rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
/* TSC cycles per ms, timed by PIT channel 2 (20 ms, polled on port 0x61):
 * the PIT counts on the host's clock, so ticks delivered late (KVM injects
 * a backlog of them quickly) do not skew it as counting ticks would. */
u64 rt_tsc_per_ms(void);
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u16 inw(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u32 inl(u16 port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- MMIO (each access exits to the VMM) ---- */
static inline u8 mmio_r8(const volatile void *a) { return *(const volatile u8 *)a; }
static inline u16 mmio_r16(const volatile void *a) { return *(const volatile u16 *)a; }
static inline u32 mmio_r32(const volatile void *a) { return *(const volatile u32 *)a; }
static inline void mmio_w8(volatile void *a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_w16(volatile void *a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_w32(volatile void *a, u32 v) { *(volatile u32 *)a = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* ---- time (PIT ticks, counted by the BSP's IRQ0 handler) ---- */
extern volatile u64 rt_ticks;
extern u32 rt_hz;                       /* requested tick rate (hz=) */
#define PIT_FREQ 1193182UL
extern u32 rt_pit_div;                  /* PIT cycles per tick */
u64 rt_ticks_to_ms(u64 ticks);          /* exact, uses the PIT divisor */
u64 rt_now_ms(void);
u64 rt_ms_to_ticks(u64 ms);             /* rounded up */
/* pages (or any count) per second from a count over a number of ticks */
u64 rt_per_second(u64 count, u64 ticks);
/* Halt until the tick counter moves past 'seen' (or any interrupt). */
void rt_wait_tick(u64 seen);
void rt_sleep_ms(u64 ms);

/* ---- interrupts ---- */
/* Interrupts off; returns the previous RFLAGS for rt_irq_restore(). */
static inline u64 rt_irq_save(void)
{
    u64 f;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(f)::"memory");
    return f;
}
static inline void rt_irq_restore(u64 f)
{
    if (f & (1u << 9))
        __asm__ volatile("sti" ::: "memory");
}
/*
 * A device interrupt on PIC line irq (1, 3..6, 8..14; 7 and 15 stay the
 * spurious lines; the BSP takes it): fn runs
 * with interrupts off, then the PIC gets its EOI. level: program the ELCR
 * for a level-triggered line (PCI INTx), where fn must make the device drop
 * the line. Unmasks the line. -1 for a line that cannot be used.
 */
int rt_irq_attach(u8 irq, void (*fn)(void), int level);
void rt_irq_mask(u8 irq);

/* ---- console ---- */
void serial_putc(char c);
void serial_write(const char *s, size_t n);
int serial_getc(void);                  /* -1 when nothing is pending */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- exit ---- */
void rt_exit(u32 v) __attribute__((noreturn));   /* isa-debug-exit at 0xf4 */
void rt_poweroff(void);                          /* ACPI PM1a S5 at 0x604 */

/* ---- parameters ---- */
enum param_kind {
    P_UINT,             /* decimal (or 0x hex) */
    P_UINT_OR_MAX,      /* number or "max" (stored as PARAM_MAX) */
    P_ENUM,             /* index into choices[] */
    P_STR,              /* free text (sval), validated by the guest */
};
#define PARAM_MAX UINT64_MAX
#define P_HIDDEN 1      /* echoed in the boot line only when given */

struct param {
    const char *name;
    enum param_kind kind;
    u64 def;
    u64 min, max;                       /* accepted range for numbers */
    const char *const *choices;         /* P_ENUM: NULL-terminated */
    unsigned flags;
    const char *sdef;                   /* P_STR: default text */
    u64 val;                            /* effective value */
    int given;
    char sval[40];                      /* P_STR: effective text */
};

/* ---- machine facts ---- */
struct mem_range { u64 base, len; };
#define MAX_MEM_RANGES 32
extern struct mem_range rt_ram[MAX_MEM_RANGES];  /* usable RAM, sorted */
extern int rt_nram;
extern u64 rt_mem_bytes;                /* total usable RAM */
extern int rt_ncpus;                    /* CPUs running guest code */

/*
 * Boot sequence for every guest:
 *   rt_init(): parse the multiboot info and command line, set up serial,
 *              IDT, PIC, PIT, LAPIC and enable interrupts; with smp != 0 start
 *              the APs (they wait in ap_wait_go()).
 *   (guest adjusts parameters, e.g. caps sizes)
 *   rt_print_boot(): the boot line and any warnings.
 */
void rt_init(const char *name, struct param *params, int nparams, int smp);
void rt_print_boot(void);
void rt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct param *rt_param(const char *name);

/* ---- SMP ---- */
extern void (*rt_ap_main)(int cpu);     /* set before rt_init(smp=1) */
extern volatile u32 rt_ap_wake;         /* !=0: timer ISR IPIs the APs every rt_ap_wake ticks */
void rt_smp_start(void);                /* INIT-SIPI-SIPI, count APs */
void rt_smp_release(void);              /* let counted APs call rt_ap_main */
void rt_wake_aps(void);                 /* one wake-up IPI to all APs */
/* Halt (interrupts enabled) unless *flag already differs from 'seen'. */
void rt_wait_change(volatile u32 *flag, u32 seen);

/* ---- memory windows above VMAP_BASE (2 MiB granularity) ---- */
/* Map 'bytes' of fresh RAM contiguously; returns NULL if RAM is short. */
void *rt_vmap_alloc(u64 bytes);
u64 rt_vmap_avail(void);                /* bytes still allocatable */

/* ---- device MMIO windows above MMIO_VBASE (uncached, 2 MiB granularity) ---- */
/* Map guest-physical [pa, pa+len) (anywhere, also above 4 GiB); returns the
 * virtual address of pa, or NULL when the 1 GiB window is full or the range
 * is invalid. Never unmapped. */
void *rt_map_mmio(u64 pa, u64 len);

/* ---- small libc ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
