/* The main thread's life with a running VM: the event loop serving the
 * console, monitor, signals and the --migrate-after timer, until the VM
 * stops; then the orderly teardown. */
#ifndef MINIVMM_RUN_H
#define MINIVMM_RUN_H

#include "vmm/cli.h"
#include "vmm/core/status.h"

/* Returns the process exit status. */
int vmm_main(const struct cli_opts *o);


#endif
