/*
 * dirtying: the working-set engine of the dirty guest, shared with the net
 * guest. Dirties a working set of pages at a chosen rate and pattern (on
 * every CPU), keeps per-page integrity stamps and verifies them on demand.
 * docs/guests.md ("The dirty guest") describes stamps, verify, rates and SMP.
 *
 * Use (after rt_init(name, params, n, 0) with the DIRTYING_* parameters in
 * the table):
 *   dt_init(name)      start the APs (smp=1), fit wss/fill into RAM
 *   rt_print_boot()
 *   dt_start()         fill, allocate, stamp every page
 *   dt_run(seen)       dirtying starts (APs too)
 *   loop: dt_work() on the BSP between its other jobs, dt_beat() for the
 *         heartbeat fields, dt_after_beat(seq), dt_serial(ch)
 */
#ifndef GUESTS_DIRTYING_H
#define GUESTS_DIRTYING_H
#include "common.h"

#define DT_NO_PAGE UINT64_MAX

enum { PAT_SEQ, PAT_RANDOM, PAT_HOTCOLD };
extern const char *const dt_pattern_choices[];

/* visible parameters, in boot-line order; wss default given by the guest */
#define DIRTYING_PARAMS(wss_def)                                                                 \
    { .name = "wss", .kind = P_UINT, .def = (wss_def), .min = 0, .max = 1024 * 1024 },          \
    { .name = "rate", .kind = P_UINT_OR_MAX, .def = PARAM_MAX, .min = 1, .max = 1000000000 },   \
    { .name = "pattern", .kind = P_ENUM, .def = PAT_SEQ, .choices = dt_pattern_choices },       \
    { .name = "fill", .kind = P_UINT, .def = 0, .min = 0, .max = 1024 * 1024 },                 \
    { .name = "verify_every", .kind = P_UINT, .def = 0, .min = 0, .max = UINT64_MAX },          \
    { .name = "verify", .kind = P_UINT, .def = 0, .min = 0, .max = 1 },                         \
    /* 1: every dirtying rewrites the whole page with fresh contents (delta          \
     * encoding cannot help); 0: only the two stamp words (its best case). */       \
    { .name = "fresh", .kind = P_UINT, .def = 0, .min = 0, .max = 1 }

/* hidden knobs (echoed only when given) */
#define DIRTYING_HIDDEN_PARAMS                                                                    \
    { .name = "corrupt", .kind = P_UINT, .def = DT_NO_PAGE, .min = 0, .max = UINT64_MAX,        \
      .flags = P_HIDDEN },                                                                       \
    { .name = "smp", .kind = P_UINT, .def = 1, .min = 0, .max = 1, .flags = P_HIDDEN },         \
    { .name = "smp_wait_ms", .kind = P_UINT, .def = 20, .min = 1, .max = 10000, .flags = P_HIDDEN }

void dt_init(const char *name);
void dt_start(void);
void dt_run(u64 seen);             /* seen: the tick the heartbeat clock started at */
int dt_work(void);                      /* BSP: one chunk; 0 = nothing to do until a tick */
/* heartbeat fields since the previous call (first: since dt_run) */
void dt_beat(u64 now_ticks, u64 *rate, u64 *gen);
/* The longest freeze CPU 0 saw (TSC, us) since the previous call. */
u64 dt_stall_us(void);
void dt_after_beat(u64 seq);            /* count= exit, verify_every= */
void dt_serial(int ch);                 /* v: verify, q: verify and exit, x: exit */
int dt_verify(void);                    /* 1 = pass */
void dt_finish(int do_verify) __attribute__((noreturn));

#endif
