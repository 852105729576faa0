/*
 * dirty: dirties a working set of pages at a chosen rate and pattern, and
 * proves memory integrity on demand. The engine (stamps, verify, rate
 * limiting, SMP) is in dirtying.c, shared with the net guest.
 */
#include "dirtying.h"

static struct param params[] = {
    PARAM_HZ,
    PARAM_PERIOD,
    PARAM_COUNT,
    DIRTYING_PARAMS(16),
    DIRTYING_HIDDEN_PARAMS,
};

static struct heartbeat hb;

void guest_main(void)
{
    rt_init("dirty", params, sizeof(params) / sizeof(params[0]), 0);
    dt_init("dirty");
    rt_print_boot();
    dt_start();

    hb_start(&hb, rt_param("period_ms")->val);
    u64 seen = rt_ticks;
    dt_run(seen);

    for (;;) {
        u64 now = rt_ticks;
        if (now != seen) {
            seen = now;
            if (hb_due(&hb, now)) {
                u64 r, g;
                dt_beat(now, &r, &g);
                kprintf("seq=%lu t_ms=%lu rate=%lu gen=%lu stall_us=%lu\n", hb.seq,
                        rt_ticks_to_ms(now), r, g, dt_stall_us());
                dt_after_beat(hb.seq);
            }
            dt_serial(serial_getc());
        }
        if (dt_work())
            continue;
        rt_wait_tick(seen);
    }
}
