#include "common.h"
static struct param params[] = { PARAM_HZ };
void guest_main(void) { rt_init("dirty", params, 1, 1); rt_print_boot(); rt_exit(0); }
