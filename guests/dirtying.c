/*
 * dirtying: the working-set engine shared by the dirty and net guests
 * (moved here from dirty.c unchanged in behaviour; see dirtying.h).
 *
 * Every working-set page i carries a stamp: word 0 = (i << 32) | gen and
 * word 511 = check(word 0); the expected generation of every page lives in
 * a table (u32 per page) outside the working set. Dirtying a page bumps its
 * generation and rewrites both stamp words (one page, so one dirty-log fault).
 * verify compares every page against the table, so a page that a VMM lost
 * (older generation, or zeroes) is reported.
 *
 * With several CPUs each one owns a contiguous slice of the working set and
 * is the only writer of its pages and table entries.
 */
#include "dirtying.h"

const char *const dt_pattern_choices[] = { "seq", "random", "hotcold", 0 };

static const char *dt_name = "dirty";

struct percpu {
    u64 first, end;                     /* slice [first, end) of page indices */
    u64 cur;                            /* seq: next page */
    u64 rng;
    u64 hot;                            /* hotcold: pages in the hot part */
    volatile u64 dirtied;               /* table increments so far (owner writes) */
    u64 rate;                           /* pages/s, 0 = unlimited */
    u64 acc, allow, cap, last_tick;     /* rate limiter */
    u64 st_last, st_max;                /* freeze probe (TSC), see freeze_probe */
    u64 pad[3];
} __attribute__((aligned(128)));

static struct percpu pc[MAX_CPUS];
static u8 *ws;                          /* working set (vmapped) */
static u32 *gt;                         /* expected generation per page */
static u64 npages;
static int pattern;
static u64 skip_page = DT_NO_PAGE;         /* corrupted on purpose: never rewritten */
static volatile u32 phase;              /* 0 wait, 1 stamp, 2 run */
static volatile u32 stamped;
static volatile u32 pause_req;
static volatile u32 paused;

#define CHUNK 64

#define CHECK_SALT 0x5bd1e9955bd1e995UL

/* The check word: cheap (one xor) because every instruction costs ~0.6 us
 * here; never 0 for a valid stamp, so a zeroed page always fails. */
static inline u64 check_word(u64 h) { return h ^ CHECK_SALT; }

static inline void write_stamp(u64 i, u32 g)
{
    u64 *p = (u64 *)(ws + (i << 12));
    u64 h = (i << 32) | g;
    p[0] = h;
    p[511] = check_word(h);
}

static int fresh;

/* Words 1..510 from the stamp through a cheap mixer: differ in every
 * generation, in nearly every byte. */
static inline void write_fresh(u64 i, u32 g)
{
    u64 *p = (u64 *)(ws + (i << 12));
    u64 x = ((i << 32) | g) * 0x9E3779B97F4A7C15UL;
    for (int k = 1; k < 511; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = x;
    }
}

static inline void touch(u64 i)
{
    u32 g = gt[i] + 1;
    gt[i] = g;
    if (fresh)
        write_fresh(i, g);
    write_stamp(i, g);
}

/* The longest this CPU was frozen (held outside the guest by a throttle,
 * paused) as the CPU itself sees it: the TSC between two looks a few
 * pages of work apart (about 70 us here), so a freeze is measured to
 * within that, whatever the VMM says it did. */
static inline void freeze_probe(struct percpu *c)
{
    u64 t = rt_rdtsc();
    if (c->st_last && t - c->st_last > c->st_max)
        c->st_max = t - c->st_last;
    c->st_last = t;
}

/* seq: pages [i, stop), running pointers; ~14 instructions per page */
static inline __attribute__((always_inline)) void seq_run(struct percpu *c, u64 i, u64 stop,
                                                          int chk)
{
    u64 *p = (u64 *)(ws + (i << 12));
    u32 *t = gt + i;
    u64 hi = i << 32;
    for (; i < stop; i++, p += 512, t++, hi += 1UL << 32) {
        if ((i & 7) == 0)
            freeze_probe(c);
        if (chk && i == skip_page)
            continue;
        u32 g = *t + 1;
        *t = g;
        if (fresh)
            write_fresh(i, g);
        u64 h = hi | g;
        p[0] = h;
        p[511] = check_word(h);
    }
}

/* 64-bit LCG (Knuth's MMIX constants): 2 instructions. Only its high bits are
 * used for page indices (mulhi) and bits 16..31 for the hot/cold choice. */
static inline u64 lcg(u64 *s)
{
    u64 x = *s * 6364136223846793005UL + 1442695040888963407UL;
    *s = x;
    return x;
}

