/* Parameters and helpers shared by the guests. */
#ifndef GUESTS_COMMON_H
#define GUESTS_COMMON_H
#include "rt/rt.h"

#define PARAM_HZ \
    { .name = "hz", .kind = P_UINT, .def = 1000, .min = 19, .max = 5000 }
#define PARAM_PERIOD \
    { .name = "period_ms", .kind = P_UINT, .def = 100, .min = 1, .max = 3600000 }
#define PARAM_COUNT \
    { .name = "count", .kind = P_UINT, .def = 0, .min = 0, .max = UINT64_MAX }

/*
 * Heartbeat clock: the first beat is due 'period_ms' after hb_start(); a
 * beat that is late by more than a whole period (guest paused, e.g. during a
 * migration) is not repeated: the schedule restarts from now.
 */
struct heartbeat {
    u64 period_ms, next_ms, seq;
    u64 last_ticks;
};

static inline void hb_start(struct heartbeat *h, u64 period_ms)
{
    h->period_ms = period_ms;
    h->last_ticks = rt_ticks;
    h->next_ms = rt_ticks_to_ms(h->last_ticks) + period_ms;
    h->seq = 0;
}

/* returns 1 when a beat is due (and advances the schedule) */
static inline int hb_due(struct heartbeat *h, u64 now_ticks)
{
    u64 now = rt_ticks_to_ms(now_ticks);
    if (now < h->next_ms)
        return 0;
    h->next_ms += h->period_ms;
    if (h->next_ms <= now)
        h->next_ms = now + h->period_ms;
    h->seq++;
    return 1;
}

#endif
