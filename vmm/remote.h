/* `minivmm --migrate URI` without --kernel: asks the running VM called
 * name (or the only VM on this host when name is NULL) to migrate through
 * its monitor, shows progress, prints a summary. */
#ifndef MINIVMM_REMOTE_H
#define MINIVMM_REMOTE_H

#include "migrate/migrate.h"

/* Returns the process exit status (vmm/core/status.h). */
int remote_migrate(const char *name, const char *monitor_path, const char *uri,
		   const struct mig_params *p);

#endif