static inline u64 mulhi(u64 a, u64 b) { return (u64)(((unsigned __int128)a * b) >> 64); }

/* Dirty n pages of c's slice; returns the number of table increments. */
static u64 dirty_pages(struct percpu *c, u64 n)
{
    u64 len = c->end - c->first, done = 0;
    if (pattern == PAT_SEQ) {
        while (n) {
            u64 i = c->cur, stop = i + n;
            if (stop > c->end)
                stop = c->end;
            if (__builtin_expect(skip_page == DT_NO_PAGE, 1)) {
                seq_run(c, i, stop, 0);
            } else {
                seq_run(c, i, stop, 1);
                if (skip_page >= i && skip_page < stop)
                    done--;
            }
            done += stop - i;
            n -= stop - i;
            c->cur = stop == c->end ? c->first : stop;
        }
    } else if (pattern == PAT_RANDOM) {
        for (u64 k = 0; k < n; k++) {
            if ((k & 7) == 0)
                freeze_probe(c);
            u64 i = c->first + mulhi(lcg(&c->rng), len);
            if (__builtin_expect(i != skip_page, 1)) {
                touch(i);
                done++;
            }
        }
    } else {
        u64 hot = c->hot, cold = len - hot;
        for (u64 k = 0; k < n; k++) {
            if ((k & 7) == 0)
                freeze_probe(c);
            u64 r = lcg(&c->rng);
            u64 i;
            if (!cold || ((r >> 16) & 0xffff) * 10 < 9 * 0x10000)
                i = c->first + mulhi(r, hot);           /* 90 %: hottest 10 % */
            else
                i = c->first + hot + mulhi(r, cold);
            if (__builtin_expect(i != skip_page, 1)) {
                touch(i);
                done++;
            }
        }
    }
    c->dirtied += done;
    return done;
}

/* One step of work; returns 0 when the CPU has nothing to do until a tick. */
static int work(struct percpu *c)
{
    if (c->end == c->first)
        return 0;
    if (!c->rate) {
        dirty_pages(c, CHUNK);
        return 1;
    }
    u64 now = rt_ticks;
    if (now != c->last_tick) {
        u64 dt = now - c->last_tick;
        c->last_tick = now;
        if (dt > 1000000)
            dt = 1000000;
        c->acc += dt * c->rate * rt_pit_div;
        c->allow += c->acc / PIT_FREQ;
        c->acc %= PIT_FREQ;
        if (c->allow > c->cap)
            c->allow = c->cap;
    }
    if (!c->allow)
        return 0;
    u64 n = c->allow < CHUNK ? c->allow : CHUNK;
    c->allow -= n;
    dirty_pages(c, n);
    return 1;
}

static void stamp_slice(struct percpu *c)
{
    for (u64 i = c->first; i < c->end; i++) {
        gt[i] = 1;
        write_stamp(i, 1);
    }
}

