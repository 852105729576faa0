/* counter: heartbeat "seq=N t_ms=T" every period_ms of PIT time. */
#include "common.h"

static struct param params[] = {
    PARAM_HZ,
    PARAM_PERIOD,
    PARAM_COUNT,
};

static struct heartbeat hb;

void guest_main(void)
{
    rt_init("counter", params, sizeof(params) / sizeof(params[0]), 0);
    u64 period = rt_param("period_ms")->val;
    u64 count = rt_param("count")->val;
    rt_print_boot();
    hb_start(&hb, period);
    u64 seen = rt_ticks;
    for (;;) {
        u64 now = rt_ticks;
        if (now != seen) {
            seen = now;
            if (hb_due(&hb, now)) {
                kprintf("seq=%lu t_ms=%lu\n", hb.seq, rt_ticks_to_ms(now));
                if (count && hb.seq >= count)
                    rt_exit(0);
            }
            int c = serial_getc();
            if (c == 'q' || c == 'x')
                rt_exit(0);
        }
        rt_wait_tick(seen);
    }
}
