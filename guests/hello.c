/* hello: prints its boot line and a greeting, then exits (status 1 in QEMU). */
#include "common.h"

static const char *const exit_choices[] = { "debug", "poweroff", 0 };

static struct param params[] = {
    PARAM_HZ,
    { .name = "exit", .kind = P_ENUM, .def = 0, .choices = exit_choices },
};

void guest_main(void)
{
    rt_init("hello", params, sizeof(params) / sizeof(params[0]), 0);
    rt_print_boot();
    kprintf("hello: hello from a minivmm test guest\n");
    if (rt_param("exit")->val == 1) {
        rt_poweroff();
        rt_sleep_ms(100);               /* power-off is asynchronous in some VMMs */
    }
    rt_exit(0);
}
