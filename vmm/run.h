/* The main thread's life with a running VM: the event loop serving the
 * console, monitor, signals and the --migrate-after timer, until the VM
 * stops; then the orderly teardown. */
#ifndef MINIVMM_RUN_H
#define MINIVMM_RUN_H

#include "vmm/cli.h"

/* Returns the process exit status. */
int vmm_main(const struct cli_opts *o);

#define VMM_EXIT_USAGE 2
#define VMM_EXIT_MIGRATION 3
#define VMM_EXIT_CRASH 4

#endif