/* ---- APs ---- */
static void ap_main(int cpu)
{
    struct percpu *c = &pc[cpu];
    while (phase < 1)
        rt_wait_change(&phase, 0);
    stamp_slice(c);
    __atomic_fetch_add(&stamped, 1, __ATOMIC_SEQ_CST);
    while (phase < 2)
        rt_wait_change(&phase, 1);
    c->last_tick = rt_ticks;
    for (;;) {
        if (pause_req) {
            __atomic_fetch_add(&paused, 1, __ATOMIC_SEQ_CST);
            while (pause_req)
                rt_wait_change(&pause_req, 1);
            __atomic_fetch_sub(&paused, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        if (work(c))
            continue;
        /* idle until the next tick IPI (or a pause request) */
        u64 seen = c->last_tick;
        __asm__ volatile("cli" ::: "memory");
        if (rt_ticks == seen && !pause_req)
            __asm__ volatile("sti; hlt" ::: "memory");
        else
            __asm__ volatile("sti" ::: "memory");
    }
}

static void pause_aps(void)
{
    if (rt_ncpus < 2)
        return;
    __atomic_store_n(&pause_req, 1, __ATOMIC_SEQ_CST);
    rt_wake_aps();
    while (__atomic_load_n(&paused, __ATOMIC_SEQ_CST) != (u32)(rt_ncpus - 1))
        cpu_relax();
}

static void resume_aps(void)
{
    if (rt_ncpus < 2)
        return;
    __atomic_store_n(&pause_req, 0, __ATOMIC_SEQ_CST);
    rt_wake_aps();
}

/* ---- verify ---- */
static int verified_once;
static int ever_failed;

int dt_verify(void)
{
    u64 bad = 0, first_bad = DT_NO_PAGE;
    pause_aps();
    for (int cpu = 0; cpu < rt_ncpus; cpu++) {
        struct percpu *c = &pc[cpu];
        u64 sum = 0;
        for (u64 i = c->first; i < c->end; i++) {
            u32 g = gt[i];
            u64 h = (i << 32) | g;
            const u64 *p = (const u64 *)(ws + (i << 12));
            sum += g;
            if (__builtin_expect(p[0] != h || p[511] != check_word(h), 0)) {
                if (first_bad == DT_NO_PAGE)
                    first_bad = i;
                bad++;
            }
        }
        /* the table itself: its entries must add up to what was done */
        if ((u32)sum != (u32)(c->end - c->first + c->dirtied)) {
            if (first_bad == DT_NO_PAGE)
                first_bad = c->first;
            bad++;
        }
    }
    if (!bad) {
        kprintf("verify: pass pages=%lu\n", npages);
    } else {
        kprintf("verify: FAIL pages=%lu bad=%lu first_bad=%lu\n", npages, bad, first_bad);
        ever_failed = 1;
    }
    u64 cp = rt_param("corrupt")->val;
    if (!bad && !verified_once && cp != DT_NO_PAGE && cp < npages) {
        /* debug: make page cp look like a page whose last write was lost */
        skip_page = cp;
        u32 g = gt[cp];
        write_stamp(cp, g - 1);
        kprintf("%s: debug: corrupted page %lu (gen %u -> %u)\n", dt_name, cp, g, g - 1);
    }
    verified_once = 1;
    resume_aps();
    return bad == 0;
}

void dt_finish(int do_verify)
{
    int ok = do_verify ? dt_verify() : !ever_failed;
    rt_exit(ok ? 0 : 1);
}

static u64 total_dirtied(void)
{
    u64 s = 0;
    for (int cpu = 0; cpu < rt_ncpus; cpu++)
        s += pc[cpu].dirtied;
    return s;
}

/* ---- setup ---- */
static u64 round2m(u64 b) { return (b + 2 * MIB - 1) & ~(2 * MIB - 1); }

static void plan_memory(struct param *wss, struct param *fill)
{
    u64 avail = rt_vmap_avail();
    u64 w = wss->val;
    if (w && round2m(w * 256 * 4) + round2m(w * MIB) > avail)
        w = avail / (MIB + 1024);       /* then trim the rounding below */
    while (w && round2m(w * 256 * 4) + round2m(w * MIB) > avail)
        w--;
    if (w != wss->val) {
        rt_warn("wss=%lu does not fit in RAM, using wss=%lu", wss->val, w);
        wss->val = w;
    }
    u64 used = w ? round2m(w * 256 * 4) + round2m(w * MIB) : 0;
    u64 f = fill->val;
    if (round2m(f * MIB) > avail - used) {
        u64 nf = (avail - used) / MIB;
        rt_warn("fill=%lu does not fit in RAM, using fill=%lu", f, nf);
        fill->val = nf;
    }
}

static u64 tsc_per_ms;

static u64 p_period, p_count, p_rate, p_verify_every;
static int p_verify_at_end;
static u64 last_hb_ticks, last_hb_dirtied;

void dt_init(const char *name)
{
    dt_name = name;
    rt_ap_main = ap_main;
    if (rt_param("smp")->val)
        rt_smp_start();
    struct param *p_wss = rt_param("wss"), *p_fill = rt_param("fill");
    plan_memory(p_wss, p_fill);
    p_period = rt_param("period_ms")->val;
    p_count = rt_param("count")->val;
    p_rate = rt_param("rate")->val;
    p_verify_every = rt_param("verify_every")->val;
    p_verify_at_end = (int)rt_param("verify")->val;
    pattern = (int)rt_param("pattern")->val;
    fresh = (int)rt_param("fresh")->val;
    npages = p_wss->val * 256;
    tsc_per_ms = rt_tsc_per_ms();
}

void dt_start(void)
{
    struct param *p_fill = rt_param("fill");
    u64 rate = p_rate, period = p_period;
    if (p_fill->val) {
        u64 n = p_fill->val * 256;
        u64 *f = rt_vmap_alloc(n * PAGE_SIZE);
        for (u64 i = 0; f && i < n; i++)     /* one store per page: not a zero page */
            f[i * 512] = 0xF111F111F1110000UL ^ i;
        kprintf("fill: done mb=%lu\n", p_fill->val);
    }
    if (npages) {
        gt = rt_vmap_alloc(npages * 4);
        ws = rt_vmap_alloc(npages * PAGE_SIZE);
        if (!gt || !ws)                 /* cannot happen: plan_memory() fits it */
            npages = 0;
    }

    /* slices, proportional rate shares */
    u64 ncpu = (u64)rt_ncpus, given = 0;
    for (u64 cpu = 0; cpu < ncpu; cpu++) {
        struct percpu *c = &pc[cpu];
        c->first = npages * cpu / ncpu;
        c->end = npages * (cpu + 1) / ncpu;
        c->cur = c->first;
        c->rng = 0x9E3779B97F4A7C15UL * (cpu + 1) ^ 0xD1B54A32D192ED03UL;
        c->hot = (c->end - c->first) / 10;
        if (!c->hot)
            c->hot = 1;
        c->dirtied = 0;
        if (rate != PARAM_MAX) {
            c->rate = npages ? rate * (c->end - c->first) / npages : 0;
            given += c->rate;
        }
    }
    if (rate != PARAM_MAX) {
        for (u64 cpu = 0; cpu < ncpu && given < rate; cpu++)
            if (pc[cpu].end > pc[cpu].first) {
                pc[cpu].rate += rate - given;   /* remainder */
                break;
            }
        /* Halted APs are woken by an IPI from the BSP's timer ISR every
         * 'wake' ticks: often enough for a chunk of ~16 pages per AP, and at
         * least 10 times per heartbeat period. */
        u64 wake = 1;
        if (ncpu > 1) {
            u64 ap_rate = 0, naps = 0;
            for (u64 cpu = 1; cpu < ncpu; cpu++)
                if (pc[cpu].rate) {
                    ap_rate += pc[cpu].rate;
                    naps++;
                }
            if (naps) {
                ap_rate /= naps;
                wake = rt_ms_to_ticks(16 * 1000 / (ap_rate ? ap_rate : 1));
                u64 lim = rt_ms_to_ticks(period) / 10;
                if (wake > lim)
                    wake = lim;
                if (wake < 1)
                    wake = 1;
                if (wake > 1000000)
                    wake = 1000000;
                rt_ap_wake = (u32)wake;
            }
        }
        for (u64 cpu = 0; cpu < ncpu; cpu++) {
            struct percpu *c = &pc[cpu];
            /* burst allowance: two wake intervals plus 50 ms worth of pages */
            c->cap = c->rate * ((u64)rt_pit_div * 2 * wake + PIT_FREQ / 20) / PIT_FREQ + 1;
        }
    }

    /* stamp every page (each CPU its own slice) before the first heartbeat */
    if (ncpu > 1) {
        rt_smp_release();
        phase = 1;
        rt_wake_aps();
    }
    stamp_slice(&pc[0]);
    while (__atomic_load_n(&stamped, __ATOMIC_SEQ_CST) != (u32)(ncpu - 1))
        rt_wait_tick(rt_ticks);

}

void dt_run(u64 seen)
{
    last_hb_ticks = seen;
    last_hb_dirtied = 0;
    pc[0].last_tick = seen;
    phase = 2;
    rt_wake_aps();
}

int dt_work(void) { return work(&pc[0]); }

void dt_beat(u64 now, u64 *rate, u64 *gen)
{
    u64 d = total_dirtied();
    *rate = rt_per_second(d - last_hb_dirtied, now - last_hb_ticks);
    last_hb_dirtied = d;
    last_hb_ticks = now;
    *gen = npages ? d / npages : 0;
}

u64 dt_stall_us(void)
{
    struct percpu *c = &pc[0];
    u64 m = c->st_max;
    c->st_max = 0;
    return tsc_per_ms ? m * 1000 / tsc_per_ms : 0;
}

void dt_after_beat(u64 seq)
{
    /* The heartbeat line itself (an exit per byte) is work, not a freeze:
     * the next look starts afresh. */
    pc[0].st_last = 0;
    if (p_count && seq >= p_count)
        dt_finish(p_verify_at_end);
    if (p_verify_every && seq % p_verify_every == 0)
        dt_verify();
}

void dt_serial(int ch)
{
    if (ch == 'v')
        dt_verify();
    else if (ch == 'q')
        dt_finish(1);
    else if (ch == 'x')
        rt_exit(0);
}
